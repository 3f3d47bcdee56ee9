"""Server-sent events of a cluster's log, for the UI and ``den`` CLI.

A stream polls the event table and ends after a bounded time;
``EventSource`` clients reconnect on their own and resume from the
``Last-Event-ID`` they saw, so nothing is lost between streams. Served by
``den.webserver``, an open stream holds a stream thread, never one of the
threads that answer other requests; each user may have a few open at once
(``DEN_CLUSTER_EVENTS_STREAMS_PER_USER``), counted in the throttle cache
and given back when the response closes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

from django.conf import settings
from rest_framework.renderers import BaseRenderer

from compute import selectors
from compute.api.serializers import ClusterEventSerializer, cluster_event_serializer
from registry.models import Resource
from registry.throttling import Throttled, acquire_slot, client_ident

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


def stream_slot(request: Any) -> Callable[[], None]:
    """Take one of the caller's stream slots (a release function), or raise
    429 when they have as many streams open as they may."""
    limit = settings.DEN_CLUSTER_EVENTS_STREAMS_PER_USER
    user = request.user
    who = f"user:{user.pk}" if user.is_authenticated else f"client:{client_ident(request)}"
    # A slot outlives its stream only if the process died; it expires then.
    release = acquire_slot(f"den:streams:{who}", limit=limit,
                           ttl=settings.DEN_CLUSTER_EVENTS_STREAM_SECONDS + 60)
    if release is None:
        raise Throttled(
            f"You have {limit} event streams open, the most den allows at once; close one "
            "(or wait for one to end) and try again.", retry_after=5)
    return release


class ReleasingStream:
    """An iterator over ``frames`` that calls ``release`` once when closed.

    Django closes a streaming response's content when the server closes the
    response, whether or not it was ever iterated (a generator's own
    ``finally`` would not run if it never started)."""

    def __init__(self, frames: Iterator[str], release: Callable[[], None]) -> None:
        self.frames = frames
        self.release = release

    def __iter__(self) -> ReleasingStream:
        return self

    def __next__(self) -> str:
        return next(self.frames)

    def close(self) -> None:
        try:
            close = getattr(self.frames, "close", None)
            if close is not None:
                close()
        finally:
            self.release()


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
