"""Celery task counts and durations, added up in the database
(``ops.models.TaskRunStat``) from the worker's task signals, so that
``/metrics`` on any web server reports every worker's tasks.

Best effort: a run whose figures cannot be written (the database is down)
is logged and left out; a task never fails because of its figures.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from typing import Any

from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F

from ops.models import TASK_BUCKETS, TaskRunStat

log = logging.getLogger("den.ops")

#: Celery's end states, as the ``outcome`` label says them.
OUTCOMES = {"SUCCESS": "succeeded", "FAILURE": "failed", "RETRY": "retried",
            "REVOKED": "revoked", "REJECTED": "rejected", "IGNORED": "ignored"}

_started: dict[str, float] = {}
_lock = threading.Lock()


def bucket_for(seconds: float) -> int:
    """The index of the histogram bucket ``seconds`` falls in (le bounds)."""
    return bisect.bisect_left(TASK_BUCKETS, seconds)


def task_run_record(*, task: str, outcome: str, seconds: float) -> None:
    """Add one run to the figures (an UPDATE, or the row's first INSERT)."""
    rows = TaskRunStat.objects.filter(task=task[:200], outcome=outcome[:16],
                                      bucket=bucket_for(seconds))
    add = {"count": F("count") + 1, "seconds": F("seconds") + seconds}
    if rows.update(**add):
        return
    try:
        with transaction.atomic():
            TaskRunStat.objects.create(task=task[:200], outcome=outcome[:16],
                                       bucket=bucket_for(seconds), count=1, seconds=seconds)
    except IntegrityError:  # another worker made the row meanwhile
        rows.update(**add)


def _prerun(task_id: str | None = None, **kwargs: Any) -> None:
    if task_id:
        with _lock:
            _started[task_id] = time.monotonic()


def _postrun(task_id: str | None = None, task: Any = None, state: str | None = None,
             **kwargs: Any) -> None:
    with _lock:
        started = _started.pop(task_id or "", None)
    if started is None or task is None:
        return
    seconds = time.monotonic() - started
    outcome = OUTCOMES.get(state or "", (state or "unknown").lower())
    try:
        task_run_record(task=str(task.name), outcome=outcome, seconds=seconds)
    except DatabaseError as exc:
        log.warning("Could not record a run of %s in den's task figures: %s", task.name, exc)


def connect_signals() -> None:
    from celery import signals as celery_signals

    celery_signals.task_prerun.connect(_prerun, weak=False, dispatch_uid="den-taskstats-prerun")
    celery_signals.task_postrun.connect(_postrun, weak=False,
                                        dispatch_uid="den-taskstats-postrun")
