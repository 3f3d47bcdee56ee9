"""Cluster backends behind one interface (:mod:`compute.backends.base`).

``local`` runs the daemon as a process beside the worker (development and
tests), ``ssh`` (existing hosts, :mod:`compute.backends.ssh` on
:mod:`compute.backends.bootstrap`) and ``skypilot`` (clouds, Kubernetes; SkyPilot
itself is imported only by its adapter, inside worker tasks) register here; a
cluster's ``provider`` picks its backend.
:mod:`compute.backends.node_runtime` packs what a daemon needs for a host's own
python3 (the local backend uses it when den is root; hosts without internet can).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from compute.backends.base import (
    BackendError,
    ClusterBackend,
    Launched,
    LaunchSpec,
    LogFn,
    Pending,
    TransientBackendError,
)

__all__ = [
    "BackendError",
    "ClusterBackend",
    "LaunchSpec",
    "Launched",
    "LogFn",
    "Pending",
    "TransientBackendError",
    "backend_name_for",
    "get_backend",
    "register_backend",
]

_BACKENDS: dict[str, type[ClusterBackend]] = {}


def register_backend(backend: type[ClusterBackend]) -> type[ClusterBackend]:
    """Make a backend available under its ``name`` (usable as a class decorator)."""
    _BACKENDS[backend.name] = backend
    return backend


def backend_name_for(config: Mapping[str, Any]) -> str:
    """The backend a cluster config asks for: ``local``, ``ssh`` for existing
    hosts, else ``skypilot`` (a cloud, Kubernetes or ``cheapest``)."""
    provider = config.get("provider") or ("ssh" if config.get("ips") else "local")
    if provider in ("local", "ssh"):
        return str(provider)
    return "skypilot"


def get_backend(name: str) -> ClusterBackend:
    """An instance of the backend called ``name``; BackendError if den has none."""
    _load_builtin()
    backend = _BACKENDS.get(name)
    if backend is None:
        available = ", ".join(sorted(_BACKENDS)) or "none"
        raise BackendError(
            f"This den has no '{name}' backend yet (available: {available}); "
            "use provider 'local' for now."
        )
    return backend()


def _load_builtin() -> None:
    # Imported lazily: backends may import heavy SDKs (SkyPilot) that the web
    # processes never need.
    from compute.backends import local, skypilot, ssh  # noqa: F401
