"""Error pages: JSON under /api/ and /rh/ (runhouse clients), HTML elsewhere."""

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.views.defaults import page_not_found
from django.views.defaults import server_error as html_server_error

from registry.api.errors import json_not_found, json_server_error

JSON_PREFIXES = ("/api/", "/rh/")


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith(JSON_PREFIXES):
        return json_not_found(request, exception)
    return page_not_found(request, exception or Exception())


def server_error(request: HttpRequest, *args: Any) -> HttpResponse:
    if request.path.startswith(JSON_PREFIXES):
        return json_server_error(request)
    return html_server_error(request)
