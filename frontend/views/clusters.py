"""A cluster's live state on its resource page, and the controls to bring it
up, stop it, tear it down and set its autostop.

Reads go through ``frontend.selectors.cluster_runtime`` (``compute.selectors``)
and writes through ``compute.services``, for a resource fetched through
``resource(level)``: readers see the state, writers also get the controls,
and strangers a 404 like any other page. The state panel polls its own
fragment with htmx while something may change; the forms post to the views
below and get the refreshed panel back (or a redirect, without JavaScript).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from compute import selectors as compute_selectors
from compute import services as compute_services
from compute.models import ClusterStatus
from frontend import selectors as page_selectors
from frontend.views.base import FORM_ERROR_STATUS, READ, WRITE, ResourcePageView
from registry.errors import DenError, NotFound
from registry.models import Resource, ResourceType

S = ClusterStatus

#: The same bound as the API's autostop input: a year of minutes.
AUTOSTOP_MAX_MINS = 60 * 24 * 365


@dataclass(frozen=True)
class StatusInfo:
    tone: str  # ok, busy, idle, bad: the badge's colour
    summary: str
    poll_seconds: int | None  # how often the panel refreshes itself; None: it waits for you


_BUSY, _WATCH = 2, 5
STATUS_INFO = {
    S.DOWN: StatusInfo("idle", "Not running. Bring it up to use it.", None),
    S.PROVISIONING: StatusInfo("busy", "Asked to come up; waiting for a worker to start it.", _BUSY),
    S.STARTING: StatusInfo("busy", "A worker is starting its node daemon.", _BUSY),
    S.UP: StatusInfo("ok", "Its node daemon is running and takes calls.", _WATCH),
    S.STOPPING: StatusInfo("busy", "Asked to stop; a worker is stopping it.", _BUSY),
    S.STOPPED: StatusInfo("idle", "Stopped. Bring it up again to use it.", None),
    S.TERMINATING: StatusInfo("busy", "Asked to tear down; a worker is releasing what it holds.",
                              _BUSY),
    S.TERMINATED: StatusInfo("idle", "Torn down. Bringing it up starts it afresh.", None),
    S.FAILED: StatusInfo("bad", "The last start failed; the reason is below.", None),
    S.UNREACHABLE: StatusInfo("bad", "No heartbeat lately: its daemon may be down or cut off "
                                     "from den.", _WATCH),
}
# Which control each status offers (the services accept more, as no-ops).
UP_FROM = {S.DOWN, S.STOPPED, S.TERMINATED, S.FAILED, S.UNREACHABLE}
STOP_FROM = {S.PROVISIONING, S.STARTING, S.UP, S.UNREACHABLE}
TEARDOWN_FROM = set(S) - {S.DOWN, S.TERMINATING, S.TERMINATED}


def autostop_text(minutes: int) -> str:
    if minutes <= 0:
        return "never"
    return f"after {minutes} idle minute{'s' if minutes != 1 else ''}"


def cluster_context(resource: Resource, *, may_write: bool) -> dict[str, Any]:
    """What the cluster panel shows, for ``detail.html`` and the panel's fragments."""
    runtime = page_selectors.cluster_runtime(resource=resource)
    state = runtime.state
    info = STATUS_INFO.get(state.status, StatusInfo("idle", "", None))
    autostop = state.effective_autostop_mins
    return {
        "cluster": state,
        "cluster_events": runtime.events,
        "cluster_info": info,
        "cluster_backend": state.backend or (resource.config or {}).get("provider", ""),
        "autostop_mins": autostop,
        "autostop_text": autostop_text(autostop),
        "can_up": may_write and state.status in UP_FROM,
        "can_stop": may_write and state.status in STOP_FROM,
        "can_teardown": may_write and state.status in TEARDOWN_FROM,
        "cluster_cost": cost_facts(compute_selectors.cluster_cost(state=state)),
        "stop_tears_down": compute_selectors.cluster_stop_tears_down(state=state),
    }


def cost_facts(cost: dict[str, Any] | None) -> list[tuple[str, str]]:
    """What a cloud cluster costs, as the page's facts (none for other clusters)."""
    if not cost:
        return []
    price = cost.get("hourly_price")
    uptime = cost.get("uptime_seconds")
    where = " / ".join(str(cost[k]) for k in ("cloud", "region", "zone") if cost.get(k))
    nodes = cost.get("num_nodes") or 1
    return [
        ("Instance type", f"{cost.get('instance_type') or '—'}"
                          f"{f', {nodes} nodes' if nodes > 1 else ''}"),
        ("Where", where or "—"),
        ("Spot", "yes" if cost.get("use_spot") else "no"),
        ("Hourly price", f"${price:.2f} per hour" if isinstance(price, (int, float))
         else "unknown (SkyPilot has no price for it)"),
        ("Uptime", _duration(uptime) if isinstance(uptime, int) else "not running"),
    ]


def _duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h {rest // 60} min" if hours else f"{rest // 60} min {rest % 60} s"


class ClusterPageView(ResourcePageView):
    """Pages about a cluster's runtime; any other type of resource has none."""

    panel = "frontend/partials/cluster_panel.html"

    def cluster(self, level: int) -> Resource:
        resource = self.resource(level)
        if resource.type != ResourceType.CLUSTER:
            raise NotFound("There is no page at this address.")
        return resource

    def panel_context(self, resource: Resource, **extra: Any) -> dict[str, Any]:
        context = self.resource_context(resource, "overview")
        context.update(cluster_context(resource, may_write=context["may_write"]), **extra)
        return context

    def done(self, resource: Resource, notice: str) -> HttpResponse:
        """After a change: the refreshed panel for htmx, else back to the page."""
        if self.is_htmx:
            return self.render_page("", self.panel_context(resource, notice=notice),
                                    partial=self.panel)
        messages.success(self.request, notice)
        return HttpResponseRedirect(resource.address)

    def refused(self, resource: Resource, exc: DenError, **extra: Any) -> HttpResponse:
        """A change the services refused: say why, in the panel or as a message."""
        if self.is_htmx:
            context = self.panel_context(resource, cluster_error=self.error_text(exc), **extra)
            return self.render_page("", context, partial=self.panel, status=FORM_ERROR_STATUS)
        messages.error(self.request, self.error_text(exc))
        return HttpResponseRedirect(resource.address)


class ClusterLiveView(ClusterPageView):
    """The live part of the panel, which htmx polls; without htmx, the page."""

    def get(self, request: HttpRequest, address: str) -> HttpResponse:
        resource = self.cluster(READ)
        if not self.is_htmx:
            return HttpResponseRedirect(resource.address)
        return self.render_page("", self.panel_context(resource),
                                partial="frontend/partials/cluster_live.html")


class ClusterUpView(ClusterPageView):
    def post(self, request: HttpRequest, address: str) -> HttpResponse:
        resource = self.cluster(WRITE)
        try:
            compute_services.cluster_request_up(actor=request.user, resource=resource)
        except DenError as exc:
            return self.refused(resource, exc)
        return self.done(resource, f"Asked for {resource.address} to come up.")


class ClusterStopView(ClusterPageView):
    def post(self, request: HttpRequest, address: str) -> HttpResponse:
        resource = self.cluster(WRITE)
        compute_services.cluster_request_stop(actor=request.user, resource=resource)
        return self.done(resource, f"Asked for {resource.address} to stop.")


class ClusterTeardownView(ClusterPageView):
    """Tearing down asks first, on a page of its own, so it is never one stray click."""

    def get(self, request: HttpRequest, address: str) -> HttpResponse:
        resource = self.cluster(WRITE)
        return self.render_page("frontend/resources/cluster_teardown.html",
                                self.panel_context(resource))

    def post(self, request: HttpRequest, address: str) -> HttpResponse:
        resource = self.cluster(WRITE)
        compute_services.cluster_request_teardown(actor=request.user, resource=resource)
        return self.done(resource, f"Asked for {resource.address} to be torn down.")


def _minutes(raw: str) -> int | None:
    raw = raw.strip()
    number = raw[1:] if raw.startswith("-") else raw
    if not number.isdigit() or len(number) > 7:
        return None
    value = int(raw)
    return value if -1 <= value <= AUTOSTOP_MAX_MINS else None


class ClusterAutostopView(ClusterPageView):
    def post(self, request: HttpRequest, address: str) -> HttpResponse:
        resource = self.cluster(WRITE)
        raw = request.POST.get("autostop_mins", "")
        minutes = _minutes(raw)
        try:
            if minutes is None:
                raise DenError(f"Autostop is a whole number of minutes up to {AUTOSTOP_MAX_MINS}, "
                               "or -1 for never.", field="autostop_mins")
            compute_services.cluster_set_autostop(actor=request.user, resource=resource,
                                                  autostop_mins=minutes)
        except DenError as exc:
            return self.refused(resource, exc, autostop_error=True, autostop_value=raw)
        if minutes <= 0:
            return self.done(resource, f"{resource.address} no longer stops when idle.")
        return self.done(resource, f"{resource.address} now stops {autostop_text(minutes)}.")
