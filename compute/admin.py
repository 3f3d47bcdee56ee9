"""Cluster runtime state and events in the Django admin, read-only.

Workers and heartbeats write these rows, with claims that a hand edit would
break, so the admin only shows them. What staff may do to a cluster (stop it,
tear it down) are actions that go through ``compute.services``, like the API
and the web UI, and leave the same event and audit rows.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from compute import services
from compute.models import ClusterEvent, ClusterState, Deployment
from registry.errors import DenError


class ReadOnlyAdmin(admin.ModelAdmin):
    """Shows rows; never adds, edits or deletes them."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _run_on_each(modeladmin: admin.ModelAdmin, request: HttpRequest,
                 queryset: QuerySet[ClusterState], service: Any, done: str) -> None:
    count = 0
    for state in queryset.select_related("resource__owner"):
        try:
            service(actor=request.user, resource=state.resource)
        except DenError as exc:
            modeladmin.message_user(request, f"{state.resource.address}: {exc.message}",
                                    messages.ERROR)
        else:
            count += 1
    if count:
        modeladmin.message_user(request, f"{done} {count} cluster{'s' if count != 1 else ''}.",
                                messages.SUCCESS)


@admin.register(ClusterState)
class ClusterStateAdmin(ReadOnlyAdmin):
    list_display = ("resource", "status", "backend", "daemon_url", "last_heartbeat_at",
                    "calls_in_flight", "status_changed_at")
    list_filter = ("status", "backend")
    list_select_related = ("resource__owner",)
    search_fields = ("resource__name", "resource__owner__username", "daemon_url")
    readonly_fields = ("event_log",)
    actions = ["request_stop", "request_teardown"]

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        # Actions need no change permission here (rows stay read-only), so
        # ask for the superuser flag instead, as these stop real machines.
        actions = super().get_actions(request)
        if not request.user.is_superuser:
            actions.pop("request_stop", None)
            actions.pop("request_teardown", None)
        return actions

    @admin.display(description="Events")
    def event_log(self, state: ClusterState) -> str:
        url = reverse("admin:compute_clusterevent_changelist")
        return format_html('<a href="{}?cluster__id__exact={}">Events of this cluster</a>',
                           url, state.pk)

    @admin.action(description="Stop the selected clusters")
    def request_stop(self, request: HttpRequest, queryset: QuerySet[ClusterState]) -> None:
        _run_on_each(self, request, queryset, services.cluster_request_stop, "Asked to stop")

    @admin.action(description="Tear down the selected clusters")
    def request_teardown(self, request: HttpRequest, queryset: QuerySet[ClusterState]) -> None:
        _run_on_each(self, request, queryset, services.cluster_request_teardown,
                     "Asked to tear down")


@admin.register(ClusterEvent)
class ClusterEventAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "cluster", "kind", "message")
    list_filter = ("kind",)
    list_select_related = ("cluster__resource__owner",)
    search_fields = ("message", "kind", "cluster__resource__name")
    date_hierarchy = "created_at"


@admin.register(Deployment)
class DeploymentAdmin(ReadOnlyAdmin):
    """What den puts back on a restarted daemon; the spec stays encrypted here."""

    list_display = ("resource", "cluster", "kind", "code", "restores_state", "deployed_by",
                    "size", "updated_at")
    list_select_related = ("resource__owner", "cluster__owner", "deployed_by")
    exclude = ("spec_encrypted",)

