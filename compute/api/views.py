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
from django.http import HttpResponse, StreamingHttpResponse
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
from registry.access import access_runs_on_cluster, access_system_of
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


class ClusterProbeView(ClusterAPIView):
    """``POST .../-/cluster/probe``: a caller could not reach the daemon; den
    checks it at once (``services.cluster_probe``) and answers the status.
    Asked about a function or module, it probes the cluster that runs it, for
    whoever may call it (as ``ClusterView``). A report, not a change anyone
    asks for, so read-only tokens may send it too."""

    allow_anonymous_read = False
    allow_read_scope = True

    @extend_schema(request=None, responses={200: s.ClusterStateSerializer})
    def post(self, request: Request, address: str) -> Response:
        resource = self.resource(READ)
        if resource.type in (ResourceType.FUNCTION, ResourceType.MODULE):
            resource = access_system_of(self.caller, resource)
        services.require_cluster(resource)
        state = services.cluster_probe(resource=resource)
        return Response(s.ClusterStateSerializer(state).data)


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


class ClusterForgetHostKeyView(ClusterAPIView):
    """``POST .../-/cluster/forget-host-key`` ``{"host": "10.0.0.5"}``: stop
    trusting the SSH host key den recorded for a host (write access), so the
    next start trusts the key it finds: for a host that was reinstalled."""

    allow_anonymous_read = False

    @extend_schema(request=s.ForgetHostKeySerializer, responses={200: s.ClusterStateSerializer})
    def post(self, request: Request, address: str) -> Response:
        resource = self.cluster(WRITE)
        data = self.parse(s.ForgetHostKeySerializer)
        services.cluster_forget_host_key(actor=request.user, resource=resource,
                                         host=data["host"])
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

    @extend_schema(request=s.HeartbeatSerializer, responses={200: s.HeartbeatAnswerSerializer})
    def post(self, request: Request, address: str) -> Response:
        resource = self.cluster(READ)
        data = self.parse(s.HeartbeatSerializer)
        answer = services.cluster_record_heartbeat(
            resource=resource,
            token=request.auth,
            last_activity=data.get("last_activity"),
            calls_in_flight=data["calls_in_flight"],
            objects=data["objects"],
            draining=data["draining"],
        )
        return Response(s.HeartbeatAnswerSerializer(answer).data)


class DeploymentView(ResourceAPIView):
    """What runs for a saved function or module on its cluster, kept so that den
    can put it back after the cluster restarts.

    ``PUT`` (a writer of it, who also writes its cluster): keep what was just
    put on the daemon. ``GET`` (only the cluster's own token, for a function
    or module that runs on that cluster): what to put back.
    """

    allow_anonymous_read = False
    allow_cluster_token = True

    def max_body_bytes(self) -> int:
        return int(settings.DEN_DEPLOYMENT_MAX_MB) * 1024 * 1024 + 4096

    @extend_schema(responses={200: s.DeploymentAnswerSerializer})
    def get(self, request: Request, address: str) -> Response:
        resource = access_runs_on_cluster(self.caller, address)
        answer = services.deployment_for_daemon(caller=self.caller, resource=resource)
        return Response(s.DeploymentAnswerSerializer(answer).data)

    @extend_schema(request=s.DeploymentSerializer, responses={200: None})
    def put(self, request: Request, address: str) -> Response:
        resource = self.resource(WRITE)
        data = self.parse(s.DeploymentSerializer)
        deployment = services.deployment_save(caller=self.caller, resource=resource,
                                              name=data["name"], spec=data["spec"])
        return Response({"name": deployment.object_name, "code": deployment.code or None,
                         "restores_state": deployment.restores_state})


class DeploymentCodeView(ResourceAPIView):
    """``GET .../-/deployment/code`` (only the cluster's own token): the code
    bundle of what runs there, for its daemon to unpack again."""

    allow_anonymous_read = False
    allow_cluster_token = True

    @extend_schema(responses={200: bytes})
    def get(self, request: Request, address: str) -> HttpResponse:
        resource = access_runs_on_cluster(self.caller, address)
        data = services.deployment_code_for_daemon(caller=self.caller, resource=resource)
        return HttpResponse(data, content_type="application/gzip")
