"""Operators' endpoints: ``/livez``, ``/readyz`` and ``/metrics``.

Plain Django views, outside DRF and the access layer: they show no user's
data. ``/metrics`` is for Prometheus: it answers a scrape from an address in
``DEN_METRICS_ALLOW`` (loopback by default), or one that sends
``Authorization: Bearer <DEN_METRICS_TOKEN>``; anyone else gets 403.
"""

from __future__ import annotations

import hmac
import ipaddress

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from ops import health


@require_safe
def livez(request: HttpRequest) -> JsonResponse:
    """Liveness: this process answers. Touches nothing (a database or Redis
    outage must not make an orchestrator restart healthy web servers)."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: 200 when the database, the broker and the caches answer;
    503 naming each part that did not."""
    ready, checks = health.readiness()
    if ready:
        return JsonResponse({"status": "ready", "checks": checks})
    down = [name for name, result in checks.items() if not result["ok"]]
    message = (f"den is not ready: the {' and the '.join(down)} did not answer "
               "(den's log says why).")
    return JsonResponse({"status": "unavailable", "message": message, "checks": checks},
                        status=503)


def _client_address(request: HttpRequest) -> str | None:
    """The scraper's address. With no proxy in front (DEN_NUM_PROXIES=0), the
    socket's, and None when the request came through a proxy anyway (it
    carries X-Forwarded-For): a proxy on loopback must not make the whole
    internet a loopback client. Behind N proxies, the address the farthest
    trusted one saw (as DRF's throttles count it), or the socket's for a
    request that came past them."""
    proxies = settings.DEN_NUM_PROXIES
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    if proxies == 0:
        return None if forwarded else request.META.get("REMOTE_ADDR")
    if not forwarded:  # straight to den, past the proxies
        return request.META.get("REMOTE_ADDR")
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    return hops[-min(proxies, len(hops))] if hops else None


def _allowed(address: str | None) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in settings.DEN_METRICS_NETWORKS)


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message, "field": None}},
                        status=status)


@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    """The Prometheus text exposition of ``ops.metrics``."""
    token = settings.DEN_METRICS_TOKEN
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header:
        scheme, _, given = header.partition(" ")
        if not (token and scheme.lower() == "bearer"
                and hmac.compare_digest(given.strip().encode(), token.encode())):
            return _error(401, "authentication_failed",
                          "This is not den's metrics token; send the value of "
                          "DEN_METRICS_TOKEN as a bearer token.")
    elif not _allowed(_client_address(request)):
        return _error(403, "permission_denied",
                      "Metrics are served to the addresses in DEN_METRICS_ALLOW; scrape from "
                      "one of them, or send DEN_METRICS_TOKEN as a bearer token.")
    from ops import metrics as figures

    body, content_type = figures.scrape()
    return HttpResponse(body, content_type=content_type)
