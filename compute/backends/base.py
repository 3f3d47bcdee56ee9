"""The one interface every cluster backend implements.

A backend brings a cluster's node daemons up, stops them, tears the cluster
down and reports what it sees. Backends are the only code that starts
processes, opens SSH connections or calls SkyPilot; services call them from
Celery tasks and record what they return (``handles``) on the cluster's state.

Bringing a cluster up is **two-phase**, so that no Celery worker blocks for
minutes: ``begin_up`` starts the work and returns within seconds, either
``Launched`` (done) or ``Pending`` (handles to poll with); a poll task then
calls ``poll_up`` with those handles every ``Pending.retry_in`` seconds until
it returns ``Launched`` or raises. Services fence every call by the request's
sequence number, so a backend never needs to know about newer requests; the
whole start is bounded by ``LaunchSpec.start_timeout`` (``DEN_CLUSTER_START_TIMEOUT``),
past which the service fails it and calls ``cancel_up`` with the last handles
it saw.
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
    """Everything a backend needs to start a cluster's daemons.

    ``token`` is the cluster's own den token: the daemon sends heartbeats with
    it. Backends hand it over on the daemon's stdin or in a 0600 file it
    deletes (``--cluster-token-file``), never on its command line or in its
    environment, which ``/proc`` shows. Fields added later have defaults, so
    that every backend keeps working.
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
class Pending:
    """Backend work still under way: poll again in ``retry_in`` seconds with ``handles``.

    ``handles`` are JSON (they travel in a task message and are kept on the
    cluster's state, so that a stop or a timeout can undo partial work).
    """

    handles: dict[str, Any]
    retry_in: float = 2.0
    #: What the start waits for, naming the host ("10.0.0.5 to answer on port
    #: 22"): said in the ``failed`` event if the start times out meanwhile.
    waiting_for: str = ""


@dataclass(frozen=True)
class Launched:
    """Running daemons: where callers reach the head and how the backend finds them again.

    ``handles`` is JSON kept on the cluster's state and passed back to ``stop``,
    ``teardown`` and ``status``. A backend with several hosts lists them as
    ``handles["nodes"] = [{"url": ..., ...}, ...]`` (the head first, its URL
    also ``daemon_url``); whatever a caller needs to reach a node (a TLS
    fingerprint) goes in its entry, and the cluster API hands it to callers.
    """

    daemon_url: str
    handles: dict[str, Any] = field(default_factory=dict)


class ClusterBackend(abc.ABC):
    """Brings clusters up and down. Every method must be safe to call again
    (a redelivered task may repeat it): ``stop`` of a stopped cluster does nothing,
    and a ``poll_up`` repeated with the same handles does no work twice."""

    name: ClassVar[str]
    #: Whether ``stop`` keeps machines that ``up`` can start again (ssh: yes,
    #: the daemons only; local: there is no machine to keep).
    keeps_machines_on_stop: ClassVar[bool] = True

    def start_timeout(self) -> float | None:
        """How long a start may take on this backend, if not ``DEN_CLUSTER_START_TIMEOUT``
        (cloud machines take minutes)."""
        return None

    def stop_tears_down(self, config: Mapping[str, Any]) -> bool:
        """Whether ``stop`` of a cluster with this config releases its machines
        (infrastructure that cannot stop them): the cluster then ends
        ``terminated``, and the UI says so before anyone stops it."""
        return False

    @abc.abstractmethod
    def begin_up(self, spec: LaunchSpec, log: LogFn) -> Launched | Pending:
        """Start bringing the cluster up; return quickly (seconds, never minutes)."""

    @abc.abstractmethod
    def poll_up(self, spec: LaunchSpec, handles: Mapping[str, Any],
                log: LogFn) -> Launched | Pending:
        """Continue a start from ``handles``; idempotent (a redelivered poll may repeat it).

        Raise ``BackendError`` when the start cannot succeed, and
        ``TransientBackendError`` for a hiccup the task should retry.
        """

    def cancel_up(self, cluster_key: str, handles: Mapping[str, Any], log: LogFn) -> None:
        """Undo the partial work of one start, named by its last ``handles``: a
        start that was replaced by a newer request, timed out or failed.

        Only what those handles name: a newer start of the same cluster may be
        running beside it. The default calls ``stop``; override it where
        ``stop`` would also reach a newer start's daemons.
        """
        self.stop(cluster_key, handles, log)

    @abc.abstractmethod
    def stop(self, cluster_key: str, handles: Mapping[str, Any], log: LogFn) -> None:
        """Stop the daemons (and, where they cannot be kept, the machines)."""

    @abc.abstractmethod
    def teardown(self, cluster_key: str, handles: Mapping[str, Any], log: LogFn) -> None:
        """Stop the daemons and release everything the cluster holds (den's files too)."""

    @abc.abstractmethod
    def status(self, cluster_key: str, handles: Mapping[str, Any]) -> str:
        """What the backend sees: ``up``, ``unreachable`` or ``stopped``.

        Quick (a few seconds at most): den asks it when a caller reports that
        it could not reach the daemon.
        """
