"""Prometheus figures for ``/metrics``.

Two kinds:

- **per web server**, counted by the process that served each request:
  ``den_http_requests_total`` and ``den_http_request_duration_seconds``
  (by method and route; status too for the count) and
  ``den_http_requests_in_flight``. gunicorn runs several worker processes,
  so these use prometheus-client's multiprocess mode: each process writes
  its figures to a file under ``DEN_METRICS_DIR`` (default
  ``$DEN_HOME/metrics``), and a scrape, answered by any one process, adds
  up every process's files. ``den.gunicorn_conf`` empties the folder when
  the server starts and drops a dead worker's in-flight gauge.
- **den-wide**, read from the database at each scrape (the same on every web
  server): ``den_clusters`` by status, ``den_cluster_calls_in_flight``, and
  ``den_celery_task_duration_seconds`` by task and outcome (its ``_count``
  is the number of runs; ``ops.taskstats`` adds them up as workers run tasks).
  If the database does not answer, the scrape still answers, with
  ``den_database_up 0``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DatabaseError


def metrics_dir() -> Path:
    return Path(settings.DEN_METRICS_DIR)


def _use_multiprocess_mode() -> None:
    """Make every metric made from here on write to ``DEN_METRICS_DIR``.

    prometheus-client reads the folder from PROMETHEUS_MULTIPROC_DIR when it
    makes each process's files; den sets it from its own setting, so a
    variable inherited from another den (or a test run) never points two
    servers at one folder."""
    folder = metrics_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    from prometheus_client import values

    values.ValueClass = values.MultiProcessValue()


_use_multiprocess_mode()

from prometheus_client import (  # noqa: E402 - after the multiprocess switch above
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily  # noqa: E402

REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REQUESTS = Counter("den_http_requests", "HTTP requests answered, by method, route and status.",
                   ["method", "route", "status"])
REQUEST_DURATION = Histogram("den_http_request_duration_seconds",
                             "Time to answer an HTTP request (until its response is "
                             "returned; a stream's body is not counted), by method and route.",
                             ["method", "route"], buckets=REQUEST_BUCKETS)
REQUESTS_IN_FLIGHT = Gauge("den_http_requests_in_flight",
                           "HTTP requests being answered now, summed over the web processes.",
                           multiprocess_mode="livesum")


class DatabaseCollector:
    """The den-wide figures, read from the database at each scrape."""

    def collect(self) -> Iterator[Any]:
        from ops import selectors

        up = GaugeMetricFamily("den_database_up",
                               "1 if the database answered this scrape's queries, else 0.")
        try:
            clusters = selectors.clusters_by_status()
            calls = selectors.cluster_calls_in_flight()
            tasks = selectors.task_run_stats()
        except DatabaseError:
            from django.db import connection

            connection.close_if_unusable_or_obsolete()
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        family = GaugeMetricFamily("den_clusters", "Clusters by status.", labels=["status"])
        for status, count in clusters.items():
            family.add_metric([status], count)
        yield family
        yield GaugeMetricFamily("den_cluster_calls_in_flight",
                                "Calls running on clusters that are up, as their daemons "
                                "last reported.", value=calls)
        histogram = HistogramMetricFamily(
            "den_celery_task_duration_seconds",
            "Celery task runs by task and outcome, and how long they took (_count: runs).",
            labels=["task", "outcome"])
        for (task, outcome), (buckets, total) in sorted(tasks.items()):
            histogram.add_metric([task, outcome], buckets=buckets, sum_value=total)
        yield histogram


def scrape() -> tuple[bytes, str]:
    """The text a scrape answers, and its content type."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(metrics_dir()))
    registry.register(DatabaseCollector())  # type: ignore[arg-type]
    return generate_latest(registry), CONTENT_TYPE_LATEST


def reset_dir(path: str | Path | None = None) -> None:
    """Empty the metrics folder: a server starting afresh starts from zero
    (and no file of a process that is gone adds to its figures)."""
    folder = Path(path) if path is not None else metrics_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    for entry in folder.glob("*.db"):
        entry.unlink(missing_ok=True)


def process_exited(pid: int, path: str | Path | None = None) -> None:
    """A worker process is gone: its in-flight gauge no longer counts."""
    multiprocess.mark_process_dead(pid, path=str(path or metrics_dir()))
