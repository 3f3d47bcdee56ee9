"""Every API error has one shape: ``{"error": {"code", "message", "field"}}``."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response

from registry.errors import DenError

_DRF_CODES: list[tuple[type[Exception], str]] = [
    (drf.ParseError, "malformed_json"),
    (drf.NotAuthenticated, "not_authenticated"),
    (drf.AuthenticationFailed, "authentication_failed"),
    (drf.PermissionDenied, "permission_denied"),
    (drf.NotFound, "not_found"),
    (drf.MethodNotAllowed, "method_not_allowed"),
    (drf.NotAcceptable, "not_acceptable"),
    (drf.UnsupportedMediaType, "unsupported_media_type"),
    (drf.Throttled, "throttled"),
    (drf.ValidationError, "invalid"),
]


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": field}}


def _first_validation_error(detail: Any, prefix: str = "") -> tuple[str | None, str]:
    """Flatten DRF's nested validation detail to its first field and message."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = None if key == "non_field_errors" else f"{prefix}{key}"
            field, message = _first_validation_error(value, f"{name}." if name else "")
            return field or name, message
    if isinstance(detail, list) and detail:
        return _first_validation_error(detail[0], prefix)
    return None, str(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    headers: dict[str, str] = {}
    if isinstance(exc, DenError):
        status, body = exc.status, error_body(exc.code, exc.message, exc.field)
        if exc.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="den"'
        if getattr(exc, "retry_after", None):
            headers["Retry-After"] = str(exc.retry_after)  # type: ignore[attr-defined]
        return Response(body, status=status, headers=headers)
    if isinstance(exc, RequestDataTooBig):
        return Response(error_body("too_large", "The request body is too large."), status=413)
    if isinstance(exc, Http404):
        exc = drf.NotFound("Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()
    if not isinstance(exc, drf.APIException):
        return None
    code = next((code for cls, code in _DRF_CODES if isinstance(exc, cls)), "error")
    if isinstance(exc, drf.ValidationError):
        field, message = _first_validation_error(exc.detail)
        if field and message.startswith("This field"):
            message = f"{field}: {message}"
    else:
        field, message = None, str(exc.detail)
        if isinstance(exc, drf.ParseError):
            message = f"The request body is not valid JSON: {exc.detail}"
    if isinstance(exc, drf.Throttled) and exc.wait:
        headers["Retry-After"] = str(int(exc.wait))
    if isinstance(exc, drf.NotAuthenticated | drf.AuthenticationFailed):
        headers["WWW-Authenticate"] = 'Bearer realm="den"'
        if isinstance(exc, drf.NotAuthenticated):
            message = "Sign in or send a token: Authorization: Bearer den_..."
    return Response(error_body(code, message, field), status=exc.status_code, headers=headers)


def json_not_found(request: Any, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body("not_found", "There is no such API endpoint."), status=404)


def json_server_error(request: Any) -> JsonResponse:
    return JsonResponse(
        error_body("server_error", "den failed to handle this request; the error is logged."),
        status=500,
    )
