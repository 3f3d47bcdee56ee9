"""Reads the pages need that ``registry.selectors`` does not offer yet. Each
starts from the access layer (``registry.selectors.resource_list``, which
applies ``restrict_listable``) or from a resource already fetched through
``registry.access``; none filters resources by user on its own. They are
candidates to move into ``registry.selectors``. A cluster's runtime comes
from ``compute.selectors``, for a resource the page already fetched."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import OuterRef, QuerySet, Subquery

from compute import selectors as compute_selectors
from frontend.pagination import Page, keyset_page
from registry import selectors
from registry.access import Caller
from registry.errors import NotFound
from registry.models import AccessGrant, AuditEvent, Resource, ResourceVersion

DASHBOARD_LIST_SIZE = 8
RECENT_VERSIONS = 5


def _with_my_grant(queryset: QuerySet[Resource], caller: Caller) -> QuerySet[Resource]:
    """Annotate each resource with the caller's own grant level, if any, so a
    list can say "read" or "write" without one query per row."""
    return queryset.annotate(
        my_grant=Subquery(
            AccessGrant.objects.filter(resource=OuterRef("pk"), user=caller.user).values("level")[:1]
        )
    )


@dataclass
class Dashboard:
    mine: list[Resource]
    shared: list[Resource]
    recent: list[Resource]


def dashboard(*, caller: Caller) -> Dashboard:
    """Three short lists: what I own, what others shared with me, and what
    changed lately among everything I may find. Three queries."""
    newest = ("-changed_at", "-id")  # see registry.selectors.resource_list
    mine = selectors.resource_list(caller=caller, owner=caller.user.username).order_by(*newest)
    shared = _with_my_grant(
        selectors.resource_list(caller=caller, shared_with_me=True), caller
    ).order_by(*newest)
    recent = selectors.resource_list(caller=caller).order_by(*newest)
    return Dashboard(
        mine=list(mine[:DASHBOARD_LIST_SIZE]),
        shared=list(shared[:DASHBOARD_LIST_SIZE]),
        recent=list(recent[:DASHBOARD_LIST_SIZE]),
    )


def resource_search(
    *,
    caller: Caller,
    cursor: str | None,
    size: int,
    **filters: Any,
) -> Page:
    """One page of ``registry.selectors.resource_list``, newest change first."""
    queryset = selectors.resource_list(caller=caller, **filters)
    return keyset_page(queryset, cursor=cursor, size=size, fields=("changed_at", "id"))


def namespace_owner(*, username: str) -> Any:
    """The user whose namespace ``/<username>`` is; NotFound if there is none."""
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise NotFound(f"There is no user {username}.")
    return user


def recent_versions(*, resource: Resource, limit: int = RECENT_VERSIONS) -> list[ResourceVersion]:
    return list(selectors.resource_versions(resource=resource)[:limit])


def version_page(*, resource: Resource, cursor: str | None, size: int) -> Page:
    return keyset_page(
        selectors.resource_versions(resource=resource), cursor=cursor, size=size, fields=("number",)
    )


def audit_page(*, caller: Caller, resource: Resource, cursor: str | None, size: int) -> Page:
    events: QuerySet[AuditEvent] = selectors.audit_list(caller=caller, resource=resource)
    return keyset_page(events, cursor=cursor, size=size, fields=("id",))


CLUSTER_EVENTS_SHOWN = 20


@dataclass
class ClusterRuntime:
    """What a cluster's page shows: its state and its latest events, newest first."""

    state: Any
    events: list[Any]


def cluster_runtime(*, resource: Resource, events: int = CLUSTER_EVENTS_SHOWN) -> ClusterRuntime:
    """The cluster's runtime state and latest events, in two queries (one when
    it was never brought up), however long its event log."""
    state = compute_selectors.cluster_state_get(resource=resource)
    if state.pk is None:
        return ClusterRuntime(state=state, events=[])
    latest = compute_selectors.cluster_events(resource=resource).order_by("-id")[:events]
    return ClusterRuntime(state=state, events=list(latest))
