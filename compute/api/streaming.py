"""Server-sent events of a cluster's log, for the UI and ``den`` CLI.

A stream polls the event table and ends after a bounded time (gunicorn's sync
workers serve one request each, so an endless stream would hold a worker);
``EventSource`` clients reconnect on their own and resume from the
``Last-Event-ID`` they saw, so nothing is lost between streams.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from rest_framework.renderers import BaseRenderer

from compute import selectors
from compute.api.serializers import ClusterEventSerializer, cluster_event_serializer
from registry.models import Resource

POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 10.0


class EventStreamRenderer(BaseRenderer):
    """Lets content negotiation accept ``Accept: text/event-stream``; errors
    met before the stream starts are still rendered as JSON text."""

    media_type = "text/event-stream"
    format = "sse"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None,
               renderer_context: Any = None) -> bytes:
        return json.dumps(data).encode() if data is not None else b""


def _frame(event: Any, serializer: Any = ClusterEventSerializer) -> str:
    body = json.dumps(serializer(event).data)
    return f"id: {event.id}\nevent: {event.kind}\ndata: {body}\n\n"


def cluster_event_stream(*, resource: Resource, after: int | None, seconds: float,
                         may_write: bool = True) -> Iterator[str]:
    """Events after id ``after`` (or, without it, only those that happen from
    now on), as SSE frames, for at most ``seconds``; without their ``data``
    unless the caller may write the cluster."""
    serializer = cluster_event_serializer(may_write=may_write)
    if after is None:
        after = selectors.cluster_last_event_id(resource=resource)
    deadline = time.monotonic() + seconds
    quiet_since = time.monotonic()
    yield "retry: 2000\n\n"
    # Django closes this request's database connection when the response is
    # closed (request_finished), which for a stream is after its last frame.
    while True:
        events = selectors.cluster_events_after(resource=resource, after=after)
        for event in events:
            after = event.id
            yield _frame(event, serializer)
        now = time.monotonic()
        if events:
            quiet_since = now
        elif now - quiet_since >= KEEPALIVE_SECONDS:
            quiet_since = now
            yield ": keepalive\n\n"
        if now >= deadline:
            return
        if not events:
            time.sleep(min(POLL_SECONDS, max(0.0, deadline - now)))
