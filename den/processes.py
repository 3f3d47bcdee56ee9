"""The command lines of den's production processes, in one place.

docker-compose.yml runs exactly these (``tests/ops/test_compose.py`` checks
it), and so do the tests that start den as separate processes (web servers,
Celery workers, beat), so what is tested is what is deployed. Each is an
argv list, run from den's folder with den's environment (``DATABASE_URL``,
``CELERY_BROKER_URL``, ``REDIS_URL``, the keys, ...).

This module is project wiring with no imports beyond the standard library:
``import den`` never imports it.
"""

from __future__ import annotations


def migrate_command() -> list[str]:
    """Bring the database's schema up to date (once per release, before the rest)."""
    return ["python", "manage.py", "migrate", "--noinput"]


def web_command(*, bind: str, workers: int | None = None, threads: int | None = None
                ) -> list[str]:
    """A web server: gunicorn with den's worker, settings and hooks
    (``den.gunicorn_conf``); without ``workers``/``threads``, those of
    ``DEN_WEB_WORKERS``/``DEN_WEB_THREADS`` (2 and 4)."""
    argv = ["gunicorn", "--config", "python:den.gunicorn_conf", "--bind", bind]
    if workers is not None:
        argv += ["--workers", str(workers)]
    if threads is not None:
        argv += ["--threads", str(threads)]
    return [*argv, "den.wsgi:application"]


def worker_command(*, hostname: str | None = None, concurrency: int | None = None
                   ) -> list[str]:
    """A Celery worker for both of den's queues; ``hostname`` names it
    (``name@%h``) when several run on one machine."""
    argv = ["celery", "--app", "den", "worker", "--loglevel", "INFO"]
    if hostname is not None:
        argv += ["--hostname", hostname]
    if concurrency is not None:
        argv += ["--concurrency", str(concurrency)]
    return argv


def beat_command(*, schedule: str) -> list[str]:
    """Celery beat, den's one scheduler; ``schedule`` is its state file."""
    return ["celery", "--app", "den", "beat", "--loglevel", "INFO", "--schedule", schedule]
