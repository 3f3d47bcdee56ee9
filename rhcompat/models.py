"""What the Runhouse-compatible API keeps beside den's registry: per-user
runhouse settings, and cluster sub-tokens."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class RunhouseSettings(models.Model):
    """A user's runhouse defaults (``default_folder``, ``default_autostop``,
    ``launcher``, ...), as ``GET /rh/user`` gives them and ``PUT
    /rh/user/config`` stores them."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="runhouse_settings"
    )
    config = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "runhouse settings"

    def __str__(self) -> str:
        return f"runhouse settings of {self.user_id}"


class ClusterSubToken(models.Model):
    """A token a runhouse client sends to a cluster in ``namespace`` instead of
    its own den token, so the cluster's owner never holds the caller's real
    credential.

    It is derived from its parent token (``rhcompat.services``), so minting it
    again gives the same token; only its hash is stored. It acts as its user,
    never above the parent token's scope, only on ``namespace``'s resources,
    and only on the few ``/rh/`` requests a runhouse daemon makes. It stops
    working the moment its parent is revoked or expires (checked on every use),
    and goes with it when the parent is deleted. It is not an ``ApiToken``
    row: den's own API must not accept it at all."""

    parent = models.ForeignKey(
        "registry.ApiToken", on_delete=models.CASCADE, related_name="runhouse_subtokens"
    )
    namespace = models.CharField(max_length=39)
    token_hash = models.CharField(max_length=64, unique=True)
    hint = models.CharField(max_length=16)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["parent", "namespace"],
                                    name="rh_subtoken_parent_namespace_unique"),
        ]

    def __str__(self) -> str:
        return f"cluster sub-token for {self.namespace} (…{self.hint})"
