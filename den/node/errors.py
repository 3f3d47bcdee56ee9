"""Errors a caller of a node daemon can catch: den's own error classes.

The daemon reports failures as JSON ``{"code", "message", ...}`` (an ``X`` frame or a
JSON error body); :func:`error_from_payload` turns one into the matching exception of
:mod:`den.client.errors`, the one hierarchy for den's and the daemon's errors (a
daemon's 403 is a :class:`den.PermissionDenied`, a missing object a
:class:`den.ObjectNotFound`, which is a :class:`den.NotFound`). The names below
(``NodeError``, ``NodeForbidden``, ...) are the caller library's names for them.

A remote exception is rebuilt as its own type when it unpickles here, else as a
:class:`RemoteError` naming the remote type; either way the remote traceback is
attached as a note (so it prints) and as ``remote_traceback``.
"""

from __future__ import annotations

import base64
import contextlib
import pickle
from typing import Any

from den.client.errors import (
    AuthenticationError,
    BadRequest,
    BundleTooLarge,
    CallTimeout,
    ClusterStopping,
    DenError,
    DenUnavailable,
    EnvSetupFailed,
    ObjectNotFound,
    PermissionDenied,
    PickleRefused,
    RefElsewhere,
    RefExpired,
    RefGone,
    RefNotFound,
    RemoteError,
    TooLarge,
    WorkerCrashed,
)
from den.client.errors import DaemonUnreachable as NodeUnreachable

#: Every error the daemon or the caller library reports is a den error.
NodeError = DenError
#: No token, or den does not know it.
NodeUnauthorized = AuthenticationError
#: The token may read this resource but not do this to it.
NodeForbidden = PermissionDenied

__all__ = [
    "BadRequest",
    "BundleTooLarge",
    "CallTimeout",
    "ClusterStopping",
    "DenUnavailable",
    "EnvSetupFailed",
    "NodeError",
    "NodeForbidden",
    "NodeUnauthorized",
    "NodeUnreachable",
    "ObjectNotFound",
    "PickleRefused",
    "RemoteError",
    "TooLarge",
    "WorkerCrashed",
    "error_from_payload",
]

_BY_CODE: dict[str, type[DenError]] = {
    "bad_request": BadRequest,
    "pickle_refused": PickleRefused,
    "unauthorized": AuthenticationError,
    "forbidden": PermissionDenied,
    "not_found": ObjectNotFound,
    "den_unavailable": DenUnavailable,
    "cluster_stopping": ClusterStopping,
    "env_failed": EnvSetupFailed,
    "too_large": TooLarge,
    "timeout": CallTimeout,
    "ref_not_found": RefNotFound,
    "ref_expired": RefExpired,
    "ref_gone": RefGone,
    "ref_elsewhere": RefElsewhere,
}


def _remote_exception(payload: dict[str, Any], status: int | None) -> BaseException:
    remote_type = str(payload.get("type") or "Exception")
    tb = str(payload.get("traceback") or "")
    exc: BaseException | None = None
    pickled = payload.get("pickle")
    if pickled:
        try:
            loaded = pickle.loads(base64.b64decode(pickled))  # noqa: S301 - from our own daemon
        except Exception:
            loaded = None
        if isinstance(loaded, BaseException):
            exc = loaded
    if exc is None:
        exc = RemoteError(
            str(payload.get("message", "")),
            remote_type=remote_type,
            remote_traceback=tb,
            status=status,
        )
    if tb:
        env = payload.get("env")
        where = f" (den node, env {env!r})" if env else " (den node)"
        exc.add_note(f"Remote traceback{where}:\n{tb.rstrip()}")
        with contextlib.suppress(AttributeError):  # exceptions with __slots__
            exc.remote_traceback = tb  # type: ignore[attr-defined]
    return exc


def error_from_payload(payload: dict[str, Any], status: int | None = None) -> BaseException:
    """Build the exception a caller should see from a daemon error payload."""
    code = str(payload.get("code", "internal"))
    message = str(payload.get("message", "the node daemon reported an error"))
    if code == "remote_exception":
        return _remote_exception(payload, status)
    if code == "worker_crashed":
        return WorkerCrashed(
            f"{message.rstrip('.')}. The worker was restarted; calling again is safe if the "
            "call is.",
            env=payload.get("env"), exit_code=payload.get("exit_code"), status=status,
        )
    if code == "unauthorized":
        message = (f"The cluster refused your token: {message.rstrip('.')}. "
                   "Run `den login` to sign in again.")
    cls = _BY_CODE.get(code, DenError)
    return cls(message, code=code, status=status)
