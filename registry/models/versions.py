"""Immutable versions of a resource's config."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ResourceVersion(models.Model):
    """One config of a resource, never changed once written; restore copies it forward."""

    resource = models.ForeignKey("registry.Resource", on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    type = models.CharField(max_length=16)
    config = models.JSONField()
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    restored_from = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["resource", "number"], name="version_resource_number_unique"),
        ]
        ordering = ["-number"]

    def __str__(self) -> str:
        return f"{self.resource_id} v{self.number}"
