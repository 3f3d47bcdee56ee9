"""Top-level routes. Resource pages (``/<owner>/<name>``) come last, because
their first segment is any username; reserved usernames keep them apart."""

import math
from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from ops import views as ops_views
from registry.throttling import sign_in_wait


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers; touches nothing, so it is also the
    benchmarks' baseline for what this stack serves at best."""
    return JsonResponse({"status": "ok"})


def admin_login(request: HttpRequest, extra_context: Any = None) -> HttpResponse:
    """Django admin's sign-in page, under the same rate limit and counter as
    den's own sign-ins (API, web page, invitations): it is no way around them."""
    if request.method == "POST":
        wait = sign_in_wait(request)
        if wait is not None:
            response = HttpResponse(
                "Too many sign-in attempts; wait a minute and try again.\n",
                status=429, content_type="text/plain; charset=utf-8")
            response["Retry-After"] = str(math.ceil(wait))
            return response
    return admin.site.login(request, extra_context)


urlpatterns = [
    path("healthz", healthz, name="healthz"),
    # Operators' endpoints (ops/): liveness, readiness, Prometheus figures.
    path("livez", ops_views.livez, name="livez"),
    path("readyz", ops_views.readyz, name="readyz"),
    path("metrics", ops_views.metrics, name="metrics"),
    path("admin/login/", admin_login),  # before the admin's own login route
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # Swagger UI with its script served apart (?script): no inline code, as
    # den's Content-Security-Policy requires.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(
        url_name="api-schema", template_name="frontend/swagger_ui.html"), name="api-docs"),
    path("api/v1/", include("registry.api.urls")),  # the busiest routes first
    path("api/v1/", include("compute.api.urls")),  # .../-/cluster: no registry route matches
    # Runhouse clients (API_SERVER_URL=<den>/rh): before the UI, whose /<owner>/<name>
    # would catch /rh/user and redirect it to the sign-in page.
    path("rh", include("rhcompat.urls_root")),
    path("rh/", include("rhcompat.urls")),
    path("", include("frontend.urls")),
]

handler404 = "den.views.not_found"
handler500 = "den.views.server_error"
