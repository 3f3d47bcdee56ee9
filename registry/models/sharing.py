"""Access grants, and invitations that turn an email into an account and its grants."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower

from registry.models.querysets import AccessQuerySet


class AccessLevel(models.IntegerChoices):
    """Ordered so that a comparison says whether one level includes another."""

    NONE = 0, "none"
    READ = 1, "read"
    WRITE = 2, "write"
    OWNER = 3, "owner"

    @classmethod
    def from_name(cls, name: str) -> AccessLevel:
        for level in cls:
            if level.label == name:
                return level
        raise ValueError(name)


class AccessGrant(models.Model):
    """A user's ``read`` or ``write`` access to one resource (by id, not by name)."""

    resource = models.ForeignKey("registry.Resource", on_delete=models.CASCADE, related_name="grants")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="grants")
    level = models.PositiveSmallIntegerField(choices=AccessLevel.choices)
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = AccessQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["resource", "user"], name="grant_resource_user_unique"),
        ]
        indexes = [models.Index(fields=["user", "resource"], name="grant_user_resource")]

    def __str__(self) -> str:
        return f"{self.user_id} {self.get_level_display()} on {self.resource_id}"


class Invitation(models.Model):
    """An invitation to create an account, sent to an email address.

    Only a hash of the link's token is stored. Pending grants to the same
    address bind to the account created by accepting it.
    """

    email = models.EmailField()
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    # The resource whose share sent it (none for an administrator's invitation):
    # cancelling that pending grant, or deleting the resource, ends the link too.
    resource = models.ForeignKey(
        "registry.Resource", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    #: The link's token, set only on the object that created it, right then.
    plain_token: str = ""

    class Meta:
        indexes = [models.Index(Lower("email"), name="invitation_email_ci")]

    def __str__(self) -> str:
        return self.email


class PendingGrant(models.Model):
    """Access promised to an email address that has no account yet."""

    resource = models.ForeignKey(
        "registry.Resource", on_delete=models.CASCADE, related_name="pending_grants"
    )
    email = models.EmailField()
    level = models.PositiveSmallIntegerField(choices=AccessLevel.choices)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint("resource", Lower("email"), name="pending_resource_email_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.email} {self.get_level_display()} on {self.resource_id}"
