"""Code bundles by content hash: what den keeps of a project sent to a cluster."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class CodeBundle(models.Model):
    """A project bundle (the .tar.gz a client sends to a daemon), kept by its
    SHA-256 so that den can put a saved function or module back on a cluster
    that restarted. In the database, not on disk: several den machines share
    no filesystem. Content-addressed, so equal bundles are stored once, and
    capped in size like the client's bundles (``DEN_CODE_BUNDLE_MAX_MB``).

    Only a cluster's own daemon reads one back, and only the bundle of a
    deployment on that cluster (``compute``'s deployment endpoint).
    """

    sha256 = models.CharField(max_length=64, primary_key=True)
    data = models.BinaryField()
    size = models.PositiveBigIntegerField()
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"code {self.sha256[:12]} ({self.size} bytes)"
