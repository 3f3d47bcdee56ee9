"""API tokens: many per user, shown once, stored only as a hash."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from registry.models.querysets import AccessQuerySet


class TokenScope(models.TextChoices):
    READ = "read"
    WRITE = "write"


class ApiTokenQuerySet(AccessQuerySet["ApiToken"]):
    def active(self) -> ApiTokenQuerySet:
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )


class ApiToken(models.Model):
    """A bearer token. ``token_hash`` is the SHA-256 of the whole token string;
    tokens carry 178 random bits, so a fast hash is as safe as a slow one here."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tokens")
    name = models.CharField(max_length=100)
    scope = models.CharField(max_length=8, choices=TokenScope.choices, default=TokenScope.WRITE)
    token_hash = models.CharField(max_length=64, unique=True)
    hint = models.CharField(max_length=16, help_text="The token's last characters, to tell tokens apart.")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Set on a cluster's own token (minted by compute for its node daemon): such a
    # token acts only on that cluster, at read level, and only where a view allows
    # cluster tokens (heartbeats, auth/check).
    cluster = models.ForeignKey(
        "registry.Resource", on_delete=models.CASCADE, null=True, blank=True,
        related_name="cluster_tokens",
    )

    objects = ApiTokenQuerySet.as_manager()

    #: Stamped on use; answers nothing about access (see AccessQuerySet).
    access_neutral_fields = frozenset({"last_used_at"})

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} (…{self.hint})"

    @property
    def is_active(self) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > timezone.now()
