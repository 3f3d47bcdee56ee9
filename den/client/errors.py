"""Exceptions the client raises, one class per kind of failure a user can act on.

Every error from a den server is an instance of :class:`DenError` carrying the
server's ``message``, ``code`` and ``field`` (the config field it objects to, if
any), plus the HTTP ``status``. Catch the narrow class you can handle::

    try:
        fn = den.function(name="/alice/train")
    except den.NotFound:
        ...
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthenticationError",
    "BadRequest",
    "CallTimeout",
    "Conflict",
    "DenError",
    "InvalidAddress",
    "NetworkError",
    "NoRunningCluster",
    "NotFound",
    "NotLoggedIn",
    "PermissionDenied",
    "ServerError",
    "Throttled",
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
