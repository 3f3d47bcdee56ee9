"""Walks the URL conf: every view must go through den's access layer.

API views derive from ``DenAPIView`` (resource views from ``ResourceAPIView``,
whose ``resource(level)`` calls ``registry.access``); the Runhouse-compatible
views under ``rh/`` from ``RunhouseAPIView`` (resource views from
``RunhouseResourceView``, likewise); page views derive from the frontend's
``DenPageView``. No view module touches a model manager
directly: reads go through selectors and the access layer, writes through
services.
"""

from __future__ import annotations

import importlib
import inspect
import re

from django.urls import URLPattern, URLResolver, get_resolver

from registry.api.base import DenAPIView, ResourceAPIView

# Views that are not ours: the staff-only Django admin, the schema and auth views.
FOREIGN_VIEW_MODULES = ("django.contrib.admin", "drf_spectacular", "django.contrib.auth")
# Plain views that show no user's data: health, readiness, Prometheus figures.
PLAIN_VIEWS = {"den.urls.healthz", "ops.views.livez", "ops.views.readyz", "ops.views.metrics"}
RESOURCE_ROUTE = re.compile(r"\(\?P<address>")
RH_RESOURCE_ROUTE = re.compile(r"\(\?P<uri>")


def _walk(patterns, prefix=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern.callback


def _view_class(callback):
    return getattr(callback, "view_class", None) or getattr(callback, "cls", None)


def _page_base():
    try:
        return importlib.import_module("frontend.views.base").DenPageView
    except ImportError:
        return None


def test_every_view_goes_through_the_access_layer():
    page_base = _page_base()
    offenders = []
    for route, callback in _walk(get_resolver().url_patterns):
        module = callback.__module__
        if route.startswith("admin/") or module.startswith(FOREIGN_VIEW_MODULES):
            continue
        if f"{module}.{callback.__name__}" in PLAIN_VIEWS:
            continue
        cls = _view_class(callback)
        if cls is None:
            offenders.append(f"{route}: function view {module}.{callback.__name__}")
            continue
        if route.startswith("rh"):
            from rhcompat.base import RunhouseAPIView, RunhouseResourceView

            if not issubclass(cls, RunhouseAPIView):
                offenders.append(f"{route}: {cls.__name__} is not a RunhouseAPIView")
            elif RH_RESOURCE_ROUTE.search(route) and not issubclass(cls, RunhouseResourceView):
                offenders.append(f"{route}: {cls.__name__} addresses a resource without "
                                 "RunhouseResourceView")
        elif route.startswith("api/"):
            if not issubclass(cls, DenAPIView):
                offenders.append(f"{route}: {cls.__name__} is not a DenAPIView")
            elif RESOURCE_ROUTE.search(route) and not issubclass(cls, ResourceAPIView):
                offenders.append(f"{route}: {cls.__name__} addresses a resource without ResourceAPIView")
        elif page_base is None or not issubclass(cls, page_base):
            offenders.append(f"{route}: {cls.__name__} is not a DenPageView")
    assert not offenders, "\n".join(offenders)


def test_no_view_module_reaches_models_directly():
    modules = set()
    for _, callback in _walk(get_resolver().url_patterns):
        cls = _view_class(callback)
        module = (cls or callback).__module__
        if module.startswith(("registry", "frontend", "compute", "rhcompat")):
            modules.add(module)
    offenders = []
    for name in sorted(modules):
        source = inspect.getsource(importlib.import_module(name))
        for number, line in enumerate(source.splitlines(), 1):
            if re.search(r"\.objects\b", line):
                offenders.append(f"{name}:{number}: {line.strip()}")
    assert not offenders, "views must use selectors, services and registry.access:\n" + "\n".join(
        offenders
    )


def test_every_top_level_route_is_a_reserved_username():
    """A user named like a top-level route would have pages nobody reaches
    (``/metrics`` is Prometheus's, not the namespace of a user "metrics")."""
    from registry.models.users import RESERVED_USERNAMES

    firsts = set()
    for route, _ in _walk(get_resolver().url_patterns):
        first = route.lstrip("^").split("/", 1)[0]
        if first and not first.startswith(("<", "(")):
            firsts.add(first.rstrip("$"))
    missing = sorted(name for name in firsts if name.lower() not in RESERVED_USERNAMES)
    assert not missing, f"top-level routes a user could be named after: {missing}"
