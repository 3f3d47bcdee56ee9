"""Celery tasks for clusters: thin wrappers that take ids and call a service.

Every task has an explicit name and goes to the ``compute`` queue (routed by
``CELERY_TASK_ROUTES``, as Celery 5.7 deprecates a queue on the task itself),
acknowledges late
(a worker lost mid-task leaves the message to be redelivered), and passes its
own message id as the *claim*: the service claims the cluster's requested
status with a conditional UPDATE, so a duplicate message does nothing and a
redelivered one may finish the work. Transient errors (a backend not ready,
the database blinking) are retried with exponential backoff; permanent ones
mark the cluster failed.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from celery import shared_task
from django.db import InterfaceError, OperationalError

from compute import services
from compute.backends import TransientBackendError

logger = logging.getLogger(__name__)

MAX_RETRIES = 5
#: Errors worth another try: the backend said so, or the database connection failed.
TRANSIENT = (TransientBackendError, OperationalError, InterfaceError)


def _backoff(retries: int) -> float:
    """5 s, 10 s, 20 s ... capped at 5 minutes, with jitter so that many
    clusters failing together do not retry together."""
    return float(min(300, 5 * 2**retries) * random.uniform(0.8, 1.2))


def _retry(task: Any, exc: Exception) -> Any:
    return task.retry(exc=exc, countdown=_backoff(task.request.retries))


@shared_task(name="compute.cluster_up", bind=True, acks_late=True,
             max_retries=MAX_RETRIES)
def cluster_up(self: Any, state_id: int) -> str:
    """Start the daemon of a cluster whose ``up`` was requested."""
    try:
        started = services.cluster_run_up(state_id=state_id, claim=self.request.id)
    except TRANSIENT as exc:
        if self.request.retries >= self.max_retries:
            services.cluster_fail(state_id=state_id, claim=self.request.id,
                                  message=f"Gave up after {self.max_retries + 1} attempts: {exc}",
                                  details=getattr(exc, "details", None))
            return "failed"
        raise _retry(self, exc) from exc
    return "done" if started else "skipped"


@shared_task(name="compute.cluster_stop", bind=True, acks_late=True,
             max_retries=MAX_RETRIES)
def cluster_stop(self: Any, state_id: int) -> str:
    """Stop the daemon of a cluster whose stop was requested."""
    try:
        done = services.cluster_run_stop(state_id=state_id, claim=self.request.id)
    except TRANSIENT as exc:
        raise _retry(self, exc) from exc
    return "done" if done else "skipped"


@shared_task(name="compute.cluster_teardown", bind=True, acks_late=True,
             max_retries=MAX_RETRIES)
def cluster_teardown(self: Any, state_id: int) -> str:
    """Tear down a cluster whose teardown was requested."""
    try:
        done = services.cluster_run_teardown(state_id=state_id, claim=self.request.id)
    except TRANSIENT as exc:
        raise _retry(self, exc) from exc
    return "done" if done else "skipped"


@shared_task(name="compute.cluster_release", bind=True, acks_late=True,
             max_retries=MAX_RETRIES)
def cluster_release(self: Any, backend: str, cluster_key: str, handles: dict[str, Any]) -> None:
    """Tear down what a deleted cluster left running (idempotent: a backend's
    teardown of nothing does nothing)."""
    try:
        services.cluster_run_release(backend=backend, cluster_key=cluster_key, handles=handles)
    except TRANSIENT as exc:
        raise _retry(self, exc) from exc


@shared_task(name="compute.sweep_clusters", acks_late=True, ignore_result=True)
def sweep_clusters() -> dict[str, int]:
    """Beat task: mark silent clusters unreachable, stop idle ones, fail lost starts.

    Idempotent: every action re-checks its cluster, so overlapping sweeps are harmless.
    """
    counts = services.cluster_sweep()
    if any(counts.values()):
        logger.info("cluster sweep: %s", counts)
    return counts
