"""Errors a caller of a node daemon can catch.

The daemon reports failures as JSON ``{"code", "message", ...}`` (an ``X`` frame or a
JSON error body); :func:`error_from_payload` turns one into the matching exception.
A remote exception is rebuilt as its own type when it unpickles here, else as a
:class:`RemoteError` naming the remote type; either way the remote traceback is
attached as a note (so it prints) and as ``remote_traceback``.
"""

from __future__ import annotations

import base64
import contextlib
import pickle
from typing import Any


class NodeError(Exception):
    """Base class of every error the node daemon or the caller library reports."""

    code = "internal"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class BadRequest(NodeError):
    """The daemon could not understand the request (a bug in the caller, usually)."""

    code = "bad_request"


class PickleRefused(BadRequest):
    """The call's pickled arguments name a global that callers with read access may
    not send (they send plain data); the message names it."""

    code = "pickle_refused"


class NodeUnauthorized(NodeError):
    """No token, or den does not know it: log in again or pass a valid token."""

    code = "unauthorized"


class NodeForbidden(NodeError):
    """The token may read this resource but not do this to it."""

    code = "forbidden"


class ObjectNotFound(NodeError, LookupError):
    """No such object on the daemon, or the caller may not see it."""

    code = "not_found"


class NodeUnreachable(NodeError, ConnectionError):
    """The caller could not reach the node daemon (is the cluster up?)."""

    code = "unreachable"


class DenUnavailable(NodeError):
    """The daemon could not reach den to check the caller's token."""

    code = "den_unavailable"


class ClusterStopping(NodeError):
    """The daemon is stopping (autostop) and takes no more calls; bring it up again."""

    code = "cluster_stopping"


class EnvSetupFailed(NodeError):
    """Creating an env (virtualenv, pip install, setup commands) failed on the node."""

    code = "env_failed"


class TooLarge(NodeError):
    """A request body was larger than the daemon accepts."""

    code = "too_large"


class WorkerCrashed(NodeError):
    """The env's worker process died during the call; the daemon restarts it.

    ``env`` names the env and ``exit_code`` is the worker's exit status (negative:
    killed by that signal). Objects in the env are re-created from what was put,
    so their in-memory state is lost; calling again is safe when the call is.
    """

    code = "worker_crashed"

    def __init__(
        self,
        message: str,
        *,
        env: str | None = None,
        exit_code: int | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, status=status)
        self.env = env
        self.exit_code = exit_code


class CallTimeout(NodeError, TimeoutError):
    """The call ran longer than its timeout; the daemon abandoned it."""

    code = "timeout"


class RemoteError(NodeError):
    """A remote exception whose type could not be rebuilt here.

    ``remote_type`` is its qualified type name (e.g. ``mypkg.errors.BadInput``).
    """

    code = "remote_exception"

    def __init__(
        self,
        message: str,
        *,
        remote_type: str = "Exception",
        remote_traceback: str = "",
        status: int | None = None,
    ) -> None:
        super().__init__(f"{remote_type}: {message}", status=status)
        self.remote_type = remote_type
        self.remote_traceback = remote_traceback


class BundleTooLarge(NodeError, ValueError):
    """The project directory is larger than the code bundle size cap."""

    code = "too_large"


_BY_CODE: dict[str, type[NodeError]] = {
    cls.code: cls
    for cls in (
        BadRequest,
        PickleRefused,
        NodeUnauthorized,
        NodeForbidden,
        ObjectNotFound,
        DenUnavailable,
        ClusterStopping,
        EnvSetupFailed,
        TooLarge,
        CallTimeout,
    )
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
            message, env=payload.get("env"), exit_code=payload.get("exit_code"), status=status
        )
    cls = _BY_CODE.get(code, NodeError)
    return cls(message, status=status)
