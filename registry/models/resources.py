"""Resources: named JSON signatures (clusters, functions, modules, envs, secrets)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.db import models

from registry.models.querysets import AccessQuerySet

if TYPE_CHECKING:
    from registry.access import Caller


class ResourceType(models.TextChoices):
    CLUSTER = "cluster"
    FUNCTION = "function"
    MODULE = "module"
    ENV = "env"
    SECRET = "secret"
    RESOURCE = "resource"


class Visibility(models.TextChoices):
    PRIVATE = "private"
    UNLISTED = "unlisted"
    PUBLIC = "public"


class ResourceQuerySet(AccessQuerySet["Resource"]):
    def visible_to(self, caller: Caller, level: int) -> ResourceQuerySet:
        """Resources the caller may act on at ``level``; see ``registry.access``."""
        from registry.access import restrict_resources

        return restrict_resources(self, caller, level)

    def listable_by(self, caller: Caller) -> ResourceQuerySet:
        """Resources the caller may find in lists and search (never others' unlisted)."""
        from registry.access import restrict_listable

        return restrict_listable(self, caller)


class Resource(models.Model):
    """A saved resource at ``/<owner>/<name>``.

    Grants, versions and audit rows hang off ``id``: a name deleted and created
    again is a new resource with an empty access list and history.
    """

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="resources"
    )
    name = models.CharField(max_length=200)
    type = models.CharField(max_length=16, choices=ResourceType.choices)
    visibility = models.CharField(
        max_length=16, choices=Visibility.choices, default=Visibility.PRIVATE
    )
    description = models.TextField(blank=True, default="")
    config = models.JSONField(default=dict)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    objects = ResourceQuerySet.as_manager()

    #: The caller's effective level, set by ``registry.access.access_resource``.
    access_level: int | None = None
    #: The caller's grant level (0 for none), set alongside ``access_level``.
    grant_level: int | None = None
    #: The caller's role in the owning organisation (None: no member), set alongside.
    org_role: str | None = None

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="resource_owner_name_unique"),
        ]
        indexes = [
            models.Index(fields=["visibility", "-updated_at", "-id"], name="resource_vis_updated"),
            models.Index(fields=["owner", "-updated_at", "-id"], name="resource_owner_updated"),
            models.Index(fields=["type"], name="resource_type"),
        ]

    def __str__(self) -> str:
        return self.address

    @property
    def address(self) -> str:
        return f"/{self.owner.username}/{self.name}"

    @property
    def url(self) -> str:
        return f"{settings.DEN_PUBLIC_URL}{self.address}"
