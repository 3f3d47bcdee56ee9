"""Cluster endpoints: parse input, call one service or selector, render.

Every view reaches the cluster through ``ResourceAPIView.resource(level)``
(404 for whom may not read it, 403 for whom may read but not act), and only
then checks that the resource is a cluster, so a stranger learns nothing
about a resource's type.
"""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings
from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.pagination import CursorPagination
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from compute import selectors, services
from compute.api import serializers as s
from compute.api.streaming import (
    EventStreamRenderer,
    ReleasingStream,
    cluster_event_stream,
    stream_slot,
)
from registry.access import access_system_of
from registry.api.base import ResourceAPIView
from registry.errors import InvalidInput
from registry.models import AccessLevel, Resource, ResourceType

READ, WRITE = AccessLevel.READ, AccessLevel.WRITE


class EventPagination(CursorPagination):
    ordering = "-id"
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200


class ClusterAPIView(ResourceAPIView):
    """A view about one cluster's runtime."""

    def cluster(self, level: int) -> Resource:
        resource = self.resource(level)
        services.require_cluster(resource)
        return resource


def _state_response(resource: Resource, code: int = status.HTTP_200_OK) -> Response:
    state = selectors.cluster_state_get(resource=resource)
    return Response(s.ClusterStateSerializer(state).data, status=code)


class ClusterView(ClusterAPIView):
    """The cluster's runtime status. Asked about a function or module, it
    answers for the cluster that runs it (``registry.access.access_system_of``),
    so whoever may call a shared function can find its daemon."""

    @extend_schema(responses={200: s.ClusterStateSerializer})
    def get(self, request: Request, address: str) -> Response:
        resource = self.resource(READ)
        if resource.type in (ResourceType.FUNCTION, ResourceType.MODULE):
            return _state_response(access_system_of(self.caller, resource))
        services.require_cluster(resource)
        return _state_response(resource)


class ClusterActionView(ClusterAPIView):
    """``up``, ``stop`` or ``teardown``: recorded now, done by a worker (202)."""

    allow_anonymous_read = False
    cluster_action = ""
    _SERVICES = {
        "up": services.cluster_request_up,
        "stop": services.cluster_request_stop,
        "teardown": services.cluster_request_teardown,
    }

    @extend_schema(request=None, responses={202: s.ClusterStateSerializer})
    def post(self, request: Request, address: str) -> Response:
        resource = self.cluster(WRITE)
        self._SERVICES[self.cluster_action](actor=request.user, resource=resource)
        return _state_response(resource, status.HTTP_202_ACCEPTED)


class ClusterAutostopView(ClusterAPIView):
    allow_anonymous_read = False

    @extend_schema(request=s.AutostopSerializer, responses={200: s.ClusterStateSerializer})
    def put(self, request: Request, address: str) -> Response:
        resource = self.cluster(WRITE)
        data = self.parse(s.AutostopSerializer)
        services.cluster_set_autostop(actor=request.user, resource=resource,
                                      autostop_mins=data["autostop_mins"])
        return _state_response(resource)


def _event_id(raw: str | None, field: str) -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise InvalidInput(f"{field} must be an event id.", field=field)
    return int(raw)


def _stream_seconds(raw: str | None) -> float:
    """``wait``: how long a stream stays open, at most the server's limit."""
    limit = settings.DEN_CLUSTER_EVENTS_STREAM_SECONDS
    if raw is None or raw == "":
        return limit
    try:
        wait = float(raw)
    except ValueError:
        wait = math.nan
    if not math.isfinite(wait) or wait < 0:
        raise InvalidInput("wait must be a number of seconds, 0 or more.", field="wait")
    return min(wait, limit)


class ClusterEventsView(ClusterAPIView):
    """The cluster's event log: a cursor-paginated list, or with
    ``Accept: text/event-stream`` a bounded stream of new events (at most
    ``DEN_CLUSTER_EVENTS_STREAMS_PER_USER`` open per user; 429 past that)."""

    renderer_classes = [JSONRenderer, EventStreamRenderer]

    @extend_schema(
        parameters=[
            OpenApiParameter("cursor", str, required=False),
            OpenApiParameter("limit", int, required=False),
            OpenApiParameter("after", int, required=False,
                             description="stream: start after this event id"),
            OpenApiParameter("wait", float, required=False,
                             description="stream: seconds to stay open (capped by the server)"),
        ],
        responses={200: s.ClusterEventSerializer(many=True)},
    )
    def get(self, request: Request, address: str) -> Any:
        resource = self.cluster(READ)
        # Readers see what happened; an event's data (logs, the server's paths
        # and process ids) is for those who may manage the cluster.
        may_write = (resource.access_level or 0) >= WRITE
        if request.accepted_renderer.format != "sse":
            events = selectors.cluster_events(resource=resource)
            return self.paginate(events, s.cluster_event_serializer(may_write=may_write),
                                 EventPagination)
        after = _event_id(request.query_params.get("after"), "after")
        if after is None:
            after = _event_id(request.headers.get("Last-Event-ID"), "Last-Event-ID")
        wait = _stream_seconds(request.query_params.get("wait"))
        release = stream_slot(request)
        response = StreamingHttpResponse(
            ReleasingStream(cluster_event_stream(resource=resource, after=after, seconds=wait,
                                                 may_write=may_write), release),
            content_type="text/event-stream",
        )
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        return response


class ClusterHeartbeatView(ClusterAPIView):
    """Heartbeats from the cluster's daemon, with the cluster's own token only."""

    allow_anonymous_read = False
    allow_cluster_token = True

    @extend_schema(request=s.HeartbeatSerializer, responses={204: None})
    def post(self, request: Request, address: str) -> Response:
        resource = self.cluster(READ)
        data = self.parse(s.HeartbeatSerializer)
        services.cluster_record_heartbeat(
            resource=resource,
            token=request.auth,
            last_activity=data.get("last_activity"),
            calls_in_flight=data["calls_in_flight"],
            objects=data["objects"],
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
