"""The runtime state of a ``cluster`` resource: what den knows about it right now."""

from __future__ import annotations

from django.db import models


class ClusterStatus(models.TextChoices):
    """Where a cluster is in its life. ``provisioning``, ``stopping`` and
    ``terminating`` are *requested* transitions a task has yet to finish;
    ``starting`` means a worker has claimed the ``up`` and is starting the daemon."""

    DOWN = "down"
    PROVISIONING = "provisioning"
    STARTING = "starting"
    UP = "up"
    STOPPING = "stopping"
    STOPPED = "stopped"
    TERMINATING = "terminating"
    TERMINATED = "terminated"
    FAILED = "failed"
    UNREACHABLE = "unreachable"


class ClusterState(models.Model):
    """Runtime state beside a ``cluster`` resource (its config stays in the
    registry). One row per cluster, created on first use; deleting the
    resource deletes it.

    ``claimed_by`` is the id of the Celery task message working on the current
    requested transition: a duplicate message (another id) finds it taken and
    does nothing, while a redelivery of the same message may pick the work up.
    """

    resource = models.OneToOneField(
        "registry.Resource", on_delete=models.CASCADE, related_name="cluster_state"
    )
    status = models.CharField(
        max_length=16, choices=ClusterStatus.choices, default=ClusterStatus.DOWN
    )
    status_changed_at = models.DateTimeField(auto_now_add=True)
    claimed_by = models.CharField(max_length=64, blank=True, default="")
    backend = models.CharField(max_length=32, blank=True, default="")
    handles = models.JSONField(
        default=dict, blank=True,
        help_text="What the backend needs to find the cluster again (a PID, a request id).",
    )
    daemon_url = models.CharField(max_length=300, blank=True, default="")
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    last_activity_at = models.DateTimeField(null=True, blank=True)
    calls_in_flight = models.PositiveIntegerField(default=0)
    objects_count = models.PositiveIntegerField(default=0)
    autostop_mins = models.IntegerField(
        null=True, blank=True,
        help_text="Overrides the config's autostop_mins when set; -1 (or 0) means never.",
    )
    message = models.TextField(blank=True, default="", help_text="Why it failed, if it did.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["status", "last_heartbeat_at"], name="cluster_status_beat")]

    def __str__(self) -> str:
        return f"cluster {self.resource_id}: {self.status}"

    @property
    def effective_autostop_mins(self) -> int:
        """The autostop in force: the runtime override, else the config's, else never."""
        if self.autostop_mins is not None:
            return self.autostop_mins
        value = (self.resource.config or {}).get("autostop_mins", -1)
        return value if isinstance(value, int) and not isinstance(value, bool) else -1
