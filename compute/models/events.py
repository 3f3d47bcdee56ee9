"""The event log of a cluster: what den and its backends did, for the UI and API."""

from __future__ import annotations

from django.db import models


class ClusterEvent(models.Model):
    """One thing that happened to a cluster (a request, a status change, a
    backend's log line, an error). Append-only; ``id`` orders events, so that
    an SSE client resumes from the last id it saw."""

    cluster = models.ForeignKey(
        "compute.ClusterState", on_delete=models.CASCADE, related_name="events"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    kind = models.CharField(max_length=40)
    message = models.TextField(blank=True, default="")
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["cluster", "id"], name="cluster_event_cursor")]

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"
