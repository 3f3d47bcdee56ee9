"""Writes about clusters: every state change happens here, in a transaction,
with its audit row and cluster event, and enqueues its Celery task only once
the transaction has committed (so a task never looks for a row that is not
there yet).

Two kinds of functions live here:

- ``cluster_request_*`` and ``cluster_set_autostop``: what a user (or the
  sweep) asks for. They move the cluster to a *requested* status
  (``provisioning``, ``stopping``, ``terminating``) and enqueue the work.
- ``cluster_run_*``: what the tasks do. Each first *claims* its requested
  status with a conditional UPDATE (``_claim``) and does nothing when the claim
  fails, so a duplicate message, or one that arrives after the user changed
  their mind, has no effect.

Callers have already fetched the resource through ``registry.access`` at the
level the change needs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from compute.backends import (
    BackendError,
    ClusterBackend,
    LaunchSpec,
    LogFn,
    TransientBackendError,
    backend_name_for,
    get_backend,
)
from compute.models import ClusterEvent, ClusterState, ClusterStatus
from registry import credentials
from registry.authcache import bump_access_epoch
from registry.errors import DenError, InvalidInput, PermissionDenied
from registry.models import ApiToken, Resource, ResourceType, TokenScope
from registry.services import audit_record

logger = logging.getLogger(__name__)
S = ClusterStatus
#: The backend of a cluster den does not manage, whose own daemon reports its
#: status (runhouse clusters, through /rh/): den records what it is told and
#: never starts, stops or sweeps it.
REPORTED = "reported"


class ClusterBusy(DenError):
    status = 409
    code = "cluster_busy"


# Helpers ----------------------------------------------------------------------


def require_cluster(resource: Resource) -> None:
    """Cluster endpoints on another type of resource are a client mistake."""
    if resource.type != ResourceType.CLUSTER:
        raise InvalidInput(
            f"{resource.address} is a {resource.type}, not a cluster; cluster actions "
            "work only on resources of type 'cluster'.",
            code="not_a_cluster",
        )


def require_local_allowed(resource: Resource, backend: str) -> None:
    """Refuse a local cluster whose owner is not one of den's administrators.

    A local cluster's daemon runs on den's own server, so whoever may put code
    on it runs code there; ``DEN_LOCAL_CLUSTERS=everyone`` lets every user
    have one. The owner counts, not who asks: the daemon acts for the owner,
    and an administrator who shares the cluster chose to.
    """
    if backend != "local" or settings.DEN_LOCAL_CLUSTERS == "everyone":
        return
    owner = resource.owner
    if owner.is_active and (owner.is_staff or owner.is_superuser):
        return
    raise PermissionDenied(
        f"{resource.address} has provider 'local', whose daemon runs on den's own server, "
        "so only den's administrators may have one; use another provider, or ask an "
        "administrator to allow local clusters for everyone (DEN_LOCAL_CLUSTERS=everyone).",
        field="provider", code="local_cluster_not_allowed",
    )


def event_record(*, state: ClusterState, kind: str, message: str = "", **data: Any) -> ClusterEvent:
    """Append one event to a cluster's log (shown by the UI and the events API)."""
    return ClusterEvent.objects.create(cluster=state, kind=kind, message=message, data=data)


def _backend_log(state: ClusterState) -> LogFn:
    """A backend's ``log`` callback: each report becomes an event at once, in
    its own autocommit, so the UI sees progress while a slow start runs."""

    def log(kind: str, message: str = "", **data: Any) -> None:
        event_record(state=state, kind=kind, message=message, **data)

    return log


def _lock_state(resource: Resource) -> ClusterState:
    """The cluster's state row, created on first use, locked for this transaction."""
    ClusterState.objects.get_or_create(resource=resource)
    state = ClusterState.objects.select_for_update().get(resource=resource)
    state.resource = resource
    return state


def _set_status(state: ClusterState, status: str, **fields: Any) -> None:
    """Move a locked state to a *requested* status: any claim on the previous
    request is dropped, so only a task enqueued for this request may act."""
    state.status = status
    state.status_changed_at = timezone.now()
    state.claimed_by = ""
    for name, value in fields.items():
        setattr(state, name, value)
    state.save()


def _claim(state_id: int, *, expect: tuple[str, ...], becomes: str, claim: str) -> bool:
    """Claim a requested transition for the task message ``claim`` (its id).

    Succeeds only while the cluster is still in one of ``expect`` and no other
    message holds it; a redelivery or retry of the same message (same id) may
    claim again, so work interrupted by a lost worker is picked up.
    """
    changed = (
        ClusterState.objects.filter(id=state_id, status__in=expect)
        .filter(Q(claimed_by="") | Q(claimed_by=claim))
        .update(status=becomes, claimed_by=claim, updated_at=timezone.now())
    )
    return changed == 1


def _finish(state_id: int, *, status: str, claim: str, to: str, **fields: Any) -> bool:
    """Complete a claimed transition, unless a newer request replaced it."""
    now = timezone.now()
    changed = ClusterState.objects.filter(id=state_id, status=status, claimed_by=claim).update(
        status=to, claimed_by="", status_changed_at=now, updated_at=now, **fields
    )
    return changed == 1


def _revoke_cluster_tokens(resource: Resource) -> int:
    """Revoke every live token of this cluster: a stopped daemon must not keep
    a credential, and a restarted one gets a fresh token."""
    revoked = ApiToken.objects.filter(cluster=resource, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    if revoked:
        bump_access_epoch()  # update() sends no signal: invalidate cached lookups here
    return revoked


def _revoke_minted_token(plain: str) -> None:
    """Revoke the one token a start minted, not the cluster's newest: by the
    time a slow start fails, a newer start may have given its daemon one."""
    if ApiToken.objects.filter(token_hash=credentials.hash_token(plain),
                               revoked_at__isnull=True).update(revoked_at=timezone.now()):
        bump_access_epoch()


def _mint_cluster_token(state: ClusterState) -> str:
    """A new token for the cluster's daemon, bound to the cluster.

    It belongs to the cluster's owner (tokens hang off a user) but the access
    layer lets it reach only this cluster, at read level, and only the
    heartbeat and auth-check endpoints accept it. Only its hash is stored;
    the plain token goes straight to the daemon and is never logged.
    """
    resource = state.resource
    plain = credentials.new_token()
    with transaction.atomic():
        _revoke_cluster_tokens(resource)
        token = ApiToken.objects.create(
            user=resource.owner,
            name=f"cluster {resource.address}"[:100],
            scope=TokenScope.WRITE,  # heartbeats are POSTs; access is capped at read
            token_hash=credentials.hash_token(plain),
            hint=credentials.token_hint(plain),
            cluster=resource,
        )
        audit_record(actor=None, action="cluster.token.create", resource=resource,
                     token_id=token.pk)
    return plain


def _enqueue(task_name: str, state_id: int) -> None:
    from compute import tasks

    task = getattr(tasks, task_name)
    task.delay_on_commit(state_id)


# Requests (user-facing) ----------------------------------------------------------


@transaction.atomic
def cluster_request_up(*, actor: Any, resource: Resource) -> ClusterState:
    """Ask for the cluster to come up; a worker starts it.

    Asking again while it is up or on its way up changes nothing, so clients
    may call ``up`` whenever they are unsure.
    """
    require_cluster(resource)
    state = _lock_state(resource)
    _refuse_reported(state)
    if state.status in (S.PROVISIONING, S.STARTING, S.UP):
        return state
    if state.status in (S.STOPPING, S.TERMINATING):
        raise ClusterBusy(
            f"{resource.address} is {state.status}; bring it up again once that has finished."
        )
    backend = backend_name_for(resource.config)
    try:
        get_backend(backend)
    except BackendError as exc:
        raise InvalidInput(str(exc), field="provider") from None
    require_local_allowed(resource, backend)
    previous = state.status
    _set_status(state, S.PROVISIONING, backend=backend, message="")
    _revoke_cluster_tokens(resource)
    event_record(state=state, kind="up.requested",
                 message=f"{_who(actor)} asked for the cluster to come up.", backend=backend)
    audit_record(actor=actor, action="cluster.up", resource=resource, previous=previous)
    _enqueue("cluster_up", state.pk)
    return state


def _request_stop(*, actor: Any, state: ClusterState, action: str, message: str) -> None:
    _set_status(state, S.STOPPING)
    _revoke_cluster_tokens(state.resource)
    event_record(state=state, kind="stop.requested", message=message)
    audit_record(actor=actor, action=action, resource=state.resource)
    _enqueue("cluster_stop", state.pk)


@transaction.atomic
def cluster_request_stop(*, actor: Any, resource: Resource) -> ClusterState:
    """Ask for the cluster to stop (it can come up again). Its token is
    revoked now, so the daemon's heartbeats stop counting at once."""
    require_cluster(resource)
    state = _lock_state(resource)
    _refuse_reported(state)
    if state.status in (S.DOWN, S.STOPPING, S.STOPPED, S.TERMINATING, S.TERMINATED):
        return state
    _request_stop(actor=actor, state=state, action="cluster.stop",
                  message=f"{_who(actor)} asked for the cluster to stop.")
    return state


@transaction.atomic
def cluster_request_teardown(*, actor: Any, resource: Resource) -> ClusterState:
    """Ask for the cluster to be torn down: its daemon stopped and whatever it
    holds (machines, the local working folder) released."""
    require_cluster(resource)
    state = _lock_state(resource)
    _refuse_reported(state)
    if state.status in (S.TERMINATING, S.TERMINATED):
        return state
    _set_status(state, S.TERMINATING)
    _revoke_cluster_tokens(resource)
    event_record(state=state, kind="teardown.requested",
                 message=f"{_who(actor)} asked for the cluster to be torn down.")
    audit_record(actor=actor, action="cluster.teardown", resource=resource)
    _enqueue("cluster_teardown", state.pk)
    return state


@transaction.atomic
def cluster_set_autostop(*, actor: Any, resource: Resource, autostop_mins: Any) -> ClusterState:
    """Set how long the cluster may sit idle before den stops it (-1: never).

    Kept on the runtime state, not the config, so that changing it makes no
    new version of the resource.
    """
    require_cluster(resource)
    if isinstance(autostop_mins, bool) or not isinstance(autostop_mins, int) or autostop_mins < -1:
        raise InvalidInput("autostop_mins must be a whole number of minutes, or -1 for never.",
                           field="autostop_mins")
    state = _lock_state(resource)
    old = state.effective_autostop_mins
    state.autostop_mins = autostop_mins
    state.save(update_fields=["autostop_mins", "updated_at"])
    event_record(state=state, kind="autostop.set",
                 message=f"{_who(actor)} set autostop to {_autostop_text(autostop_mins)}.",
                 autostop_mins=autostop_mins)
    audit_record(actor=actor, action="cluster.autostop", resource=resource, old=old,
                 new=autostop_mins)
    return state


@transaction.atomic
def cluster_record_heartbeat(
    *,
    resource: Resource,
    token: Any,
    last_activity: datetime | None = None,
    calls_in_flight: int = 0,
    objects: int = 0,
) -> ClusterState:
    """Record a heartbeat from the cluster's daemon, sent with its own token.

    A heartbeat from an unreachable cluster makes it ``up`` again (audited,
    like every status change a person did not ask for). Routine heartbeats
    write no audit row: they change no access, and one every few seconds per
    cluster would bury the rows that matter.
    """
    require_cluster(resource)
    if not isinstance(token, ApiToken) or token.cluster_id != resource.pk:
        raise PermissionDenied(
            "Heartbeats come from the cluster's daemon, sent with the cluster's own token."
        )
    now = timezone.now()
    state = _lock_state(resource)
    if last_activity is not None:
        state.last_activity_at = min(last_activity, now)
    state.last_heartbeat_at = now
    state.calls_in_flight = calls_in_flight
    state.objects_count = objects
    if state.status == S.UNREACHABLE:
        state.status = S.UP
        state.status_changed_at = now
        event_record(state=state, kind="reachable",
                     message="Heartbeats arrive again; the cluster is up.")
        audit_record(actor=None, action="cluster.reachable", resource=resource)
    state.save()
    return state


def _refuse_reported(state: ClusterState) -> None:
    if state.backend == REPORTED:
        raise InvalidInput(
            f"{state.resource.address} is run by its own (runhouse) daemon, which reports its "
            "status to den; start and stop it with runhouse.",
            code="reported_cluster",
        )


MAX_REPORTED_LOG_CHARS = 64 * 1024


@transaction.atomic
def cluster_record_report(
    *, actor: Any, resource: Resource, status: str, daemon_status: str,
    processes: int | None = None, server_pid: Any = None,
) -> ClusterState:
    """Record the status a cluster's own daemon reports (a runhouse daemon,
    through /rh/): the cluster becomes a *reported* one, which den shows but
    never starts, stops or sweeps. A cluster den started itself is refused:
    its daemon reports through den's heartbeats."""
    require_cluster(resource)
    state = _lock_state(resource)
    if state.backend not in ("", REPORTED) and state.status not in (
        S.DOWN, S.STOPPED, S.TERMINATED, S.FAILED
    ):
        raise ClusterBusy(
            f"den runs {resource.address} itself ({state.backend} backend); only its own "
            "daemon reports its status."
        )
    now = timezone.now()
    previous = state.status if state.backend == REPORTED else None
    state.backend = REPORTED
    state.handles = {}
    state.claimed_by = ""
    state.last_heartbeat_at = now
    if isinstance(processes, int):
        state.objects_count = processes
    if previous != status:
        state.status = status
        state.status_changed_at = now
        state.message = f"Reported by the cluster's daemon: {daemon_status}."
        event_record(state=state, kind="reported", message=state.message,
                     daemon_status=daemon_status, server_pid=server_pid
                     if isinstance(server_pid, int) else None)
        audit_record(actor=actor, action="cluster.reported", resource=resource,
                     previous=previous, status=status)
    state.save()
    return state


@transaction.atomic
def cluster_record_report_logs(*, actor: Any, resource: Resource, text: str,
                               file_name: str = "") -> ClusterEvent:
    """Keep a reported cluster's log push as one event (its last 64 KiB)."""
    require_cluster(resource)
    state = _lock_state(resource)
    if state.backend != REPORTED:
        raise InvalidInput(
            f"{resource.address} has reported no status yet; only a cluster whose own daemon "
            "reports (a runhouse cluster) pushes logs here.",
            code="not_reported",
        )
    return event_record(state=state, kind="log", message=text[-MAX_REPORTED_LOG_CHARS:],
                        file_name=file_name)


# Work (task-side) -----------------------------------------------------------------


def _load(state_id: int) -> ClusterState:
    return ClusterState.objects.select_related("resource__owner").get(pk=state_id)


def _launch_spec(state: ClusterState, token: str) -> LaunchSpec:
    resource = state.resource
    config = resource.config or {}
    return LaunchSpec(
        cluster_key=str(resource.pk),
        address=resource.address,
        config=config,
        token=token,
        den_url=settings.DEN_CLUSTER_DEN_URL,
        den_auth=config.get("den_auth", True) is not False,
        autostop_mins=state.effective_autostop_mins,
        heartbeat_seconds=settings.DEN_CLUSTER_HEARTBEAT_SECONDS,
        auth_cache_seconds=settings.DEN_CLUSTER_AUTH_CACHE_SECONDS,
        start_timeout=settings.DEN_CLUSTER_START_TIMEOUT,
    )


def cluster_run_up(*, state_id: int, claim: str) -> bool:
    """Start a cluster whose ``up`` was requested; False if there was nothing
    to do (another message claimed it, or the request was replaced).

    Raises TransientBackendError (after putting the request back) for the
    task to retry.
    """
    if not _claim(state_id, expect=(S.PROVISIONING, S.STARTING), becomes=S.STARTING,
                  claim=claim):
        return False
    state = _load(state_id)
    backend = get_backend(state.backend or backend_name_for(state.resource.config))
    try:
        # Checked again here: the owner may have lost staff since the request.
        require_local_allowed(state.resource, backend.name)
    except PermissionDenied as exc:
        cluster_fail(state_id=state_id, claim=claim, message=exc.message)
        return True
    log = _backend_log(state)
    event_record(state=state, kind="starting",
                 message=f"Starting the node daemon ({backend.name} backend).")
    token = _mint_cluster_token(state)
    try:
        launched = backend.up(_launch_spec(state, token), log)
    except BackendError as exc:
        _revoke_minted_token(token)
        if isinstance(exc, TransientBackendError):
            ClusterState.objects.filter(id=state_id, status=S.STARTING, claimed_by=claim).update(
                status=S.PROVISIONING, updated_at=timezone.now()
            )
            event_record(state=state, kind="up.retry", message=f"Start failed; retrying: {exc}",
                         **exc.details)
            raise
        cluster_fail(state_id=state_id, claim=claim, message=str(exc), details=exc.details)
        return True
    now = timezone.now()
    with transaction.atomic():
        done = _finish(state_id, status=S.STARTING, claim=claim, to=S.UP,
                       daemon_url=launched.daemon_url, handles=launched.handles, message="",
                       last_activity_at=now, last_heartbeat_at=None, calls_in_flight=0)
        if done:
            event_record(state=state, kind="up", message=f"The cluster is up at "
                         f"{launched.daemon_url}.", daemon_url=launched.daemon_url)
    if not done:
        # A stop or teardown was asked for while the daemon started: do not
        # leave a daemon running that den no longer tracks, nor its token live.
        _revoke_minted_token(token)
        backend.stop(str(state.resource.pk), launched.handles, log)
        event_record(state=state, kind="up.cancelled",
                     message="The cluster was asked to stop while it started; stopped it again.")
    return True


def cluster_fail(*, state_id: int, claim: str | None, message: str,
                 details: dict[str, Any] | None = None) -> None:
    """Mark a start as failed (permanently, or after the last retry), and
    revoke the token minted for it. ``details`` (a backend's log tail, ...)
    go into the event's data, never into its message."""
    state = _load(state_id)
    query = ClusterState.objects.filter(id=state_id, status__in=(S.PROVISIONING, S.STARTING))
    if claim is not None:
        query = query.filter(Q(claimed_by="") | Q(claimed_by=claim))
    now = timezone.now()
    with transaction.atomic():
        if query.update(status=S.FAILED, claimed_by="", message=message[:4000],
                        status_changed_at=now, updated_at=now):
            _revoke_cluster_tokens(state.resource)
            event_record(state=state, kind="failed", message=message[:4000], **(details or {}))
            audit_record(actor=None, action="cluster.failed", resource=state.resource)


def _run_down(*, state_id: int, claim: str, requested: str, done: str,
              act: Callable[[ClusterState, LogFn], None], message: str) -> bool:
    if not _claim(state_id, expect=(requested,), becomes=requested, claim=claim):
        return False
    state = _load(state_id)
    log = _backend_log(state)
    act(state, log)
    with transaction.atomic():
        if _finish(state_id, status=requested, claim=claim, to=done, daemon_url="", handles={},
                   calls_in_flight=0):
            event_record(state=state, kind=done, message=message)
    return True


def _backend_of(state: ClusterState) -> ClusterBackend:
    return get_backend(state.backend or backend_name_for(state.resource.config))


def cluster_run_stop(*, state_id: int, claim: str) -> bool:
    """Stop a cluster whose stop was requested; False if there was nothing to do."""
    return _run_down(
        state_id=state_id, claim=claim, requested=S.STOPPING, done=S.STOPPED,
        act=lambda state, log: _backend_of(state).stop(str(state.resource.pk), state.handles, log),
        message="The cluster is stopped.",
    )


def cluster_run_teardown(*, state_id: int, claim: str) -> bool:
    """Tear a cluster down; False if there was nothing to do."""
    return _run_down(
        state_id=state_id, claim=claim, requested=S.TERMINATING, done=S.TERMINATED,
        act=lambda state, log: _backend_of(state).teardown(str(state.resource.pk),
                                                           state.handles, log),
        message="The cluster is torn down.",
    )


def cluster_release_deleted(*, state: ClusterState) -> None:
    """A cluster resource is being deleted (its state row goes with it): tear
    down whatever still runs, once the deletion commits. The task gets the
    backend's handles by value, since no row will be left to load them from."""
    if state.status in (S.DOWN, S.TERMINATED) or state.backend in ("", REPORTED):
        return
    from compute import tasks

    tasks.cluster_release.delay_on_commit(state.backend, str(state.resource_id), state.handles)


def cluster_run_release(*, backend: str, cluster_key: str, handles: dict[str, Any]) -> None:
    """Tear down the remains of a deleted cluster (its daemon, its folder)."""
    get_backend(backend).teardown(cluster_key, handles, lambda *args, **kwargs: None)


# The sweep ---------------------------------------------------------------------------


def cluster_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Act on every cluster past a deadline; safe to run often and concurrently.

    - ``up`` without a heartbeat for ``DEN_CLUSTER_HEARTBEAT_TIMEOUT`` becomes
      ``unreachable``;
    - ``up`` and idle (no call in flight) past its autostop is asked to stop;
    - stuck in ``provisioning``/``starting`` past twice the start timeout (its
      task was lost) becomes ``failed``.

    Each cluster is re-checked under its own lock or conditional update, so a
    heartbeat or a call that lands mid-sweep wins.
    """
    now = now or timezone.now()
    counts = {"unreachable": 0, "autostopped": 0, "failed": 0}
    silent = now - timedelta(seconds=settings.DEN_CLUSTER_HEARTBEAT_TIMEOUT)
    stale = Q(last_heartbeat_at__lt=silent) | Q(last_heartbeat_at__isnull=True,
                                                  status_changed_at__lt=silent)
    # Reported clusters (REPORTED) are their own daemon's to run: never swept.
    tracked = ClusterState.objects.exclude(backend=REPORTED)
    for state_id in tracked.filter(stale, status=S.UP).values_list("id", flat=True):
        with transaction.atomic():
            if ClusterState.objects.filter(stale, id=state_id, status=S.UP).update(
                status=S.UNREACHABLE, status_changed_at=now, updated_at=now
            ):
                state = _load(state_id)
                event_record(state=state, kind="unreachable", message=(
                    f"No heartbeat for {settings.DEN_CLUSTER_HEARTBEAT_TIMEOUT:.0f} s; "
                    "the daemon may be down or cut off from den."))
                audit_record(actor=None, action="cluster.unreachable", resource=state.resource)
                counts["unreachable"] += 1
    idle = tracked.filter(status=S.UP, calls_in_flight=0).select_related("resource")
    for state in idle:
        if _idle_past_autostop(state, now):
            counts["autostopped"] += cluster_autostop(state_id=state.pk, now=now)
    stuck = now - timedelta(seconds=2 * settings.DEN_CLUSTER_START_TIMEOUT)
    for state_id in tracked.filter(
        status__in=(S.PROVISIONING, S.STARTING), status_changed_at__lt=stuck
    ).values_list("id", flat=True):
        cluster_fail(state_id=state_id, claim=None,
                     message="The start did not finish in time (its worker may have been lost); "
                             "bring the cluster up again.")
        counts["failed"] += 1
    return counts


def _idle_past_autostop(state: ClusterState, now: datetime) -> bool:
    minutes = state.effective_autostop_mins
    if minutes <= 0:
        return False
    last = state.last_activity_at or state.status_changed_at
    return bool(state.calls_in_flight == 0 and last < now - timedelta(minutes=minutes))


@transaction.atomic
def cluster_autostop(*, state_id: int, now: datetime) -> int:
    """Stop one idle cluster, re-checked under its lock; 1 if it was stopped."""
    state = (ClusterState.objects.select_for_update().select_related("resource__owner")
             .filter(id=state_id).exclude(backend=REPORTED).first())
    if state is None or state.status != S.UP or not _idle_past_autostop(state, now):
        return 0
    minutes = state.effective_autostop_mins
    _request_stop(actor=None, state=state, action="cluster.autostop",
                  message=f"Idle for over {_autostop_text(minutes)} with no call in flight: "
                          "stopping it (autostop).")
    return 1


def _who(actor: Any) -> str:
    return getattr(actor, "username", None) or "den"


def _autostop_text(minutes: int) -> str:
    return "never" if minutes <= 0 else f"{minutes} minute{'s' if minutes != 1 else ''}"

