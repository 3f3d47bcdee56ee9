"""Project-wide middleware."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase
from django.utils.cache import patch_cache_control


class PrivateCacheControlMiddleware:
    """``Cache-Control: private, no-store`` on every API response and on
    every response to a signed-in user or a bearer token.

    What den answers depends on who asks (an access level, a private
    config, a token shown once), so no shared cache (a proxy, a CDN) may keep
    it, and no browser should write it to disk. Static files are served
    before this runs (WhiteNoise) and stay cacheable.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if "no-store" in response.get("Cache-Control", ""):
            return response
        user = getattr(request, "user", None)
        if (request.path_info.startswith("/api/")
                or "HTTP_AUTHORIZATION" in request.META
                or (user is not None and user.is_authenticated)):
            patch_cache_control(response, private=True, no_store=True)
        return response
