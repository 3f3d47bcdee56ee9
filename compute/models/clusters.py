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

    **Requests own the state.** ``request_seq`` is the number of the newest
    up, stop or teardown request: every request increments it, every task
    message carries the number of the request it works for, and every claim,
    finish and failure matches on ``(id, request_seq)``, so a task of an old
    request can never change the outcome of a newer one.

    Within one request, ``claimed_by`` is the id of the task message that
    claimed its first step (a duplicate message, another id, finds it taken;
    a redelivery of the same message may pick the work up), and a start's
    polls are numbered by ``poll_step``: the poll that advances the step
    enqueues the next one, so duplicate polls never fork the chain.
    ``next_step_at`` is when the current step's task should have run by; the
    sweep re-enqueues a step whose message was lost (a worker killed with it).
    """

    resource = models.OneToOneField(
        "registry.Resource", on_delete=models.CASCADE, related_name="cluster_state"
    )
    status = models.CharField(
        max_length=16, choices=ClusterStatus.choices, default=ClusterStatus.DOWN
    )
    status_changed_at = models.DateTimeField(auto_now_add=True)
    request_seq = models.PositiveBigIntegerField(
        default=0, help_text="Number of the newest up/stop/teardown request; tasks carry it.")
    claimed_by = models.CharField(max_length=64, blank=True, default="")
    poll_step = models.PositiveIntegerField(default=0)
    start_deadline_at = models.DateTimeField(
        null=True, blank=True, help_text="A start not up by then fails (DEN_CLUSTER_START_TIMEOUT).")
    next_step_at = models.DateTimeField(
        null=True, blank=True, help_text="When the current step's task should have run by.")
    launch_token = models.TextField(
        blank=True, default="",
        help_text="The daemon token of the start under way, encrypted (polls may need it).")
    waiting_for = models.CharField(
        max_length=300, blank=True, default="",
        help_text="What the start under way waits for (said if it times out).")
    last_probe_at = models.DateTimeField(null=True, blank=True,
                                         help_text="When a caller last asked for a probe.")
    probed_at = models.DateTimeField(null=True, blank=True,
                                     help_text="When a worker last finished a probe.")
    autostop_requested_at = models.DateTimeField(
        null=True, blank=True,
        help_text="When the sweep asked the idle daemon to stop; it confirms in a heartbeat.")
    backend = models.CharField(max_length=32, blank=True, default="")
    handles = models.JSONField(
        default=dict, blank=True,
        help_text="What the backend needs to find the cluster again (a PID, a request id).",
    )
    daemon_url = models.CharField(max_length=300, blank=True, default="")
    host_keys = models.JSONField(
        default=dict, blank=True,
        help_text="SSH host keys den trusts for the cluster's hosts, trusted on first use: "
                  "host (host:port when not 22) -> OpenSSH public key line.")
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
