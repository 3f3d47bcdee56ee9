"""Reads behind the den-wide figures of ``/metrics`` (no user's data: counts
and sums only)."""

from __future__ import annotations

from django.db.models import Count, Sum

from compute.models import ClusterState, ClusterStatus
from ops.models import TASK_BUCKETS, TaskRunStat


def clusters_by_status() -> dict[str, int]:
    """Every status, with how many clusters have it (0 included)."""
    counts = {status.value: 0 for status in ClusterStatus}
    for row in ClusterState.objects.values("status").annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    return counts


def cluster_calls_in_flight() -> int:
    total = ClusterState.objects.filter(status=ClusterStatus.UP).aggregate(
        n=Sum("calls_in_flight"))["n"]
    return int(total or 0)


def task_run_stats() -> dict[tuple[str, str], tuple[list[tuple[str, float]], float]]:
    """(task, outcome) -> (cumulative histogram buckets, total seconds)."""
    rows: dict[tuple[str, str], list[int]] = {}
    sums: dict[tuple[str, str], float] = {}
    for stat in TaskRunStat.objects.all():
        key = (stat.task, stat.outcome)
        counts = rows.setdefault(key, [0] * (len(TASK_BUCKETS) + 1))
        if 0 <= stat.bucket < len(counts):
            counts[stat.bucket] += stat.count
        sums[key] = sums.get(key, 0.0) + stat.seconds
    out = {}
    for key, counts in rows.items():
        bounds = [*(str(b) for b in TASK_BUCKETS), "+Inf"]
        cumulative, running = [], 0
        for bound, count in zip(bounds, counts, strict=True):
            running += count
            cumulative.append((bound, float(running)))
        out[key] = (cumulative, sums[key])
    return out
