"""Celery tasks for clusters: thin wrappers that take ids and call a service.

Every task has an explicit name and goes to the ``compute`` queue (routed by
``CELERY_TASK_ROUTES``, as Celery 5.7 deprecates a queue on the task itself)
and acknowledges late (a worker lost mid-task leaves the message to be
redelivered). A cluster task's arguments are ``(state_id, seq, ...)``: the
cluster and the number of the request it works for. The services fence every
change on that number and claim a request's first step with the message's own
id, so a duplicate message does nothing, a redelivered one may finish the
work, and a message of an old request never changes a newer one's outcome.

Retries are Celery's own: transient errors (the backend says so, or the
database connection failed) retry with exponential backoff and jitter
(``autoretry_for``, ``retry_backoff``, ``retry_jitter``). Every task has a
soft and a hard time limit (``DEN_CLUSTER_TASK_SOFT_TIME_LIMIT``,
``DEN_CLUSTER_TASK_TIME_LIMIT``): a backend step returns in seconds, and
long work is split into polls that re-enqueue themselves with a countdown,
so no worker blocks for minutes. When a task fails for good (its retries ran
out, it hit its time limit, a bug), ``on_failure`` fails its request with an
event, unless a newer request replaced it.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from compute import services
from compute.backends import TransientBackendError

logger = logging.getLogger(__name__)

#: Errors worth another try: the backend said so, or the database connection failed.
TRANSIENT = (TransientBackendError, OperationalError, InterfaceError)


class ClusterTask(Task):
    """A task about one cluster request: ``args[0]`` is the state id, ``args[1]``
    the request's sequence number."""

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any,
                   einfo: Any) -> None:
        try:
            state_id, seq = int(args[0]), int(args[1])
        except (IndexError, TypeError, ValueError):
            logger.error("%s[%s] failed with arguments it cannot be about: %r",
                         self.name, task_id, args)
            return
        try:
            services.cluster_task_failed(state_id=state_id, seq=seq, task=self.name, exc=exc)
        except Exception:
            logger.exception("%s[%s]: could not record its failure", self.name, task_id)


_COMMON: dict[str, Any] = {
    "bind": True,
    "acks_late": True,
    "autoretry_for": TRANSIENT,
    "max_retries": settings.DEN_CLUSTER_TASK_MAX_RETRIES,
    # 2, 4, 8 ... s, at most DEN_CLUSTER_TASK_RETRY_MAX_SECONDS, each a random
    # part of that ("full jitter"), so that clusters failing together do not
    # retry together.
    "retry_backoff": 2,
    "retry_backoff_max": settings.DEN_CLUSTER_TASK_RETRY_MAX_SECONDS,
    "retry_jitter": True,
    "soft_time_limit": settings.DEN_CLUSTER_TASK_SOFT_TIME_LIMIT,
    "time_limit": settings.DEN_CLUSTER_TASK_TIME_LIMIT,
}


@shared_task(name="compute.cluster_up", base=ClusterTask, **_COMMON)
def cluster_up(self: Task, state_id: int, seq: int) -> str:
    """Begin the start that request ``seq`` asked for (the backend's ``begin_up``)."""
    return services.cluster_run_up(state_id=state_id, seq=seq, claim=str(self.request.id))


@shared_task(name="compute.cluster_poll_up", base=ClusterTask, **_COMMON)
def cluster_poll_up(self: Task, state_id: int, seq: int, step: int) -> str:
    """Poll number ``step`` of a start under way; enqueues the next one itself."""
    return services.cluster_run_poll(state_id=state_id, seq=seq, step=step,
                                     claim=str(self.request.id))


@shared_task(name="compute.cluster_stop", base=ClusterTask, **_COMMON)
def cluster_stop(self: Task, state_id: int, seq: int) -> str:
    """Stop the daemons of a cluster whose stop was requested."""
    return services.cluster_run_stop(state_id=state_id, seq=seq, claim=str(self.request.id))


@shared_task(name="compute.cluster_teardown", base=ClusterTask, **_COMMON)
def cluster_teardown(self: Task, state_id: int, seq: int) -> str:
    """Tear down a cluster whose teardown was requested."""
    return services.cluster_run_teardown(state_id=state_id, seq=seq,
                                         claim=str(self.request.id))


@shared_task(name="compute.cluster_probe", bind=True, acks_late=True, ignore_result=True,
             soft_time_limit=30, time_limit=45)
def cluster_probe(self: Task, state_id: int, seq: int) -> str:
    """Check whether an ``up`` cluster's daemon still runs (a caller could not
    reach it). Not retried and never fails the cluster: a probe that cannot
    tell changes nothing, and the heartbeat timeout still applies."""
    return services.cluster_run_probe(state_id=state_id, seq=seq)


@shared_task(name="compute.cluster_release", **_COMMON)
def cluster_release(self: Task, backend: str, cluster_key: str, handles: dict[str, Any]) -> None:
    """Tear down what a deleted cluster left running (idempotent: a backend's
    teardown of nothing does nothing). No request to fail: the row is gone."""
    services.cluster_run_release(backend=backend, cluster_key=cluster_key, handles=handles)


@shared_task(name="compute.sweep_clusters", acks_late=True, ignore_result=True,
             soft_time_limit=settings.DEN_CLUSTER_TASK_SOFT_TIME_LIMIT,
             time_limit=settings.DEN_CLUSTER_TASK_TIME_LIMIT)
def sweep_clusters() -> dict[str, int]:
    """Beat task: mark silent clusters unreachable, stop idle ones, fail late
    starts, resume requests whose task was lost.

    Idempotent: every action re-checks its cluster, so overlapping sweeps are harmless.
    """
    counts = services.cluster_sweep()
    if any(counts.values()):
        logger.info("cluster sweep: %s", counts)
    return counts


@shared_task(name="compute.sweep_skypilot", acks_late=True, ignore_result=True,
             soft_time_limit=settings.DEN_CLUSTER_TASK_SOFT_TIME_LIMIT,
             time_limit=settings.DEN_CLUSTER_TASK_TIME_LIMIT)
def sweep_skypilot() -> dict[str, int]:
    """Beat task: compare SkyPilot's clusters with den's, record drift as
    events, and tear down (or flag) clusters den launched and no longer tracks
    (:mod:`compute.skypilot_sweep`). Idempotent."""
    from compute.skypilot_sweep import cluster_sweep_skypilot

    return cluster_sweep_skypilot()
