"""Encrypted secret values of ``secret`` resources."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class SecretValue(models.Model):
    """The values of one secret, as one Fernet token; never stored in the clear."""

    resource = models.OneToOneField(
        "registry.Resource", on_delete=models.CASCADE, related_name="secret_value"
    )
    ciphertext = models.TextField()
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"secret values of {self.resource_id}"
