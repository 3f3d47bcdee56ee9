"""The ``local`` backend: the node daemon as a process beside the Celery worker.

For development, tests and single-machine dens. Each cluster gets a folder
``DEN_HOME/clusters/<key>/`` holding the daemon's workdir, its log and its
pidfile. The daemon runs detached in its own session, so it outlives the
worker process that started it, and is stopped by PID, after checking that the
PID still belongs to *this* cluster's daemon (PIDs are reused).

The daemon gets a minimal environment: user code runs in its env workers, and
must not find the server's ``DATABASE_URL`` or keys there. Its cluster token
travels in ``DEN_NODE_CLUSTER_TOKEN``, not on the command line, which every
user of the host can read in ``/proc``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
from django.conf import settings

from compute.backends import register_backend
from compute.backends.base import (
    BackendError,
    ClusterBackend,
    Launched,
    LaunchSpec,
    LogFn,
    TransientBackendError,
)

#: Variables a daemon inherits from the worker; everything else stays behind.
_PASSED_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TMPDIR", "TZ",
               "VIRTUAL_ENV", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
_STOP_GRACE_SECONDS = 10.0


def cluster_dir(cluster_key: str) -> Path:
    return Path(settings.DEN_HOME) / "clusters" / cluster_key


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _daemon_env(token: str) -> dict[str, str]:
    env = {name: os.environ[name] for name in _PASSED_ENV if name in os.environ}
    # The daemon must import the same den as the worker, installed or not.
    source_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = source_root
    env["PYTHONUNBUFFERED"] = "1"
    env["DEN_NODE_CLUSTER_TOKEN"] = token
    return env


def _cmdline(pid: int) -> list[str]:
    """A process's arguments, or [] if it is gone (or a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        if Path("/proc/self").exists():
            return []
        # No /proc (macOS): ask ps.
        out = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True,
                             text=True, check=False).stdout.strip()
        return out.split() if out else []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _is_cluster_daemon(pid: int, workdir: Path) -> bool:
    """True if ``pid`` is a den node daemon serving ``workdir`` (this cluster's)."""
    args = _cmdline(pid)
    return "den.node" in args and str(workdir) in args


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@register_backend
class LocalBackend(ClusterBackend):
    """Daemons as detached local processes, health-checked over HTTP."""

    name = "local"

    def up(self, spec: LaunchSpec, log: LogFn) -> Launched:
        home = cluster_dir(spec.cluster_key)
        workdir = home / "node"
        workdir.mkdir(parents=True, exist_ok=True)
        # A daemon left by an interrupted start (a worker that died mid-task)
        # holds an old token and maybe the port: stop it first.
        self._stop_pid(home, workdir, log)
        chosen = spec.config.get("server_port")
        port = int(chosen) if chosen else _free_port()
        command = [
            sys.executable, "-m", "den.node",
            "--host", "127.0.0.1", "--port", str(port),
            "--den-url", spec.den_url,
            "--cluster-address", spec.address,
            "--workdir", str(workdir),
            "--autostop-mins", str(spec.autostop_mins),
            "--heartbeat-seconds", str(spec.heartbeat_seconds),
            "--auth-cache-seconds", str(spec.auth_cache_seconds),
        ]
        if not spec.den_auth:
            command.append("--no-den-auth")
        log_path = home / "daemon.log"
        with open(log_path, "ab") as log_file:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                env=_daemon_env(spec.token), cwd=str(home), start_new_session=True,
            )
        # Reap it when it exits, so it never lingers as a zombie of this worker.
        threading.Thread(target=process.wait, daemon=True).start()
        (home / "daemon.pid").write_text(str(process.pid))
        url = f"http://127.0.0.1:{port}"
        log("daemon.started", f"Started the node daemon (PID {process.pid}) on port {port}.",
            pid=process.pid, port=port)
        self._wait_healthy(url, process, spec.start_timeout, log_path, port_chosen=bool(chosen))
        return Launched(daemon_url=url, handles={"pid": process.pid, "port": port,
                                                 "log": str(log_path)})

    def _wait_healthy(self, url: str, process: subprocess.Popen[bytes], timeout: float,
                      log_path: Path, *, port_chosen: bool) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    tail = _log_tail(log_path)
                    message = f"The node daemon exited with code {process.returncode} " \
                              f"before it answered:\n{tail}"
                    if "address already in use" in tail.lower() and not port_chosen:
                        raise TransientBackendError(message)  # lost a race for a free port
                    raise BackendError(message)
                try:
                    answer = client.get(url + "/health")
                    # Only our own process counts: another daemon may already
                    # hold the port, and ours is about to fail to bind it.
                    if answer.status_code == 200 and answer.json().get("pid") == process.pid:
                        return
                except (httpx.HTTPError, ValueError):
                    pass
                time.sleep(0.1)
        self._terminate(process.pid, log=None)
        raise TransientBackendError(
            f"The node daemon did not answer {url}/health within {timeout:.0f} s; "
            f"its log ends:\n{_log_tail(log_path)}"
        )

    def stop(self, cluster_key: str, handles: Mapping[str, Any], log: LogFn) -> None:
        home = cluster_dir(cluster_key)
        self._stop_pid(home, home / "node", log, handles.get("pid"))

    def teardown(self, cluster_key: str, handles: Mapping[str, Any], log: LogFn) -> None:
        self.stop(cluster_key, handles, log)
        home = cluster_dir(cluster_key)
        if home.exists():
            shutil.rmtree(home, ignore_errors=True)
            log("cluster.cleaned", "Removed the cluster's working folder.", path=str(home))

    def status(self, cluster_key: str, handles: Mapping[str, Any]) -> str:
        home = cluster_dir(cluster_key)
        pid = handles.get("pid") or _read_pid(home / "daemon.pid")
        if not pid or not _is_cluster_daemon(int(pid), home / "node"):
            return "stopped"
        port = handles.get("port")
        try:
            ok = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            ok = False
        return "up" if ok else "unreachable"

    # -- stopping by PID ----------------------------------------------------
    def _stop_pid(self, home: Path, workdir: Path, log: LogFn,
                  pid: int | None = None) -> None:
        pidfile = home / "daemon.pid"
        for candidate in dict.fromkeys(p for p in (pid, _read_pid(pidfile)) if p):
            if _is_cluster_daemon(int(candidate), workdir):
                self._terminate(int(candidate), log)
        with contextlib.suppress(FileNotFoundError):
            pidfile.unlink()

    def _terminate(self, pid: int, log: LogFn | None) -> None:
        """SIGTERM (the daemon stops its env workers), then SIGKILL to its whole
        session's process group if it has not exited in time."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + _STOP_GRACE_SECONDS
        while time.monotonic() < deadline and _cmdline(pid):
            time.sleep(0.05)
        forced = bool(_cmdline(pid))
        if forced:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        if log is not None:
            how = "killed (it did not stop in time)" if forced else "stopped"
            log("daemon.stopped", f"The node daemon (PID {pid}) {how}.", pid=pid)
