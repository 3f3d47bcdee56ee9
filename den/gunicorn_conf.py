"""gunicorn's settings and hooks for den's web server, in one place.

Production runs ``gunicorn -c python:den.gunicorn_conf den.wsgi:application``
(``den.processes.web_command``; docker-compose.yml and the topology test
use that), and ``manage.py serve`` loads the same settings into its own
gunicorn. The hooks:

- ``on_starting``: empty the metrics folder (``ops.metrics``): a server that
  starts afresh starts its figures from zero;
- ``pre_fork``: close every database and cache connection, so that no worker
  inherits (and shares) one of the master's;
- ``child_exit``: a dead worker's in-flight gauge stops counting.

This module is project wiring: ``import den`` never imports it.
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "den.settings")

worker_class = "den.webserver.DenWorker"
workers = int(os.environ.get("DEN_WEB_WORKERS", "2"))
threads = int(os.environ.get("DEN_WEB_THREADS", "4"))
timeout = 60
# den does not use gunicorn 27's control socket, and two dens on one machine
# would contend for its one default path.
control_socket_disable = True
accesslog = os.environ.get("DEN_ACCESS_LOG") or None


def _logconfig() -> dict[str, Any] | None:
    """den's LOGGING when it writes JSON, so gunicorn's lines are JSON too."""
    if os.environ.get("DEN_LOG_FORMAT", "").strip().lower() != "json":
        return None
    from django.conf import settings

    return dict(settings.LOGGING)


_json_logging = _logconfig()
if _json_logging is not None:  # gunicorn refuses a logconfig_dict of None
    logconfig_dict = _json_logging


def close_connections() -> None:
    """Close every database and cache connection this process holds, so
    that no child process inherits (and shares) one of them."""
    from django.core.cache import caches
    from django.db import connections

    connections.close_all()
    caches.close_all()


def on_starting(server: Any) -> None:
    from ops.metrics import reset_dir

    reset_dir()


def pre_fork(server: Any, worker: Any) -> None:
    close_connections()


def child_exit(server: Any, worker: Any) -> None:
    from ops.metrics import process_exited

    process_exited(worker.pid)


#: The names above that are gunicorn settings (``manage.py serve`` sets them).
SETTINGS = ("worker_class", "workers", "threads", "timeout", "control_socket_disable",
            "accesslog", "logconfig_dict", "on_starting", "pre_fork", "child_exit")
