"""Errors that services and the access layer raise; the API renders them as
``{"error": {"code", "message", "field"}}`` with the status they carry."""

from __future__ import annotations


class DenError(Exception):
    status = 400
    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if code:
            self.code = code


class InvalidInput(DenError):
    status = 400
    code = "invalid"


class NotAuthenticated(DenError):
    status = 401
    code = "not_authenticated"


class PermissionDenied(DenError):
    status = 403
    code = "permission_denied"


class NotFound(DenError):
    status = 404
    code = "not_found"


class AlreadyExists(DenError):
    status = 409
    code = "already_exists"


class Conflict(DenError):
    """The change would leave things in a state den refuses (the last admin gone)."""

    status = 409
    code = "conflict"


class VersionConflict(DenError):
    status = 412
    code = "version_conflict"


class TooLarge(DenError):
    status = 413
    code = "too_large"
