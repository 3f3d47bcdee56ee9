"""Top-level routes. Resource pages (``/<owner>/<name>``) come last, because
their first segment is any username; reserved usernames keep them apart."""

from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers; touches nothing, so it is also the
    benchmarks' baseline for what this stack serves at best."""
    return JsonResponse({"status": "ok"})


urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
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
