"""Request ids, request figures and the Content-Security-Policy header."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase

from ops.logs import request_id_from, request_id_var

Handler = Callable[[HttpRequest], HttpResponseBase]


class RequestIdMiddleware:
    """Give the request its id (``ops.logs``) and send it back in
    ``X-Request-ID``. First in the chain, so every later line logs it."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        request_id = request_id_from(request.META.get("HTTP_X_REQUEST_ID"))
        request.request_id = request_id  # type: ignore[attr-defined]
        # Cleared when the response is closed (ops.logs): Django logs 4xx and
        # 5xx answers after the middleware chain has returned.
        request_id_var.set(request_id)
        response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response


#: Methods counted by name; any other is counted as "other" (bounded labels).
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_of(request: HttpRequest) -> str:
    """The URL pattern that answered (``api/v1/resources/<path:address>``),
    never the path itself, so that the figures' labels stay few and name
    no user's resources."""
    match = getattr(request, "resolver_match", None)
    if match is not None and match.route:
        return str(match.route)
    if request.path_info.startswith("/" + settings.STATIC_URL.lstrip("/")):
        return "<static>"
    return "<unmatched>"


class RequestMetricsMiddleware:
    """Count each request and time it, by method, route and status
    (``ops.metrics``), and keep a gauge of those in flight."""

    def __init__(self, get_response: Handler) -> None:
        from ops import metrics

        self.metrics = metrics
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        metrics = self.metrics
        method = request.method if request.method in _METHODS else "other"
        started = time.perf_counter()
        metrics.REQUESTS_IN_FLIGHT.inc()
        try:
            response = self.get_response(request)
        finally:
            metrics.REQUESTS_IN_FLIGHT.dec()
        route = route_of(request)
        metrics.REQUEST_DURATION.labels(method, route).observe(time.perf_counter() - started)
        metrics.REQUESTS.labels(method, route, str(response.status_code)).inc()
        return response


class ContentSecurityPolicyMiddleware:
    """``Content-Security-Policy`` (``DEN_CSP``) on every HTML response: den's
    pages load scripts, styles and images from den alone, run no inline
    script or style, and are framed by no one."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response
        self.policy = settings.DEN_CSP

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if (self.policy and "Content-Security-Policy" not in response
                and response.get("Content-Type", "").startswith("text/html")):
            response["Content-Security-Policy"] = self.policy
        return response
