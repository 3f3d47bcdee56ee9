"""Reads about clusters. Each starts from a resource the caller already
reached through ``registry.access``; none filters by user on its own."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from compute.models import ClusterEvent, ClusterState
from registry.models import Resource


def cluster_state_get(*, resource: Resource) -> ClusterState:
    """The cluster's runtime state; a cluster never brought up is ``down``
    (an unsaved row, so that reading writes nothing)."""
    state = ClusterState.objects.filter(resource=resource).first()
    if state is None:
        state = ClusterState(resource=resource)
    state.resource = resource
    return state


def cluster_events(*, resource: Resource) -> QuerySet[ClusterEvent]:
    """The cluster's event log, newest first."""
    return ClusterEvent.objects.filter(cluster__resource=resource)


def cluster_events_after(*, resource: Resource, after: int, limit: int = 100) -> list[ClusterEvent]:
    """Events newer than id ``after``, oldest first (for streaming)."""
    return list(
        ClusterEvent.objects.filter(cluster__resource=resource, id__gt=after).order_by("id")[:limit]
    )


def cluster_last_event_id(*, resource: Resource) -> int:
    last = cluster_events(resource=resource).order_by("-id").values_list("id", flat=True).first()
    return int(last or 0)


def cluster_cost(*, state: ClusterState) -> dict[str, Any] | None:
    """What a cloud cluster costs, from what its backend recorded at launch
    (instance type, region, spot, hourly price when SkyPilot knows it), and its
    uptime while it is up; None for clusters without a cloud bill."""
    cost = (state.handles or {}).get("cost")
    if not isinstance(cost, dict):
        return None
    fields = ("cloud", "region", "zone", "instance_type", "accelerators", "use_spot",
              "hourly_price", "num_nodes")
    out: dict[str, Any] = {name: cost.get(name) for name in fields}
    out["uptime_seconds"] = (
        int((timezone.now() - state.status_changed_at).total_seconds())
        if state.status == "up" and state.status_changed_at else None)
    return out


def cluster_stop_tears_down(*, state: ClusterState) -> bool:
    """Whether stopping this cluster releases its machines (its infrastructure,
    Kubernetes say, cannot keep stopped ones): the UI says so up front."""
    from compute.backends import BackendError, backend_name_for, get_backend

    config = state.resource.config or {}
    try:
        return get_backend(state.backend or backend_name_for(config)).stop_tears_down(config)
    except BackendError:  # a backend this den does not have
        return False
