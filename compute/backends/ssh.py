"""The ``ssh`` backend: clusters on existing machines, reached over SSH (asyncssh).

Config (DESIGN.md): ``ips`` (the head first), ``ssh_user``, ``ssh_port``
(default 22), ``creds`` (the address of a den secret holding the private key)
and ``server_port`` (the daemons' port, default 32300). The worker reads the
key for the cluster's owner (:mod:`compute.hostcreds`), connects to every host
in parallel, trusting each host key on first use and refusing a changed one,
and runs :mod:`compute.backends.bootstrap` on each: a daemon per host, all
serving HTTPS with one certificate den made for this start, whose fingerprint
(and certificate) the cluster API hands to callers, who pin it.

Two-phase, like every backend: ``begin_up`` connects, installs and starts the
daemons (seconds: the runtime is sent only when the host lacks it) and waits
a few seconds for their health checks; if they are not healthy yet it answers
``Pending`` and ``poll_up`` checks again. A host that does not answer SSH is
waited for (``Pending``, saying which host and why) until the start timeout
fails it with that in its event. A daemon that exits before it answers fails
the start with the end of its log. Once up, each daemon's start-up log is
shipped into the cluster's events (its text in the event's details).

``stop`` stops the daemons and keeps everything else; ``teardown`` also
removes den's files from the hosts (``~/.den``, once no other cluster of the
same user is left there).

Reuse (SkyPilot): every step reaches its hosts through one method,
:meth:`SshBackend.hosts` (``cluster_key``, the start's ``handles``) ->
``[SshHost]``. A backend whose machines and key come from elsewhere subclasses
``SshBackend``, overrides ``hosts`` and drives ``_start(spec, hosts, log)``,
``poll_up``, ``cancel_up``, ``stop``, ``teardown`` and ``status`` unchanged;
host keys are trusted on first use and pinned on the cluster's state as here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from django.conf import settings

from compute import hostcreds
from compute.backends import bootstrap, node_runtime, register_backend
from compute.backends.base import (
    BackendError,
    ClusterBackend,
    Launched,
    LaunchSpec,
    LogFn,
    Pending,
    TransientBackendError,
)
from compute.backends.bootstrap import Connected, DaemonSpec, HostInfo, SshHost
from compute.backends.tls import make_daemon_cert

DEFAULT_SERVER_PORT = 32300
#: How long begin_up waits for the daemons' health before handing over to polls.
_INLINE_WAIT_SECONDS = 8.0
_POLL_SECONDS = 0.5
T = TypeVar("T")


class _Aborted(Exception):
    """This host's work stopped because another host of the cluster failed."""


class _Gate:
    """Holds every host's work at one point until all have reached it, so
    that no daemon starts unless every host got that far (else the start
    would leave daemons behind on the hosts that did)."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.arrived = 0
        self.failed = False
        self.open = asyncio.Event()

    def fail(self) -> None:
        self.failed = True
        self.open.set()

    async def arrive(self) -> None:
        self.arrived += 1
        if self.arrived >= self.count:
            self.open.set()
        await self.open.wait()
        if self.failed:
            raise _Aborted()


def _first_error(results: Sequence[Any]) -> BaseException | None:
    """The error to report: a host's permanent one, else a transient one,
    else any (never "aborted because another host failed")."""
    errors = [r for r in results if isinstance(r, BaseException)]
    for wanted in (lambda e: isinstance(e, BackendError)
                   and not isinstance(e, TransientBackendError),
                   lambda e: isinstance(e, TransientBackendError),
                   lambda e: not isinstance(e, _Aborted)):
        for error in errors:
            if wanted(error):
                return error
    return errors[0] if errors else None


def _gather(items: Sequence[T], work: Callable[[T], Awaitable[Any]]) -> list[Any]:
    """Run ``work`` on every item concurrently; once every one has finished,
    raise the error that matters most (``_first_error``), if any."""

    async def main() -> list[Any]:
        return list(await asyncio.gather(*(work(item) for item in items),
                                         return_exceptions=True))

    results = asyncio.run(main())
    error = _first_error(results)
    if error is not None:
        raise error
    return results


def _each_host(cluster_key: str, hosts: Sequence[SshHost],
               work: Callable[[SshHost, Connected, HostInfo], Awaitable[T]], *,
               gate: _Gate | None = None, keep: list[Any] | None = None) -> list[T]:
    """Connect to every host at once, inspect it and run ``work`` on it; the
    error that matters most is raised once all have finished. Host keys seen
    for the first time are recorded (here, outside the event loop: the
    database is sync). A host that fails opens ``gate`` for the others, who
    then stop there; ``keep`` receives the results of the hosts that
    finished, even when another failed (what to undo)."""
    seen: dict[str, tuple[SshHost, str]] = {}

    async def one(host: SshHost) -> T:
        try:
            connected = await bootstrap.connect(host)
        except BaseException:
            if gate is not None:
                gate.fail()
            raise
        if connected.first_use and connected.host_key:
            seen[host.host] = (host, connected.host_key)
        try:
            info = await bootstrap.inspect_host(connected.conn, host.label)
            result = await work(host, connected, info)
            if keep is not None:
                keep.append(result)
            return result
        except BaseException as exc:
            if gate is not None:
                gate.fail()
            if isinstance(exc, BackendError):
                raise _on(host, exc) from None
            raise
        finally:
            connected.conn.close()
            await connected.conn.wait_closed()

    try:
        return _gather(hosts, one)
    finally:
        for host, key in seen.values():
            hostcreds.record_host_key(cluster_key, host, key)


def _on(host: SshHost, exc: BackendError) -> BackendError:
    """``exc`` with the host named, if its message does not name it."""
    if host.host in str(exc):
        return exc
    kind = type(exc) if isinstance(exc, TransientBackendError) else BackendError
    return kind(f"On {host.label}: {exc}", **{**exc.details, "host": host.label})


@register_backend
class SshBackend(ClusterBackend):
    """Daemons on existing hosts, one per host, started and stopped over SSH."""

    name = "ssh"
    keeps_machines_on_stop = True

    # -- up -----------------------------------------------------------------------
    def hosts(self, cluster_key: str,
              handles: Mapping[str, Any] | None = None) -> list[SshHost]:
        """The hosts of the cluster, the head first, each with the private key
        to log in with and the host key den trusts for it (None: not seen yet).

        Every step of this backend reaches its hosts through this one method.
        Here they come from the cluster's config and its owner's ``creds``
        secret (:func:`compute.hostcreds.cluster_hosts`), or, for a cluster
        being released after its resource was deleted, from the start's
        ``handles``. A backend whose machines come from elsewhere (SkyPilot:
        IPs and a key it made) subclasses this backend and overrides only
        this; ``handles`` are the ones the current start returned (None for
        ``begin_up``). Host keys seen for the first time are still recorded
        with :func:`compute.hostcreds.record_host_key` on the cluster's state.
        """
        return hostcreds.cluster_hosts(cluster_key, handles)

    def begin_up(self, spec: LaunchSpec, log: LogFn) -> Launched | Pending:
        hosts = self.hosts(spec.cluster_key)
        try:
            return self._start(spec, hosts, log)
        except TransientBackendError as exc:
            if "host" not in exc.details:
                raise
            return Pending(handles={"phase": "connect", "ips": [h.host for h in hosts]},
                           retry_in=2.0, waiting_for=str(exc))

    def _start(self, spec: LaunchSpec, hosts: list[SshHost], log: LogFn) -> Launched | Pending:
        port = int(spec.config.get("server_port") or DEFAULT_SERVER_PORT)
        cert = make_daemon_cert(spec.address, [h.host for h in hosts])
        cache = bootstrap.bootstrap_cache_dir(settings.DEN_HOME)
        daemon = DaemonSpec(
            cluster_key=spec.cluster_key, address=spec.address, den_url=spec.den_url,
            token=spec.token, port=port, cert=cert, den_auth=spec.den_auth,
            autostop_mins=spec.autostop_mins, heartbeat_seconds=spec.heartbeat_seconds,
            auth_cache_seconds=spec.auth_cache_seconds)

        builds: dict[str, asyncio.Task[node_runtime.RuntimeArchive]] = {}

        async def runtime_for(python: node_runtime.Interpreter) -> node_runtime.RuntimeArchive:
            # Hosts alike (the usual cluster) share one build.
            key = repr((python.version, sorted(python.markers.items()), python.ext_suffixes))
            if key not in builds:
                builds[key] = asyncio.ensure_future(
                    asyncio.to_thread(node_runtime.build_runtime, python, cache))
            return await builds[key]

        async def start_one(host: SshHost, connected: Connected,
                            info: HostInfo) -> dict[str, Any]:
            archive = await runtime_for(info.python)
            began = time.monotonic()
            python, sent = await bootstrap.send_runtime(connected.conn, info, archive)
            took = time.monotonic() - began
            await gate.arrive()  # every host is ready: only now start daemons
            started = await bootstrap.start_node(connected.conn, info, python, daemon)
            return {"host": host.host, "ssh_port": host.port, "host_key": connected.host_key,
                    "url": bootstrap.node_url(host.host, port, tls=True),
                    "tls_fingerprint": cert.fingerprint, "python": info.python.path,
                    "runtime": {"sent": sent, "seconds": round(took, 2),
                                "python": info.python.version_text,
                                **node_runtime.describe(archive)},
                    **started}

        gate = _Gate(len(hosts))
        done: list[dict[str, Any]] = []
        try:
            nodes = _each_host(spec.cluster_key, hosts, start_one, gate=gate, keep=done)
        except BaseException:
            if done:  # daemons started on some hosts while another failed: stop them
                with contextlib.suppress(Exception):
                    self.cancel_up(spec.cluster_key, {"nodes": done}, log)
            raise
        for node in nodes:
            runtime = node.pop("runtime")
            if runtime["sent"]:
                log("runtime.sent", f"Sent den's node runtime to {node['host']} and installed "
                    f"it for Python {runtime['python']} ({runtime['seconds']:.1f} s).",
                    host=node["host"], **{k: v for k, v in runtime.items() if k != "sent"})
            log("daemon.started", f"Started the node daemon on {node['host']} "
                f"({node['supervisor']}).", host=node["host"], pid=node["pid"],
                supervisor=node["supervisor"])
        handles: dict[str, Any] = {
            "phase": "health", "ips": [h.host for h in hosts], "nodes": nodes,
            "tls_cert": cert.cert_pem, "tls_fingerprint": cert.fingerprint,
            # Enough to reach the hosts again once the resource is deleted
            # (its release): no secret here, only where the secret is.
            "ssh_user": hosts[0].user, "creds": spec.config.get("creds"),
            "owner_id": hostcreds.owner_id(spec.cluster_key),
        }
        deadline = time.monotonic() + _INLINE_WAIT_SECONDS
        while True:
            result = self._check(spec, handles, log)
            if isinstance(result, Launched) or time.monotonic() >= deadline:
                return result
            time.sleep(0.1)

    def poll_up(self, spec: LaunchSpec, handles: Mapping[str, Any],
                log: LogFn) -> Launched | Pending:
        if handles.get("phase") != "health":
            return self.begin_up(spec, log)
        return self._check(spec, handles, log)

    def _check(self, spec: LaunchSpec, handles: Mapping[str, Any],
               log: LogFn) -> Launched | Pending:
        """Launched once every daemon this start spawned answers with its own
        pid; BackendError (with its log) if one exited."""
        nodes = list(handles["nodes"])
        tls = (str(handles["tls_cert"]), str(handles["tls_fingerprint"]))

        async def answers(node: Mapping[str, Any]) -> bool:
            seen = await bootstrap.health(str(node["url"]), tls)
            return bool(seen and seen.get("pid") == node["pid"])

        healthy = _gather(nodes, answers)
        if all(healthy):
            self._ship_logs(spec.cluster_key, handles, log, kind="daemon.log",
                            what="start-up log")
            return Launched(daemon_url=str(nodes[0]["url"]), handles=dict(handles))
        waiting = [n for n, ok in zip(nodes, healthy, strict=True) if not ok]
        self._fail_if_dead(spec.cluster_key, handles, waiting)
        names = ", ".join(str(n["host"]) for n in waiting)
        return Pending(handles=dict(handles), retry_in=_POLL_SECONDS,
                       waiting_for=f"the node daemon on {names} to answer its health check")

    def _fail_if_dead(self, cluster_key: str, handles: Mapping[str, Any],
                      nodes: list[Mapping[str, Any]]) -> None:
        by_host = {str(n["host"]): n for n in nodes}
        hosts = [h for h in self.hosts(cluster_key, handles) if h.host in by_host]

        async def check(host: SshHost, connected: Connected, info: HostInfo) -> None:
            node = by_host[host.host]
            if await bootstrap.pid_alive(connected.conn, info, cluster_key, int(node["pid"])):
                return
            tail = await bootstrap.read_log(connected.conn, info, cluster_key,
                                            int(node.get("log_offset") or 0), 3000)
            raise BackendError(f"The node daemon on {host.label} exited before it answered; "
                               "the end of its log is in this event's details.",
                               host=host.label, log_tail=tail)

        _each_host(cluster_key, hosts, check)

    def _ship_logs(self, cluster_key: str, handles: Mapping[str, Any], log: LogFn, *,
                   kind: str, what: str) -> None:
        """One event per host with its daemon's log since this start (the text
        in the event's details, which only the cluster's managers see). Best
        effort: the cluster is up whether or not its logs could be fetched."""
        offsets = {str(n["host"]): int(n.get("log_offset") or 0)
                   for n in handles.get("nodes") or ()}

        async def fetch(host: SshHost, connected: Connected, info: HostInfo) -> str:
            return await bootstrap.read_log(connected.conn, info, cluster_key,
                                            offsets.get(host.host, 0))

        try:
            hosts = [h for h in self.hosts(cluster_key, handles) if h.host in offsets]
            logs = _each_host(cluster_key, hosts, fetch)
        except BackendError:
            return
        for host, text in zip(hosts, logs, strict=True):
            if text:
                log(kind, f"The node daemon's {what} on {host.label} (in this event's "
                    "details).", host=host.label, log=text)

    # -- down ---------------------------------------------------------------------
    def _on_hosts(self, cluster_key: str, handles: Mapping[str, Any],
                  work: Callable[[SshHost, Connected, HostInfo], Awaitable[T]]
                  ) -> list[tuple[SshHost, T]]:
        hosts = self.hosts(cluster_key, handles)
        return list(zip(hosts, _each_host(cluster_key, hosts, work), strict=True))

    def cancel_up(self, cluster_key: str, handles: Mapping[str, Any], log: LogFn) -> None:
        """Stop only the daemons this start spawned (by their pids)."""
        pids = {str(n.get("host")): n.get("pid") for n in handles.get("nodes") or ()}
        if not pids:
            return

        async def work(host: SshHost, connected: Connected, info: HostInfo) -> None:
            pid = pids.get(host.host)
            if pid:
                await bootstrap.stop_node(connected.conn, info, cluster_key, int(pid))

        self._on_hosts(cluster_key, handles, work)

    def stop(self, cluster_key: str, handles: Mapping[str, Any], log: LogFn) -> None:
        offsets = {str(n.get("host")): int(n.get("log_offset") or 0)
                   for n in handles.get("nodes") or ()}

        async def work(host: SshHost, connected: Connected, info: HostInfo) -> tuple[str, str]:
            text = ""
            if host.host in offsets:
                text = await bootstrap.read_log(connected.conn, info, cluster_key,
                                                offsets[host.host])
            return await bootstrap.stop_node(connected.conn, info, cluster_key), text

        for host, (how, text) in self._on_hosts(cluster_key, handles, work):
            if text:
                log("daemon.log", f"The node daemon's log on {host.label} (in this event's "
                    "details).", host=host.label, log=text[-16_000:])
            if how != "none":
                log("daemon.stopped", f"The node daemon on {host.label} "
                    f"{'was killed (it did not stop in time)' if how == 'killed' else 'stopped'}.",
                    host=host.label)

    def teardown(self, cluster_key: str, handles: Mapping[str, Any], log: LogFn) -> None:
        async def work(host: SshHost, connected: Connected, info: HostInfo) -> bool:
            return await bootstrap.remove_node(connected.conn, info, cluster_key)

        for host, removed in self._on_hosts(cluster_key, handles, work):
            if removed:
                log("cluster.cleaned", f"Stopped the daemon and removed den's files from "
                    f"{host.label}.", host=host.label)

    def status(self, cluster_key: str, handles: Mapping[str, Any]) -> str:
        nodes = list(handles.get("nodes") or [])
        if not nodes or not handles.get("tls_cert"):
            return "stopped"
        tls = (str(handles["tls_cert"]), str(handles["tls_fingerprint"]))

        async def answers(node: Mapping[str, Any]) -> bool:
            seen = await bootstrap.health(str(node["url"]), tls)
            return bool(seen and seen.get("pid") == node.get("pid"))

        return "up" if all(_gather(nodes, answers)) else "unreachable"
