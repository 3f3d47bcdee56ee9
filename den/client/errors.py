"""Exceptions the client raises, one class per kind of failure a user can act on.

Every error from a den server or from a cluster's node daemon is an instance of
:class:`DenError` carrying the ``message``, ``code`` and ``field`` (the config
field it objects to, if any), plus the HTTP ``status``. One hierarchy serves
both: the node's caller library (:mod:`den.node.caller`) raises these classes
itself, so a daemon's 403 is a :class:`PermissionDenied` like den's, and nothing
translates between them. Catch the narrow class you can handle::

    try:
        fn = den.function(name="/alice/train")
    except den.NotFound:
        ...

The classes only a daemon raises (:class:`ObjectNotFound`, :class:`PickleRefused`,
:class:`DaemonUnreachable`, :class:`RemoteError`, ...) subclass the general kind a
caller already catches (``NotFound``, ``BadRequest``, ``NetworkError``...).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthenticationError",
    "BadRequest",
    "BundleTooLarge",
    "CallTimeout",
    "ClusterStopping",
    "Conflict",
    "DaemonUnreachable",
    "DenError",
    "DenUnavailable",
    "EnvSetupFailed",
    "InvalidAddress",
    "NetworkError",
    "NoRunningCluster",
    "NotFound",
    "NotLoggedIn",
    "ObjectNotFound",
    "PermissionDenied",
    "PickleRefused",
    "RefElsewhere",
    "RefExpired",
    "RefGone",
    "RefNotFound",
    "RemoteError",
    "ServerError",
    "Throttled",
    "TooLarge",
    "ValidationError",
    "WorkerCrashed",
    "WrongType",
    "error_from_response",
]


class DenError(Exception):
    """Base class of every error the den client raises.

    Attributes: ``message`` (human readable), ``code`` (machine readable, e.g.
    ``"not_found"``), ``field`` (the offending config field or ``None``),
    ``status`` (HTTP status, ``None`` when the error arose in the client) and
    ``url`` (the request URL, when there was one).
    """

    default_code = "error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        field: str | None = None,
        status: int | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.field = field
        self.status = status
        self.url = url

    def __str__(self) -> str:
        if self.field and self.field not in self.message:
            return f"{self.message} (field: {self.field})"
        return self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, code={self.code!r}, status={self.status!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only attributes survive pickling (a worker process, a task runner).
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))

    def with_context(self, what: str) -> DenError:
        """Prefix the message with what failed (``Function /alice/train``) unless it names it."""
        if what and what not in self.message:
            self.message = f"{what}: {self.message.rstrip('.')}."
            self.args = (self.message,)
        return self


def _rebuild(cls: type[DenError], args: tuple[Any, ...], state: dict[str, Any]) -> DenError:
    exc = cls.__new__(cls)
    Exception.__init__(exc, *args)
    exc.__dict__.update(state)
    return exc


class BadRequest(DenError):
    """The server refused the request as malformed (HTTP 400 or 413)."""

    default_code = "invalid"


class ValidationError(BadRequest):
    """A config or argument is invalid; ``field`` names the offending field."""

    default_code = "invalid"


class InvalidAddress(ValidationError, ValueError):
    """A resource address or URL does not parse (raised by the client, no request made)."""

    default_code = "invalid_address"


class AuthenticationError(DenError):
    """No token, or a bad, expired or revoked one (HTTP 401). Run ``den login``."""

    default_code = "not_authenticated"


class NotLoggedIn(AuthenticationError):
    """No den server is configured: call ``den.login(...)``, run ``den login`` or set DEN_URL."""

    default_code = "not_logged_in"


class PermissionDenied(DenError):
    """You may read this resource but not do this to it (HTTP 403)."""

    default_code = "permission_denied"


class NotFound(DenError):
    """No such resource, or you have no access to it (HTTP 404; den does not tell them apart)."""

    default_code = "not_found"


class Conflict(DenError):
    """The address already exists (409), or the resource changed since you loaded it (412).

    For a stale save, reload the resource (``den.load(address)``), reapply your
    change and save again, or pass ``force=True`` to overwrite.
    """

    default_code = "conflict"


class Throttled(DenError):
    """Too many requests (HTTP 429); ``retry_after`` says how many seconds to wait, if known."""

    default_code = "throttled"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(DenError):
    """The den server failed (HTTP 5xx). Retrying later may help; the server logs say more."""

    default_code = "server_error"


class NetworkError(DenError):
    """The den server could not be reached (connection refused, DNS, timeout...)."""

    default_code = "network_error"


class WrongType(DenError, TypeError):
    """The resource at an address is of another type than asked for."""

    default_code = "wrong_type"


class NoRunningCluster(DenError):
    """A function or module cannot be called: it has no running cluster to run on."""

    default_code = "no_running_cluster"


class WorkerCrashed(DenError):
    """The process running a remote call died during it (killed, out of memory...).

    The cluster restarts it at once, re-creating the objects it held from what was
    sent (their in-memory state is lost), so calling again is safe when the call is.
    ``env`` names the env and ``exit_code`` is the process's exit status (negative:
    killed by that signal).
    """

    default_code = "worker_crashed"

    def __init__(
        self,
        message: str,
        *,
        env: str | None = None,
        exit_code: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.env = env
        self.exit_code = exit_code


class CallTimeout(DenError, TimeoutError):
    """A remote call ran longer than its timeout, and the cluster abandoned it."""

    default_code = "timeout"


# -- what a cluster's node daemon reports (raised by den.node.caller) --------------------


class PickleRefused(BadRequest):
    """A call's pickled arguments name a type that callers with read access may not
    send (they send plain data, plus the function's ``pickle_allow``); the message
    names it. Read access to a function lets you call it with data, not run code."""

    default_code = "pickle_refused"


class TooLarge(ValidationError):
    """A request body was larger than the daemon accepts."""

    default_code = "too_large"


class BundleTooLarge(ValidationError, ValueError):
    """The project directory to send is larger than the code bundle size cap."""

    default_code = "too_large"

    def __init__(self, message: str, **kwargs: Any) -> None:
        kwargs.setdefault("field", "code")
        super().__init__(message, **kwargs)


class ObjectNotFound(NotFound, LookupError):
    """No such object on the cluster's daemon, or you may not see it."""

    default_code = "not_found"


class RefNotFound(NotFound):
    """No such ref on its cluster: deleted, never made (its call failed), or you may not
    read the function that made it."""

    default_code = "ref_not_found"


class RefExpired(RefNotFound):
    """The ref expired (and its object was freed): make it again."""

    default_code = "ref_expired"


class RefGone(RefNotFound):
    """The ref's object was lost: the worker or the daemon holding it restarted."""

    default_code = "ref_gone"


class RefElsewhere(BadRequest):
    """A ref was passed to a function that runs on another cluster (or env) than the
    ref's: fetch it with ``ref.get()`` and pass the value instead."""

    default_code = "ref_elsewhere"


class DaemonUnreachable(NetworkError, ConnectionError):
    """A cluster's node daemon could not be reached (is the cluster up?)."""

    default_code = "unreachable"


class DenUnavailable(ServerError):
    """The cluster's daemon could not reach den to check your token; try again shortly."""

    default_code = "den_unavailable"


class ClusterStopping(NoRunningCluster):
    """The cluster's daemon is stopping (autostop) and takes no more calls; bring it up again."""

    default_code = "cluster_stopping"


class EnvSetupFailed(DenError):
    """Making an env on the cluster (virtualenv, pip install, setup commands) failed."""

    default_code = "env_failed"


class RemoteError(DenError):
    """A remote exception whose type could not be rebuilt here.

    ``remote_type`` is its qualified type name (e.g. ``mypkg.errors.BadInput``) and
    ``remote_traceback`` the traceback on the cluster.
    """

    default_code = "remote_exception"

    def __init__(
        self,
        message: str,
        *,
        remote_type: str = "Exception",
        remote_traceback: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(f"{remote_type}: {message}", **kwargs)
        self.remote_type = remote_type
        self.remote_traceback = remote_traceback

    def with_context(self, what: str) -> DenError:
        return self  # the user's own exception: its message stays as raised


_BY_STATUS: dict[int, type[DenError]] = {
    400: BadRequest,
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    412: Conflict,
    413: ValidationError,
    429: Throttled,
}

_VALIDATION_CODES = {"invalid", "invalid_config", "invalid_address", "too_large"}

_DEFAULT_MESSAGES: dict[type[DenError], str] = {
    AuthenticationError: "The den server did not accept your token.",
    PermissionDenied: "You do not have permission to do this.",
    NotFound: "Not found, or you have no access to it.",
    Conflict: "The resource changed or already exists.",
    Throttled: "Too many requests; wait a little and try again.",
    ServerError: "The den server failed to answer the request.",
}


def error_from_response(
    status: int,
    body: Any,
    *,
    url: str | None = None,
    retry_after: float | None = None,
) -> DenError:
    """Build the exception for an HTTP error response from a den server.

    ``body`` is the decoded JSON body (``{"error": {"code", "message", "field"}}``)
    or anything else a proxy might have answered with; the status picks the class.
    """
    code: str | None = None
    message: str | None = None
    field: str | None = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = str(error["code"]) if error.get("code") else None
        message = str(error["message"]) if error.get("message") else None
        field = str(error["field"]) if error.get("field") else None
    elif isinstance(body, dict) and isinstance(body.get("detail"), str):
        message = body["detail"]

    cls: type[DenError]
    cls = ServerError if status >= 500 else _BY_STATUS.get(status, DenError)
    if cls is BadRequest and (code in _VALIDATION_CODES or (code is None and field)):
        cls = ValidationError
    if message is None:
        message = _DEFAULT_MESSAGES.get(cls, f"The den server answered HTTP {status}.")
    if cls is AuthenticationError:
        message = f"{message.rstrip('.')}. Run `den login` to sign in again."
    if cls is ServerError:
        message = f"{message} (HTTP {status})"
    if cls is Throttled:
        return Throttled(
            message, retry_after=retry_after, code=code, field=field, status=status, url=url
        )
    return cls(message, code=code, field=field, status=status, url=url)
