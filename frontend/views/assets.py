"""den serves its own stylesheet and scripts (htmx included), so the UI works
offline and behind proxies without a CDN or a separate static file server."""

from __future__ import annotations

from pathlib import Path

from django.http import HttpRequest, HttpResponse
from django.views.static import serve

from frontend.views.base import DenPageView

STATIC_ROOT = Path(__file__).resolve().parent.parent / "static"


class StaticAssetView(DenPageView):
    """Files under ``frontend/static`` only; ``serve`` refuses paths outside it
    and answers conditional requests with 304."""

    allow_anonymous = True

    def get(self, request: HttpRequest, path: str) -> HttpResponse:
        response = serve(request, path, document_root=str(STATIC_ROOT))
        response["Cache-Control"] = "public, max-age=3600"
        return response
