"""Readiness: can this den process do its work? It asks the database, the
Celery broker and every cache, each once, with short timeouts.

Answers name what failed with its error's type only (``OperationalError``);
the full error, which may name hosts, goes to the log, at most once a
minute per part.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings

log = logging.getLogger("den.ops")

#: How long a broker connection may take to open (seconds).
BROKER_TIMEOUT = 2.0
LOG_INTERVAL = 60.0
_logged: dict[str, float] = {}
_logged_lock = threading.Lock()


def check_database() -> None:
    from django.db import connection

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception:
        # A connection that failed is closed, so the next request opens a new one.
        connection.close_if_unusable_or_obsolete()
        raise


def check_broker() -> None:
    url = settings.CELERY_BROKER_URL
    if url.startswith("filesystem"):
        folder = str(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
        if not os.access(folder, os.W_OK):
            raise OSError(f"the broker folder {folder} cannot be written")
        return
    from den.celery import app

    with app.connection_for_write(connect_timeout=BROKER_TIMEOUT) as conn:
        conn.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT)


def check_caches() -> None:
    from django.core.cache import caches

    for alias in settings.CACHES:
        backend: Any = caches[alias]
        try:
            if hasattr(backend, "check"):
                backend.check()
            else:
                backend.set("den:ready", 1, 30)
        except Exception as exc:
            raise type(exc)(f"cache {alias!r}: {exc}") from exc


CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "broker": check_broker,
    "cache": check_caches,
}


def readiness() -> tuple[bool, dict[str, dict[str, Any]]]:
    """Whether every part answered, and what each said."""
    results: dict[str, dict[str, Any]] = {}
    ready = True
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            check()
        except Exception as exc:
            ready = False
            results[name] = {"ok": False, "error": type(exc).__name__}
            _log_failure(name, exc)
        else:
            results[name] = {"ok": True}
        results[name]["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return ready, results


def _log_failure(name: str, exc: Exception) -> None:
    now = time.monotonic()
    with _logged_lock:
        if now - _logged.get(name, -LOG_INTERVAL) < LOG_INTERVAL:
            return
        _logged[name] = now
    log.warning("Readiness: the %s is unavailable (%s: %s).", name, type(exc).__name__, exc)
