"""Request ids and JSON log lines.

Every request gets an id: the caller's ``X-Request-ID`` when it is a plain
token (letters, digits, ``._:-``, at most 128 characters; anything else
could forge log lines), else a new one. The response carries it back, every
log line written while the request is served carries it (``request_id``),
den's web server adds it to the request's access-log line, and a Celery
task enqueued by the request logs it too. ``DEN_LOG_FORMAT=json`` writes
each line as one JSON object (``den.settings`` wires the formatter and
filter below into ``LOGGING`` and into gunicorn's loggers).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

#: The id of the request (or task) this thread is working for.
request_id_var: ContextVar[str | None] = ContextVar("den_request_id", default=None)

_VALID_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
#: The Celery message header that carries a request's id into its tasks.
TASK_HEADER = "den_request_id"


def request_id_from(value: str | None) -> str:
    """The caller's id if it is a plain token, else a new one."""
    if value and _VALID_ID.fullmatch(value):
        return value
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Gives every record a ``request_id`` (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        return True


#: Extra fields a record may carry (``log.info(..., extra={...})``) that a
#: JSON line keeps; anything else stays out (Django's request objects, say).
EXTRA_FIELDS = ("method", "path", "status", "status_code", "duration_ms", "remote",
                "task", "task_id")


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id and
    the known extras, and the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id:
            data["request_id"] = request_id
        for name in EXTRA_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                data[name] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            data["stack"] = self.formatStack(record.stack_info)
        return json.dumps(data, default=str, ensure_ascii=False)


def logging_config(*, level: str, json_lines: bool) -> dict[str, Any]:
    """den's ``LOGGING``; also given to gunicorn (``logconfig_dict``), so the
    web server's own lines come out the same way."""
    formatter = ({"()": "ops.logs.JSONFormatter"} if json_lines
                 else {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"})
    handler = {"class": "logging.StreamHandler", "formatter": "den",
               "filters": ["request_id"]}
    loggers: dict[str, Any] = {
        # Request lines carry paths only, never headers, so tokens stay out of logs.
        "django.request": {"level": "WARNING"},
    }
    if json_lines:
        # gunicorn's own lines (its errors, den's access lines) in JSON too. In
        # plain mode gunicorn keeps its own handlers (these would double them).
        server_logger = {"handlers": ["console"], "level": "INFO", "propagate": False}
        loggers.update({"gunicorn.error": server_logger, "gunicorn.access": server_logger})
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "ops.logs.RequestIdFilter"}},
        "formatters": {"den": formatter},
        "handlers": {"console": handler},
        "root": {"handlers": ["console"], "level": level},
        "loggers": loggers,
    }


def _request_finished(**kwargs: Any) -> None:
    request_id_var.set(None)


def _before_task_publish(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    request_id = request_id_var.get()
    if request_id and headers is not None:
        headers.setdefault(TASK_HEADER, request_id)


def _task_prerun(task: Any = None, **kwargs: Any) -> None:
    request = getattr(task, "request", None)
    request_id_var.set(getattr(request, TASK_HEADER, None) if request is not None else None)


def _task_postrun(**kwargs: Any) -> None:
    request_id_var.set(None)


def connect_signals() -> None:
    """A request's id ends with its response; tasks it enqueues carry it."""
    from celery import signals as celery_signals
    from django.core.signals import request_finished

    request_finished.connect(_request_finished, dispatch_uid="den-request-id-finished")
    celery_signals.before_task_publish.connect(_before_task_publish, weak=False,
                                               dispatch_uid="den-request-id-publish")
    celery_signals.task_prerun.connect(_task_prerun, weak=False,
                                       dispatch_uid="den-request-id-prerun")
    celery_signals.task_postrun.connect(_task_postrun, weak=False,
                                        dispatch_uid="den-request-id-postrun")
