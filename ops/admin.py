"""Task figures in the admin, read-only: they are counts workers add to."""

from __future__ import annotations

from typing import Any

from django.contrib import admin

from ops.models import TaskRunStat


@admin.register(TaskRunStat)
class TaskRunStatAdmin(admin.ModelAdmin):
    list_display = ("task", "outcome", "bucket", "count", "seconds")
    list_filter = ("outcome",)
    search_fields = ("task",)

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False
