"""Reads about clusters. Each starts from a resource the caller already
reached through ``registry.access``; none filters by user on its own."""

from __future__ import annotations

from django.db.models import QuerySet

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
