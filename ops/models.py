"""Figures that every den process adds to and any web process reports."""

from __future__ import annotations

from django.db import models

#: Upper bounds (seconds) of the task-duration histogram's buckets; a last
#: bucket (index ``len(TASK_BUCKETS)``) holds the rest (``+Inf``).
TASK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class TaskRunStat(models.Model):
    """How many runs of a Celery task ended with an outcome, with a duration in
    one histogram bucket, and their total seconds.

    Kept in the database rather than in each worker's memory because workers
    and web servers may run on different machines that share only the
    database and Redis: any web process's ``/metrics`` reports every
    worker's tasks (so the figures are den-wide, the same on every web
    server). One row per (task, outcome, bucket), added to with a
    conditional ``UPDATE``, so concurrent workers never lose a count.
    """

    task = models.CharField(max_length=200)
    outcome = models.CharField(max_length=16)
    bucket = models.PositiveSmallIntegerField()
    count = models.BigIntegerField(default=0)
    seconds = models.FloatField(default=0.0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["task", "outcome", "bucket"],
                                    name="ops_taskrunstat_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.task} {self.outcome} bucket {self.bucket}: {self.count}"
