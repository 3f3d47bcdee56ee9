"""The one interface every cluster backend implements.

A backend brings a cluster's node daemon up, stops it, tears the cluster down
and reports what it sees. Backends are the only code that starts processes,
opens SSH connections or calls SkyPilot; services call them from Celery tasks
and record what they return (``handles``) on the cluster's state.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

#: ``log(kind, message, **data)``: backends report progress through this, and
#: services turn each report into a cluster event the UI shows.
LogFn = Callable[..., None]


class BackendError(Exception):
    """A failure that retrying will not fix (bad config, the daemon crashed on start).

    The message is for everyone who may see the cluster's events, so it holds
    no server paths, PIDs or log lines; ``details`` (a daemon's log tail, the
    python it tried) go into the event's ``data``, which only the cluster's
    managers see.
    """

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


class TransientBackendError(BackendError):
    """A failure worth retrying with backoff (a port race, a host not answering yet)."""


@dataclass(frozen=True)
class LaunchSpec:
    """Everything a backend needs to start a cluster's daemon.

    ``token`` is the cluster's own den token: the daemon sends heartbeats with
    it. Backends hand it over on the daemon's stdin or in a 0600 file it
    deletes (``--cluster-token-file``), never on its command line or in its
    environment, which ``/proc`` shows.
    """

    cluster_key: str
    address: str
    config: Mapping[str, Any]
    token: str
    den_url: str
    den_auth: bool = True
    autostop_mins: int = -1
    heartbeat_seconds: float = 30.0
    auth_cache_seconds: float = 10.0
    start_timeout: float = 60.0


@dataclass(frozen=True)
class Launched:
    """A running daemon: where callers reach it and how the backend finds it again."""

    daemon_url: str
    handles: dict[str, Any] = field(default_factory=dict)


class ClusterBackend(abc.ABC):
    """Brings clusters up and down. Every method must be safe to call again
    (a retried task may repeat it): ``stop`` of a stopped cluster does nothing."""

    name: ClassVar[str]

    @abc.abstractmethod
    def up(self, spec: LaunchSpec, log: LogFn) -> Launched:
        """Start the daemon and return once it answers ``GET /health``."""

    @abc.abstractmethod
    def stop(self, cluster_key: str, handles: Mapping[str, Any], log: LogFn) -> None:
        """Stop the daemon (and the machines, where they can be started again)."""

    @abc.abstractmethod
    def teardown(self, cluster_key: str, handles: Mapping[str, Any], log: LogFn) -> None:
        """Stop the daemon and release everything the cluster holds."""

    @abc.abstractmethod
    def status(self, cluster_key: str, handles: Mapping[str, Any]) -> str:
        """What the backend sees: ``up``, ``unreachable`` or ``stopped``."""
