"""Reads of the Runhouse-compatible API. Each starts from den's access layer
(through ``registry.selectors``) or from a resource already reached through it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from registry import selectors as registry_selectors
from registry.access import Caller, level_of
from registry.models import AccessLevel, Resource, ResourceVersion
from rhcompat import mapping
from rhcompat.models import RunhouseSettings

MAX_LIST = 200


def api_server_url() -> str:
    """den's own /rh URL: what runhouse clients must call, and store in their config."""
    return f"{settings.DEN_PUBLIC_URL}/rh"


def user_settings(*, user: Any) -> dict[str, Any]:
    """The user's runhouse defaults: what they stored, over den's defaults.
    ``api_server_url`` is always den's own, so that no client that logged in
    here later sends a den token to runhouse's old hosted address."""
    stored = RunhouseSettings.objects.filter(user=user).values_list("config", flat=True).first()
    return {
        "default_folder": f"/{user.username}",
        "launcher": "local",  # den has no /cluster/up for runhouse's "den" launcher
        "autosave": False,
        "dashboard_url": settings.DEN_PUBLIC_URL,
        **(stored or {}),
        "api_server_url": api_server_url(),
    }


def resource_list(*, caller: Caller, resource_type: str | None = None, owned: bool = False,
                  statuses: tuple[str, ...] | None = None, since: int | None = None,
                  limit: int = MAX_LIST) -> list[tuple[Resource, Any]]:
    """What the caller may list (den's rules), newest first, with each row's
    cluster state (None for non-clusters) and ``access_level`` set."""
    den_type = mapping.den_type_for(resource_type) if resource_type else None
    queryset = registry_selectors.resource_list(
        caller=caller, type=den_type, owner=caller.user.username if owned else None
    ).defer(None).select_related("cluster_state")
    if statuses is not None:
        queryset = queryset.filter(cluster_state__status__in=statuses)
    if since is not None:
        queryset = queryset.filter(
            cluster_state__last_heartbeat_at__gte=timezone.now() - timedelta(seconds=since)
        )
    rows = list(queryset.order_by("-changed_at", "-id")[: max(1, min(limit, MAX_LIST))])
    if resource_type and den_type == "resource":
        rows = [r for r in rows if mapping.runhouse_view(r.type, r.config)[0] == resource_type]
    grants = registry_selectors.grant_levels(caller=caller, resource_ids=[r.pk for r in rows])
    out = []
    for resource in rows:
        resource.access_level = level_of(caller, resource, grants.get(resource.pk, 0))
        out.append((resource, getattr(resource, "cluster_state", None)))
    return out


def resource_history(*, resource: Resource, limit: int | None = None) -> list[ResourceVersion]:
    """The resource's versions, newest first."""
    versions = registry_selectors.resource_versions(resource=resource).order_by("-number")
    return list(versions[:limit] if limit else versions)


def owned_secrets_with_values(*, caller: Caller) -> list[Resource]:
    """The caller's own secrets that hold values (runhouse's vault listing)."""
    return list(
        registry_selectors.resource_list(caller=caller, type="secret", owner=caller.user.username)
        .filter(secret_value__isnull=False)
        .order_by("name")[:MAX_LIST]
    )


def level_label(resource: Resource) -> str:
    return AccessLevel(resource.access_level or 0).label
