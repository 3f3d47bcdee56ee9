"""Writes about clusters: every state change happens here, in a transaction,
with its audit row and cluster event, and enqueues its Celery task only once
the transaction has committed (so a task never looks for a row that is not
there yet).

Two kinds of functions live here:

- ``cluster_request_*`` and ``cluster_set_autostop``: what a user (or the
  sweep) asks for. They move the cluster to a *requested* status
  (``provisioning``, ``stopping``, ``terminating``) and enqueue the work.
- ``cluster_run_*``: what the tasks do. Each request has a sequence number
  (``ClusterState.request_seq``, incremented by every request); its task
  messages carry it, and every claim, finish and failure is a conditional
  UPDATE matching the cluster id *and* that number. So a duplicate message,
  one that arrives after the user changed their mind, or a slow start that
  was replaced by a stop and a new up, can never change the newer request's
  outcome: at most it undoes its own work (``_undo_start``).

Bringing a cluster up is two-phase: ``cluster_run_up`` calls the backend's
``begin_up``; while it answers ``Pending``, ``cluster_run_poll`` calls
``poll_up`` again after ``retry_in`` seconds, each poll numbered
(``poll_step``) so that only one chain of polls goes on. The whole start has
``DEN_CLUSTER_START_TIMEOUT``; past it the start fails with an event saying
what it waited for, and what the backend started is stopped. A failed start
never leaves a daemon running.

Callers have already fetched the resource through ``registry.access`` at the
level the change needs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from compute import hostcreds
from compute.backends import (
    BackendError,
    ClusterBackend,
    Launched,
    LaunchSpec,
    LogFn,
    Pending,
    TransientBackendError,
    backend_name_for,
    get_backend,
)
from compute.models import ClusterEvent, ClusterState, ClusterStatus, Deployment
from registry import credentials
from registry import selectors as registry_selectors
from registry.access import Caller, access_resource
from registry.authcache import bump_access_epoch
from registry.errors import DenError, InvalidInput, NotFound, PermissionDenied, TooLarge
from registry.models import AccessLevel, ApiToken, Resource, ResourceType, TokenScope
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
    """Make a new request: move a locked state to a *requested* status under a
    new sequence number, so that only tasks enqueued for this request may act."""
    now = timezone.now()
    state.status = status
    state.status_changed_at = now
    state.request_seq += 1
    state.claimed_by = ""
    state.poll_step = 0
    state.start_deadline_at = None
    state.launch_token = ""
    state.waiting_for = ""
    state.autostop_requested_at = None
    # The request's task should run by then; past it the sweep enqueues it again.
    state.next_step_at = now + _step_grace()
    for name, value in fields.items():
        setattr(state, name, value)
    state.save()


def _step_grace() -> timedelta:
    """How long one task step may take before the sweep takes its message for
    lost: past its hard time limit, no worker can still be running it."""
    return timedelta(seconds=settings.DEN_CLUSTER_TASK_TIME_LIMIT + 30)


def _claim(state_id: int, *, seq: int, expect: tuple[str, ...], becomes: str, claim: str,
           step: int | None = None, **fields: Any) -> bool:
    """Claim the first step of request ``seq`` for the task message ``claim`` (its id).

    Succeeds only while that request is still the newest, the cluster is in
    one of ``expect``, and no other message holds it; a redelivery or retry
    of the same message (same id) may claim again, so that work interrupted
    by a lost worker is picked up.
    """
    query = ClusterState.objects.filter(id=state_id, request_seq=seq, status__in=expect)
    if step is not None:
        query = query.filter(poll_step=step)
    changed = (
        query.filter(Q(claimed_by="") | Q(claimed_by=claim))
        .update(status=becomes, claimed_by=claim, updated_at=timezone.now(), **fields)
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


def _mint_cluster_token(state: ClusterState, seq: int) -> str | None:
    """A new token for the cluster's daemon, bound to the cluster; None if
    request ``seq`` is no longer the newest (then no token is made, so that a
    replaced start cannot revoke the one a newer start gave its daemon).

    It belongs to the cluster's owner (tokens hang off a user) but the access
    layer lets it reach only this cluster (and what runs on it, for
    redeploys), at read level, and only the heartbeat, probe, auth-check and
    deployment endpoints accept it. Only its hash is stored, and the plain
    token encrypted on the state while the start runs (a poll may need it to
    start a daemon); it is never logged.
    """
    resource = state.resource
    plain = credentials.new_token()
    with transaction.atomic():
        if not ClusterState.objects.select_for_update().filter(
                id=state.pk, request_seq=seq).exists():
            return None
        _revoke_cluster_tokens(resource)
        token = ApiToken.objects.create(
            user=resource.owner,
            name=f"cluster {resource.address}"[:100],
            scope=TokenScope.WRITE,  # heartbeats are POSTs; access is capped at read
            token_hash=credentials.hash_token(plain),
            hint=credentials.token_hint(plain),
            cluster=resource,
        )
        ClusterState.objects.filter(id=state.pk).update(
            launch_token=credentials.encrypt_values({"token": plain}))
        audit_record(actor=None, action="cluster.token.create", resource=resource,
                     token_id=token.pk)
    return plain


def _enqueue(task_name: str, state: ClusterState, *args: Any, countdown: float = 0) -> None:
    """Send the task for the state's newest request once the transaction commits."""
    from compute import tasks

    task = getattr(tasks, task_name)
    payload = (state.pk, state.request_seq, *args)
    transaction.on_commit(lambda: task.apply_async(payload, countdown=countdown or None))


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
    audit_record(actor=actor, action="cluster.up", resource=resource, previous=previous,
                 backend=backend)
    _enqueue("cluster_up", state)
    return state


def _request_stop(*, actor: Any, state: ClusterState, action: str, message: str) -> None:
    _set_status(state, S.STOPPING)
    _revoke_cluster_tokens(state.resource)
    event_record(state=state, kind="stop.requested", message=message)
    audit_record(actor=actor, action=action, resource=state.resource)
    _enqueue("cluster_stop", state)


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
    _enqueue("cluster_teardown", state)
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
    state.autostop_requested_at = None  # asked under the old setting
    state.save(update_fields=["autostop_mins", "autostop_requested_at", "updated_at"])
    event_record(state=state, kind="autostop.set",
                 message=f"{_who(actor)} set autostop to {_autostop_text(autostop_mins)}.",
                 autostop_mins=autostop_mins)
    audit_record(actor=actor, action="cluster.autostop", resource=resource, old=old,
                 new=autostop_mins)
    return state


def cluster_forget_host_key(*, actor: Any, resource: Resource, host: Any) -> list[str]:
    """Forget the SSH host key den trusts for one of the cluster's hosts (it
    was reinstalled, and den now refuses its new key); the next start trusts
    the key the host presents then. Audited; returns the hosts forgotten."""
    require_cluster(resource)
    if not isinstance(host, str) or not host.strip():
        raise InvalidInput("host must be one of the cluster's host addresses, such as "
                           "10.0.0.5 (or 10.0.0.5:2222).", field="host")
    forgotten = hostcreds.forget_host_key(actor=actor, resource=resource, host=host.strip())
    if not forgotten:
        raise NotFound(f"den trusts no SSH host key for {host.strip()} on {resource.address}.",
                       code="no_host_key")
    return forgotten


@transaction.atomic
def cluster_record_heartbeat(
    *,
    resource: Resource,
    token: Any,
    last_activity: datetime | None = None,
    calls_in_flight: int = 0,
    objects: int = 0,
    draining: bool = False,
) -> dict[str, Any]:
    """Record a heartbeat from the cluster's daemon, sent with its own token,
    and answer what den wants of it: its autostop now (which may have changed
    since it started) and whether to stop for autostop.

    Autostop is a handshake, so that it never stops a cluster during a call:
    the sweep only *asks* (``autostop_requested_at``); the daemon, when it
    has no call in flight at that moment, stops taking calls (``draining``)
    and says so in its next heartbeat, and only then does den ask for the
    stop. A daemon with a call in flight says so instead, and the request
    lapses until it is idle long enough again.

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
    seen_activity = state.last_activity_at
    if last_activity is not None:
        state.last_activity_at = min(last_activity, now)
    state.last_heartbeat_at = now
    state.calls_in_flight = calls_in_flight
    state.objects_count = objects
    # Busy since den asked: a call in flight, or activity den had not seen.
    busy = bool(calls_in_flight) or (
        seen_activity is not None and state.last_activity_at is not None
        and state.last_activity_at > seen_activity)
    if state.status == S.UNREACHABLE:
        state.status = S.UP
        state.status_changed_at = now
        event_record(state=state, kind="reachable",
                     message="Heartbeats arrive again; the cluster is up.")
        audit_record(actor=None, action="cluster.reachable", resource=resource)
    answer: dict[str, Any] = {"autostop_mins": state.effective_autostop_mins,
                              "autostop": False, "stop": False}
    if state.autostop_requested_at is not None:
        if state.status != S.UP or busy:
            state.autostop_requested_at = None
            if busy:
                event_record(state=state, kind="autostop.spared", message=(
                    "Not stopped for autostop: a call was running, or had run since."))
        elif draining:
            minutes = state.effective_autostop_mins
            state.save()
            _request_stop(actor=None, state=state, action="cluster.autostop",
                          message=f"Idle for over {_autostop_text(minutes)} with no call in "
                                  "flight: stopping it (autostop).")
            answer["stop"] = True
            return answer
        else:
            answer["autostop"] = True
    state.save()
    return answer


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

#: What a start may be in, and what a stop or teardown.
_STARTING = (S.PROVISIONING, S.STARTING)
_ENDING = (S.STOPPING, S.TERMINATING)


def _load(state_id: int) -> ClusterState:
    return ClusterState.objects.select_related("resource__owner").get(pk=state_id)


def _load_or_none(state_id: int) -> ClusterState | None:
    return ClusterState.objects.select_related("resource__owner").filter(pk=state_id).first()


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
        start_timeout=_start_timeout(state.backend),
    )


def _start_timeout(backend: str) -> float:
    """The start deadline of clusters on ``backend``: its own (clouds take
    minutes), else DEN_CLUSTER_START_TIMEOUT."""
    try:
        found = get_backend(backend) if backend else None
        own = getattr(found, "start_timeout", lambda: None)()
    except BackendError:
        own = None
    return float(own) if own else settings.DEN_CLUSTER_START_TIMEOUT


def _launch_token(state: ClusterState) -> str:
    if not state.launch_token:
        return ""
    return str(credentials.decrypt_values(state.launch_token).get("token") or "")


def _backend_of(state: ClusterState) -> ClusterBackend:
    return get_backend(state.backend or backend_name_for(state.resource.config))


def cluster_run_up(*, state_id: int, seq: int, claim: str) -> str:
    """Begin the start that request ``seq`` asked for: claim it, mint the
    daemon's token, call the backend's ``begin_up``. Returns ``"skipped"``
    when there was nothing to do (another message claimed it, or a newer
    request replaced it), else what ``_advance`` did.

    TransientBackendError propagates, for the task to retry with backoff.
    """
    now = timezone.now()
    backend_name = ClusterState.objects.filter(id=state_id).values_list(
        "backend", flat=True).first() or ""
    deadline = now + timedelta(seconds=_start_timeout(backend_name))
    # step=0: a redelivered first step must not match a start that has moved on
    # to polling (its work is done).
    if not _claim(state_id, seq=seq, expect=_STARTING, becomes=S.STARTING, claim=claim,
                  step=0, next_step_at=now + _step_grace(),
                  start_deadline_at=Coalesce(F("start_deadline_at"), Value(deadline))):
        return _resend_lost_poll(state_id, seq=seq, step=0, claim=claim)
    state = _load(state_id)
    backend = _backend_of(state)
    try:
        # Checked again here: the owner may have lost staff since the request.
        require_local_allowed(state.resource, backend.name)
    except PermissionDenied as exc:
        _fail_start(state_id=state_id, seq=seq, message=exc.message)
        return "failed"
    try:
        # The owner may have lost access to the creds or env since saving.
        hostcreds.require_usable_references(state.resource)
    except BackendError as exc:
        _fail_start(state_id=state_id, seq=seq, message=str(exc), details=exc.details)
        return "failed"
    token = _mint_cluster_token(state, seq)
    if token is None:
        return "skipped"
    event_record(state=state, kind="starting",
                 message=f"Starting the node daemon ({backend.name} backend).")
    log = _backend_log(state)
    try:
        result = backend.begin_up(_launch_spec(state, token), log)
    except TransientBackendError as exc:
        event_record(state=state, kind="up.retry", message=f"Start failed; retrying: {exc}",
                     **exc.details)
        raise
    except BackendError as exc:
        _fail_start(state_id=state_id, seq=seq, message=str(exc), details=exc.details)
        return "failed"
    return _advance(state, seq=seq, step=0, result=result, backend=backend, token=token,
                    claim=claim)


def _resend_lost_poll(state_id: int, *, seq: int, step: int, claim: str) -> str:
    """A step's message came again after it had already advanced the start:
    if this very message (``claim``, its id) advanced it, its worker may have
    died before it sent the next poll, so send it again (a duplicate poll is
    skipped). Any other message has nothing to do."""
    with transaction.atomic():
        state = (ClusterState.objects.select_for_update()
                 .filter(id=state_id, request_seq=seq, status=S.STARTING,
                         poll_step=step + 1, claimed_by=claim).first())
        if state is None:
            return "skipped"
        _enqueue("cluster_poll_up", state, step + 1)
    return "resent"


def cluster_run_poll(*, state_id: int, seq: int, step: int, claim: str = "") -> str:
    """Continue a start: poll number ``step`` of request ``seq``. Does nothing
    unless that request is still the newest and no other poll took this step;
    fails the start once it is past its deadline."""
    state = _load_or_none(state_id)
    if state is None or (state.request_seq, state.status, state.poll_step) != (
            seq, S.STARTING, step):
        return _resend_lost_poll(state_id, seq=seq, step=step, claim=claim) if claim \
            else "skipped"
    backend = _backend_of(state)
    if state.start_deadline_at is not None and timezone.now() >= state.start_deadline_at:
        _fail_start(state_id=state_id, seq=seq, message=_timeout_message(state))
        return "failed"
    token = _launch_token(state)
    log = _backend_log(state)
    try:
        result = backend.poll_up(_launch_spec(state, token), state.handles, log)
    except TransientBackendError as exc:
        event_record(state=state, kind="up.retry", message=f"Start failed; retrying: {exc}",
                     **exc.details)
        raise
    except BackendError as exc:
        _fail_start(state_id=state_id, seq=seq, message=str(exc), details=exc.details)
        return "failed"
    return _advance(state, seq=seq, step=step, result=result, backend=backend, token=token,
                    claim=claim)


def _timeout_message(state: ClusterState) -> str:
    waiting = f" It was waiting for {state.waiting_for}." if state.waiting_for else ""
    timeout = _start_timeout(state.backend)
    name = ("DEN_SKYPILOT_START_TIMEOUT" if timeout != settings.DEN_CLUSTER_START_TIMEOUT
            else "DEN_CLUSTER_START_TIMEOUT")
    return (f"The cluster did not come up within {timeout:.0f} s "
            f"({name}).{waiting} Bring it up again, or see the events "
            "above for what went wrong.")


def _advance(state: ClusterState, *, seq: int, step: int, result: Launched | Pending,
             backend: ClusterBackend, token: str, claim: str) -> str:
    """Record what step ``step`` of request ``seq`` got from the backend: a
    Pending (enqueue the next poll) or a Launched (the cluster is up).

    When the conditional update matches nothing, either a duplicate of this
    step got there first (same request: its work is this work, so leave it),
    or the request was replaced or failed meanwhile: then undo what this step
    started, which nobody else tracks.
    """
    now = timezone.now()
    live = ClusterState.objects.filter(id=state.pk, request_seq=seq, status=S.STARTING,
                                       poll_step=step)
    with transaction.atomic():
        if isinstance(result, Pending):
            # claimed_by: the message that advanced it, should it come again.
            moved = live.update(handles=result.handles, poll_step=step + 1, claimed_by=claim,
                                waiting_for=result.waiting_for[:300], updated_at=now,
                                next_step_at=now + timedelta(seconds=result.retry_in)
                                + _step_grace())
            if moved:
                state.request_seq, state.poll_step = seq, step + 1
                _enqueue("cluster_poll_up", state, step + 1, countdown=max(result.retry_in, 0))
        else:
            moved = live.update(status=S.UP, daemon_url=result.daemon_url,
                                handles=result.handles, message="", claimed_by="",
                                poll_step=step + 1, launch_token="", waiting_for="",
                                start_deadline_at=None, next_step_at=None,
                                status_changed_at=now, updated_at=now, last_activity_at=now,
                                last_heartbeat_at=None, calls_in_flight=0)
            if moved:
                event_record(state=state, kind="up",
                             message=f"The cluster is up at {result.daemon_url}.",
                             daemon_url=result.daemon_url)
    if moved:
        return "pending" if isinstance(result, Pending) else "up"
    current = ClusterState.objects.filter(id=state.pk).values_list(
        "request_seq", "status").first()
    if current is not None and current[0] == seq and current[1] != S.FAILED:
        return "skipped"
    # Replaced (a stop, a teardown, a newer up) or failed meanwhile: this
    # step's daemon is nobody's. Its token was revoked by the newer request.
    _revoke_minted_token(token)
    _undo_start(state, backend, result.handles)
    if current is not None:
        event_record(state=state, kind="up.cancelled",
                     message="A newer request replaced this start; stopped what it started.")
    return "cancelled"


def _undo_start(state: ClusterState, backend: ClusterBackend, handles: dict[str, Any]) -> None:
    """Stop what one start began (``cancel_up``); a failure to do so is an
    event, never an exception, since it runs on the way out of a failure."""
    if not handles:
        return
    try:
        backend.cancel_up(str(state.resource_id), handles, _backend_log(state))
    except Exception as exc:  # reported; a stop of the cluster retries it
        logger.exception("cluster %s: stopping a failed start failed", state.resource_id)
        with contextlib.suppress(Exception):
            event_record(state=state, kind="cancel.failed", message=(
                "Could not stop what the failed start began; stop the cluster to try again."),
                error=f"{type(exc).__name__}: {exc}"[:2000])


def _revoke_minted_token(plain: str) -> None:
    """Revoke the one token a start minted, not the cluster's newest: by the
    time a slow start fails, a newer start may have given its daemon one."""
    if plain and ApiToken.objects.filter(token_hash=credentials.hash_token(plain),
                                         revoked_at__isnull=True).update(
                                             revoked_at=timezone.now()):
        bump_access_epoch()


def _fail_start(*, state_id: int, seq: int, message: str,
                details: dict[str, Any] | None = None) -> bool:
    """Mark request ``seq``'s start failed (only while it is the newest request
    and still starting), revoke its token, and stop what the backend began.
    ``details`` (a daemon's log tail, ...) go into the event's data, never into
    its message. True if it was this call that failed it."""
    state = _load_or_none(state_id)
    if state is None:
        return False
    now = timezone.now()
    with transaction.atomic():
        failed = ClusterState.objects.filter(
            id=state_id, request_seq=seq, status__in=_STARTING
        ).update(status=S.FAILED, claimed_by="", message=message[:4000], launch_token="",
                 start_deadline_at=None, next_step_at=None, daemon_url="",
                 status_changed_at=now, updated_at=now)
        if failed:
            _revoke_cluster_tokens(state.resource)
            event_record(state=state, kind="failed", message=message[:4000], **(details or {}))
            audit_record(actor=None, action="cluster.failed", resource=state.resource)
    if failed:
        # Handles as the last step left them: what the backend started so far.
        handles = ClusterState.objects.filter(id=state_id).values_list(
            "handles", flat=True).first()
        with contextlib.suppress(BackendError):
            _undo_start(state, _backend_of(state), dict(handles or {}))
    return bool(failed)


def cluster_fail(*, state_id: int, seq: int, message: str,
                 details: dict[str, Any] | None = None) -> bool:
    """Mark request ``seq`` failed: a start (its daemon stopped again), or a
    stop or teardown that could not finish. Nothing happens if a newer request
    replaced it."""
    if _fail_start(state_id=state_id, seq=seq, message=message, details=details):
        return True
    state = _load_or_none(state_id)
    if state is None:
        return False
    now = timezone.now()
    with transaction.atomic():
        failed = ClusterState.objects.filter(
            id=state_id, request_seq=seq, status__in=_ENDING
        ).update(status=S.FAILED, claimed_by="", message=message[:4000], next_step_at=None,
                 status_changed_at=now, updated_at=now)
        if failed:
            event_record(state=state, kind="failed", message=message[:4000], **(details or {}))
            audit_record(actor=None, action="cluster.failed", resource=state.resource)
    return bool(failed)


def cluster_task_failed(*, state_id: int, seq: int, task: str, exc: BaseException) -> None:
    """A cluster task ended with an error it did not handle (its retries ran
    out, it passed its time limit, a bug): fail its request, if still the
    newest, with an event that says which step failed and why."""
    from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

    step = {"compute.cluster_up": "Starting", "compute.cluster_poll_up": "Starting",
            "compute.cluster_stop": "Stopping",
            "compute.cluster_teardown": "Tearing down"}.get(task, "A step")
    details: dict[str, Any] = {"task": task, "error": type(exc).__name__}
    if isinstance(exc, (SoftTimeLimitExceeded, TimeLimitExceeded)):
        message = (f"{step} the cluster took longer than its time limit "
                   f"({settings.DEN_CLUSTER_TASK_SOFT_TIME_LIMIT:.0f} s for one step); "
                   "try again, and see the events above for where it stopped.")
    elif isinstance(exc, BackendError):
        message = f"{step} the cluster failed after several attempts: {exc}"
        details.update(exc.details)
    else:
        # Not a message written for users: its text may hold paths or more.
        message = (f"{step} the cluster failed unexpectedly ({type(exc).__name__}); try "
                   "again, and tell den's administrators if it keeps failing.")
        details["detail"] = str(exc)[:2000]
    cluster_fail(state_id=state_id, seq=seq, message=message, details=details)


def _run_down(*, state_id: int, seq: int, claim: str, requested: str, done: str,
              act: Callable[[ClusterState, LogFn], None], message: str) -> str:
    if not _claim(state_id, seq=seq, expect=(requested,), becomes=requested, claim=claim,
                  next_step_at=timezone.now() + _step_grace()):
        return "skipped"
    state = _load(state_id)
    log = _backend_log(state)
    act(state, log)
    now = timezone.now()
    with transaction.atomic():
        finished = ClusterState.objects.filter(
            id=state_id, request_seq=seq, status=requested, claimed_by=claim
        ).update(status=done, claimed_by="", daemon_url="", handles={}, calls_in_flight=0,
                 next_step_at=None, status_changed_at=now, updated_at=now)
        if finished:
            event_record(state=state, kind=done, message=message)
    return "done" if finished else "skipped"


def cluster_run_stop(*, state_id: int, seq: int, claim: str) -> str:
    """Stop the daemons of a cluster whose stop request ``seq`` asked for (the
    machines stay, where the backend keeps them); "skipped" if there was
    nothing to do."""
    state = _load_or_none(state_id)
    # getattr: backends written before stop_tears_down (test doubles) may lack it.
    tears_down = getattr(_backend_of(state), "stop_tears_down", None) if state else None
    if state is not None and tears_down is not None and tears_down(
            state.resource.config or {}):
        # Its infrastructure cannot keep stopped machines: the stop released them.
        return _run_down(
            state_id=state_id, seq=seq, claim=claim, requested=S.STOPPING,
            done=S.TERMINATED,
            act=lambda state, log: _backend_of(state).stop(str(state.resource.pk),
                                                           state.handles, log),
            message="The cluster is torn down (its infrastructure cannot stop machines).",
        )
    return _run_down(
        state_id=state_id, seq=seq, claim=claim, requested=S.STOPPING, done=S.STOPPED,
        act=lambda state, log: _backend_of(state).stop(str(state.resource.pk), state.handles, log),
        message="The cluster is stopped.",
    )


def cluster_run_teardown(*, state_id: int, seq: int, claim: str) -> str:
    """Tear a cluster down (its daemons, and den's files on its machines);
    "skipped" if there was nothing to do."""
    return _run_down(
        state_id=state_id, seq=seq, claim=claim, requested=S.TERMINATING, done=S.TERMINATED,
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


# A caller could not reach the daemon ---------------------------------------------


def cluster_probe(*, resource: Resource) -> ClusterState:
    """A caller could not reach an ``up`` cluster's daemon: have a worker check
    it at once (``cluster_run_probe``), and wait a few seconds for the answer,
    so that the caller learns the truth now rather than after the heartbeat
    timeout, and ``up_if_not()`` starts a daemon that is gone.

    The check runs on a worker, not here: backends belong there (a local
    daemon lives on the worker's machine, SSH keys are the worker's). Probes
    of one cluster run at most every ``DEN_CLUSTER_PROBE_SECONDS``; one asked
    for sooner waits for the one under way, or answers the state as it is.
    """
    require_cluster(resource)
    now = timezone.now()
    since = now - timedelta(seconds=settings.DEN_CLUSTER_PROBE_SECONDS)
    with transaction.atomic():
        state = (ClusterState.objects.select_for_update().select_related("resource__owner")
                 .filter(resource=resource).first())
        if state is None or state.status != S.UP:
            return _state_of(resource)
        if state.last_probe_at is None or state.last_probe_at < since:
            state.last_probe_at = now
            state.save(update_fields=["last_probe_at", "updated_at"])
            _enqueue("cluster_probe", state)
        asked = state.last_probe_at
    deadline = time.monotonic() + settings.DEN_CLUSTER_PROBE_WAIT_SECONDS
    while time.monotonic() < deadline:
        current = ClusterState.objects.filter(id=state.pk).values_list(
            "status", "probed_at").first()
        if current is None or current[0] != S.UP or (current[1] and current[1] >= asked):
            break
        time.sleep(0.05)
    return _state_of(resource)


def cluster_run_probe(*, state_id: int, seq: int) -> str:
    """Ask the backend whether request ``seq``'s daemon still runs; if it sees
    it stopped or not answering, the cluster becomes ``unreachable`` (with an
    event). A probe that cannot tell changes nothing."""
    state = _load_or_none(state_id)
    if state is None or state.request_seq != seq or state.status != S.UP:
        return "skipped"
    try:
        seen = _backend_of(state).status(str(state.resource_id), state.handles)
    except Exception as exc:  # a probe that cannot tell changes nothing
        logger.warning("cluster %s: probe failed: %s", state.resource_id, type(exc).__name__)
        seen = "up"
    now = timezone.now()
    with transaction.atomic():
        changed = 0
        if seen != "up":
            changed = ClusterState.objects.filter(id=state_id, status=S.UP,
                                                  request_seq=seq).update(
                status=S.UNREACHABLE, status_changed_at=now, updated_at=now)
        ClusterState.objects.filter(id=state_id).update(probed_at=now)
        if changed:
            what = "is not running" if seen == "stopped" else "does not answer"
            event_record(state=state, kind="unreachable", message=(
                f"A caller could not reach the node daemon, and den found that it {what}; "
                "bring the cluster up again (up_if_not() does)."), seen=seen)
            audit_record(actor=None, action="cluster.unreachable", resource=state.resource)
    return seen


def _state_of(resource: Resource) -> ClusterState:
    from compute import selectors

    return selectors.cluster_state_get(resource=resource)


# The sweep ---------------------------------------------------------------------------


def cluster_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Act on every cluster past a deadline; safe to run often and concurrently.

    - ``up`` without a heartbeat for ``DEN_CLUSTER_HEARTBEAT_TIMEOUT`` becomes
      ``unreachable``;
    - ``up`` and idle (no call in flight) past its autostop is asked to stop;
    - a start past its deadline fails (and what it started is stopped);
    - a request whose step's task should have run long ago (its message was
      lost with a worker) gets that task enqueued again: duplicates are
      harmless, since every step is fenced by its request and step number.

    Each cluster is re-checked under its own lock or conditional update, so a
    heartbeat or a call that lands mid-sweep wins.
    """
    now = now or timezone.now()
    counts = {"unreachable": 0, "autostopped": 0, "failed": 0, "resumed": 0}
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
    # Starts past their deadline (or, for rows from before deadlines, past
    # twice the start timeout since they were asked for).
    legacy = now - timedelta(seconds=2 * settings.DEN_CLUSTER_START_TIMEOUT)
    late = Q(start_deadline_at__lt=now) | Q(start_deadline_at__isnull=True,
                                            status_changed_at__lt=legacy,
                                            next_step_at__isnull=True)
    for state_id, seq in tracked.filter(late, status__in=_STARTING).values_list(
            "id", "request_seq"):
        state = _load(state_id)
        message = (_timeout_message(state) if state.start_deadline_at else
                   "The start did not finish in time (its worker may have been lost); "
                   "bring the cluster up again.")
        counts["failed"] += _fail_start(state_id=state_id, seq=seq, message=message)
    for state_id, seq, status, step in tracked.filter(
        status__in=(*_STARTING, *_ENDING), next_step_at__lt=now
    ).values_list("id", "request_seq", "status", "poll_step"):
        counts["resumed"] += _resume(state_id=state_id, seq=seq, status=status, step=step,
                                     now=now)
    return counts


def _resume(*, state_id: int, seq: int, status: str, step: int, now: datetime) -> int:
    """Enqueue again the step of request ``seq`` whose task is overdue. A first
    step's claim is released, since past its hard time limit no worker still
    runs it; a poll is just sent again (a duplicate poll is skipped)."""
    ends: dict[str, str] = {S.STOPPING: "cluster_stop", S.TERMINATING: "cluster_teardown"}
    task = ends.get(status, "cluster_poll_up" if step else "cluster_up")
    with transaction.atomic():
        state = (ClusterState.objects.select_for_update().select_related("resource")
                 .filter(id=state_id, request_seq=seq, status=status, poll_step=step,
                         next_step_at__lt=now).first())
        if state is None:
            return 0
        state.next_step_at = now + _step_grace()
        fields = ["next_step_at", "updated_at"]
        if task != "cluster_poll_up":
            state.claimed_by = ""
            fields.append("claimed_by")
        state.save(update_fields=fields)
        event_record(state=state, kind="resumed", message=(
            "The worker running this cluster's request went quiet; den sent the work "
            "to another."))
        _enqueue(task, state, *((step,) if task == "cluster_poll_up" else ()))
    return 1


def _idle_past_autostop(state: ClusterState, now: datetime) -> bool:
    minutes = state.effective_autostop_mins
    if minutes <= 0:
        return False
    last = state.last_activity_at or state.status_changed_at
    return bool(state.calls_in_flight == 0 and last < now - timedelta(minutes=minutes))


@transaction.atomic
def cluster_autostop(*, state_id: int, now: datetime) -> int:
    """Ask an idle cluster's daemon to stop for autostop (re-checked under its
    lock); 1 if asked now. The daemon's next heartbeat answers: it stops
    taking calls and den stops it, or it has a call in flight and is spared
    (``cluster_record_heartbeat``)."""
    state = (ClusterState.objects.select_for_update().select_related("resource__owner")
             .filter(id=state_id).exclude(backend=REPORTED).first())
    if (state is None or state.status != S.UP or state.autostop_requested_at is not None
            or not _idle_past_autostop(state, now)):
        return 0
    state.autostop_requested_at = now
    state.save(update_fields=["autostop_requested_at", "updated_at"])
    event_record(state=state, kind="autostop.asked", message=(
        f"Idle for over {_autostop_text(state.effective_autostop_mins)} with no call in "
        "flight: asking the daemon to stop (autostop)."))
    return 1


def _who(actor: Any) -> str:
    return getattr(actor, "username", None) or "den"


def _autostop_text(minutes: int) -> str:
    return "never" if minutes <= 0 else f"{minutes} minute{'s' if minutes != 1 else ''}"



# Deployments: what den puts back on a daemon that restarted ----------------------

_OBJECT_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def deployment_save(*, caller: Caller, resource: Resource, name: Any, spec: Any) -> Deployment:
    """Keep what a writer just put on the daemon of a saved function or module
    (``spec``, the daemon's put body, under the object ``name``), so that den
    can put it back after the cluster restarts.

    The caller has write access to the resource (the view checked) and must
    have it on the cluster it runs on, as the daemon demanded for the put:
    otherwise anyone who may write a function could make another's cluster
    run code by pointing the function at it. Its code bundle must already be
    in den (``PUT /api/v1/code/<sha>``).
    """
    if resource.type not in (ResourceType.FUNCTION, ResourceType.MODULE):
        raise InvalidInput(f"{resource.address} is a {resource.type}; only functions and "
                           "modules run on clusters.", code="not_runnable")
    system = (resource.config or {}).get("system")
    if not isinstance(system, str) or not system:
        raise InvalidInput(f"{resource.address} is not set to run on a cluster: save it with "
                           "its system first.", field="config.system")
    cluster = access_resource(caller, system, AccessLevel.WRITE)
    require_cluster(cluster)
    if not isinstance(name, str) or not _OBJECT_NAME_RE.match(name):
        raise InvalidInput("name must be the daemon's object name: 1-200 letters, digits, "
                           "'.', '_' or '-'.", field="name")
    spec = _check_spec(resource, spec)
    text = json.dumps(spec, separators=(",", ":"))
    limit = settings.DEN_DEPLOYMENT_MAX_MB * 1024 * 1024
    if len(text) > limit:
        raise TooLarge(f"What runs for {resource.address} is {len(text)} bytes as JSON; den "
                       f"keeps at most {settings.DEN_DEPLOYMENT_MAX_MB} MB of it.")
    code = spec.get("code") or ""
    if code and not registry_selectors.code_bundle_exists(sha=code):
        raise InvalidInput(f"den has no code bundle {code}: upload it first "
                           f"(PUT /api/v1/code/{code}).", field="spec.code")
    restores = ""
    if resource.type == ResourceType.MODULE:
        restores = "init" if (spec.get("init") or spec.get("init_json")) else "value"
    with transaction.atomic():
        deployment, _ = Deployment.objects.update_or_create(
            resource=resource,
            defaults={"cluster": cluster, "object_name": name, "code": code,
                      "kind": str(spec["kind"]), "restores_state": restores,
                      "spec_encrypted": credentials.encrypt_values({"spec": text}),
                      "deployed_by": caller.user, "size": len(text)},
        )
        audit_record(actor=caller.user, action="deployment.save", resource=resource,
                     cluster=cluster.address, code=code, object_name=name)
    return deployment


def _check_spec(resource: Resource, spec: Any) -> dict[str, Any]:
    """The put body's fields that den relies on, checked; the daemon checks
    the rest again when it is put back."""
    if not isinstance(spec, dict):
        raise InvalidInput("spec must be the daemon's put body, a JSON object.", field="spec")
    if spec.get("kind", "function") != resource.type:
        raise InvalidInput(f"spec.kind must be {resource.type!r}, the type of "
                           f"{resource.address}.", field="spec.kind")
    if spec.get("address") != resource.address:
        raise InvalidInput(f"spec.address must be {resource.address}, the address it is "
                           "saved at.", field="spec.address")
    code = spec.get("code")
    if code is not None and (not isinstance(code, str) or not _SHA256_RE.match(code)):
        raise InvalidInput("spec.code must be a SHA-256 hex digest, or null.",
                           field="spec.code")
    by_value, pointers = spec.get("by_value"), spec.get("pointers")
    if not (isinstance(by_value, str) or (
            isinstance(pointers, dict) and isinstance(pointers.get("module"), str)
            and isinstance(pointers.get("qualname"), str))):
        raise InvalidInput("spec needs by_value (base64) or pointers {module, qualname}.",
                           field="spec.pointers")
    return {**spec, "kind": resource.type}


def deployment_for_daemon(*, caller: Caller, resource: Resource) -> dict[str, Any]:
    """What a cluster's daemon needs to put ``resource`` back: its object
    name, the put body, and whether a module comes back from its constructor
    arguments. ``resource`` came from ``registry.access.access_runs_on_cluster``
    (it runs on the caller's cluster).

    NotFound, saying so, when den holds no copy for this cluster, or when the
    one who saved it may no longer write the cluster (then it must not run
    there again unless someone who may sends it).
    """
    deployment = (Deployment.objects.select_related("cluster__owner", "deployed_by")
                  .filter(resource=resource, cluster_id=caller.cluster_id).first())
    missing = NotFound(
        f"den holds no saved copy of {resource.address} for this cluster (it was saved "
        "before den kept copies, or never sent to it), so whatever state it had is lost; "
        "its owner must send it again with .to(cluster).", code="no_deployment")
    if deployment is None or deployment.deployed_by is None:
        raise missing
    try:
        access_resource(Caller(user=deployment.deployed_by), deployment.cluster.address,
                        AccessLevel.WRITE)
    except (NotFound, PermissionDenied):
        raise missing from None
    text = credentials.decrypt_values(deployment.spec_encrypted)["spec"]
    state = ClusterState.objects.filter(resource_id=deployment.cluster_id).first()
    if state is not None:
        event_record(state=state, kind="restored",
                     message="The daemon put a saved function or module back from den's "
                             "copy, for a call after it restarted.",
                     address=resource.address, code=deployment.code)
    return {"name": deployment.object_name, "spec": json.loads(text),
            "restores_state": deployment.restores_state, "code": deployment.code or None}


def deployment_code_for_daemon(*, caller: Caller, resource: Resource) -> bytes:
    """The code bundle of ``resource``'s deployment on the caller's cluster."""
    code = (Deployment.objects.filter(resource=resource, cluster_id=caller.cluster_id)
            .values_list("code", flat=True).first())
    data = registry_selectors.code_bundle_get(sha=code) if code else None
    if data is None:
        raise NotFound(f"den holds no code bundle for {resource.address} on this cluster.",
                       code="no_code")
    return data
