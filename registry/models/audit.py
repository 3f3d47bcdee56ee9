"""The audit log: who changed access, visibility, tokens, secrets and configs."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class AuditEvent(models.Model):
    """One audited action. ``resource_id`` is kept without a foreign-key
    constraint so rows outlive the resource, and a re-created name (a new id)
    does not inherit the old resource's log."""

    created_at = models.DateTimeField(auto_now_add=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    actor_username = models.CharField(max_length=80, blank=True, default="")
    action = models.CharField(max_length=40)
    resource = models.ForeignKey(
        "registry.Resource",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="+",
    )
    address = models.CharField(max_length=250, blank=True, default="")
    # The organisation the event belongs to (membership, teams, service
    # accounts, and anything done to an org's resources), for its admins'
    # ``GET /api/v1/audit?org=``; no constraint, like ``resource``.
    org = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="+",
    )
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["resource", "-created_at"], name="audit_resource_time"),
            models.Index(fields=["actor", "-created_at"], name="audit_actor_time"),
            models.Index(fields=["org", "-created_at"], name="audit_org_time"),
        ]

    def __str__(self) -> str:
        return f"{self.actor_username} {self.action} {self.address}"
