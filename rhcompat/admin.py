"""Runhouse settings and cluster sub-tokens in the Django admin, read-only:
settings change through ``PUT /rh/user/config``; a sub-token dies with its
parent token, which staff revoke from the token's own admin page."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from rhcompat.models import ClusterSubToken, RunhouseSettings


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(RunhouseSettings)
class RunhouseSettingsAdmin(_ReadOnly):
    list_display = ("user", "updated_at")
    search_fields = ("user__username",)


@admin.register(ClusterSubToken)
class ClusterSubTokenAdmin(_ReadOnly):
    list_display = ("parent", "namespace", "hint", "created_at")
    search_fields = ("parent__user__username", "namespace")
    exclude = ("token_hash",)
