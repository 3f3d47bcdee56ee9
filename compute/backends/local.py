"""The ``local`` backend: the node daemon as a process on the worker's machine.

For single-machine dens and tests. Whoever may put code on a local cluster
runs it on den's own server, so local clusters are for den's administrators
unless ``DEN_LOCAL_CLUSTERS=everyone`` (:mod:`compute.services` checks the
owner), and their daemons are kept away from den's own files and processes:

- Each cluster gets a folder ``DEN_CLUSTER_ROOT/<key>/``, outside DEN_HOME:
  the daemon's workdir ``node/`` (its code bundles and env virtualenvs), and
  den's own ``daemon.log`` and ``daemon.pid`` beside it.
- When den runs as root, the daemon runs as ``DEN_CLUSTER_USER``
  (``den-cluster``, created with ``useradd --system`` if missing). That user
  cannot enter DEN_HOME (mode 0700) nor read den's processes (another uid),
  and it may not be able to run den's own interpreter either (one under
  ``/root`` is out of its reach), so the daemon runs on a node runtime
  (:mod:`compute.backends.node_runtime`) for a system ``python3`` that the
  user can run.
- Otherwise the daemon runs as den's own user, with den's interpreter. Code on
  the cluster can then read what that user can read, DEN_HOME included: that
  is why local clusters are for administrators by default.

The daemon's environment is small and built here (never den's: no
``DATABASE_URL``, no keys). Its cluster token goes to it on stdin, so it is in
neither its command line nor its environment, both of which ``/proc`` shows;
the daemon marks itself non-dumpable before it reads it. The daemon runs
detached in its own session, so it outlives the worker process that started
it, and is stopped by PID, after checking that the PID still belongs to
*this* cluster's daemon (PIDs are reused).

Event messages name no folders, PIDs or log lines (every reader of the
cluster sees them); those go into the events' ``data``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from django.conf import settings

from compute.backends import node_runtime, register_backend
from compute.backends.base import (
    BackendError,
    ClusterBackend,
    Launched,
    LaunchSpec,
    LogFn,
    Pending,
)

#: Variables a daemon inherits from the worker whoever it runs as.
_PASSED_ENV = ("LANG", "LC_ALL", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE")
#: ... and these too when it runs as den's own user, with den's interpreter.
_SAME_USER_ENV = ("PATH", "HOME", "USER", "LOGNAME", "TMPDIR", "VIRTUAL_ENV")
_STOP_GRACE_SECONDS = 10.0
#: How often a start polls a spawned daemon's health, and how long begin_up
#: waits for it before handing over to poll tasks.
_POLL_SECONDS = 0.2
_INLINE_WAIT_SECONDS = 3.0
#: Where a cluster user's python3 is looked for, unless DEN_CLUSTER_PYTHON names one.
_PYTHONS = (
    "/usr/bin/python3", "/usr/local/bin/python3",
    *(f"{folder}/python3.{minor}" for minor in range(14, 8, -1)
      for folder in ("/usr/bin", "/usr/local/bin")),
)
_SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


def cluster_root() -> Path:
    return Path(settings.DEN_CLUSTER_ROOT).expanduser()


def cluster_dir(cluster_key: str) -> Path:
    return cluster_root() / cluster_key


def _cluster_dirs(cluster_key: str) -> list[Path]:
    """Where a cluster's daemon may be: its folder, and the one inside DEN_HOME
    that dens before DEN_CLUSTER_ROOT used (a daemon they started may still run)."""
    return [cluster_dir(cluster_key), Path(settings.DEN_HOME) / "clusters" / cluster_key]


@dataclass(frozen=True)
class ClusterUser:
    """The unprivileged OS user that local daemons run as when den is root."""

    name: str
    uid: int
    gid: int


def cluster_user() -> ClusterUser | None:
    """``DEN_CLUSTER_USER`` (created if missing) when den runs as root; None
    (den's own user) otherwise, since only root may start a process as another."""
    if os.geteuid() != 0:
        return None
    name = settings.DEN_CLUSTER_USER
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        entry = _create_user(name)
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise BackendError(f"DEN_CLUSTER_USER names {name}, which has root's uid or group; "
                           "name an unprivileged user for local cluster daemons.")
    return ClusterUser(name=name, uid=entry.pw_uid, gid=entry.pw_gid)


def _create_user(name: str) -> pwd.struct_passwd:
    shell = next((s for s in ("/usr/sbin/nologin", "/sbin/nologin") if os.path.exists(s)),
                 "/bin/false")
    output = ""
    try:
        done = subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home",
             "--home-dir", "/nonexistent", "--shell", shell, name],
            capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL, timeout=60,
        )
        output = done.stdout + done.stderr
    except (OSError, subprocess.TimeoutExpired) as exc:
        output = str(exc)
    try:
        return pwd.getpwnam(name)  # made now, or by a start running beside this one
    except KeyError:
        raise BackendError(
            f"Could not create the user {name} that local cluster daemons run as; create it "
            "(useradd --system) or set DEN_CLUSTER_USER to an unprivileged user.",
            output=output[-2000:]) from None


def find_python(user: ClusterUser, root: Path) -> node_runtime.Interpreter:
    """The first python3 (3.9+, with venv) that ``user`` can run, from
    DEN_CLUSTER_PYTHON or the usual system places; BackendError if there is
    none, or if ``user`` cannot reach ``root``."""
    explicit = settings.DEN_CLUSTER_PYTHON
    candidates = [explicit] if explicit else [p for p in _PYTHONS if os.path.exists(p)]
    tried: dict[str, str] = {}
    for path in dict.fromkeys(candidates):
        try:
            done = subprocess.run(
                node_runtime.probe_command(path, str(root)), capture_output=True, text=True,
                check=False, stdin=subprocess.DEVNULL, timeout=30, cwd="/",
                env={"PATH": _SYSTEM_PATH, "LANG": "C.UTF-8"},
                user=user.uid, group=user.gid, extra_groups=[],
            )
        except (OSError, subprocess.SubprocessError) as exc:
            tried[path] = f"could not run it: {exc}"
            continue
        if done.returncode != 0:
            tried[path] = f"exited with code {done.returncode}: {done.stderr[-300:]}"
            continue
        try:
            found = node_runtime.Interpreter.from_probe(path, done.stdout)
        except (ValueError, KeyError, IndexError):
            tried[path] = "did not describe itself"
            continue
        if found.version[:2] < node_runtime.MIN_PYTHON:
            tried[path] = f"Python {found.version_text} is too old"
            continue
        if not found.has_venv:
            tried[path] = "has no venv module"
            continue
        if found.cannot_reach:
            raise BackendError(
                f"The user {user.name} that runs local cluster daemons cannot reach "
                "DEN_CLUSTER_ROOT; set it to a folder whose parent folders everyone may "
                "enter (the default is /var/lib/den/clusters).", cluster_root=str(root))
        return found
    want = "{}.{}".format(*node_runtime.MIN_PYTHON)
    raise BackendError(
        f"Found no Python {want} or newer (with venv) that the user {user.name} can run for "
        "the cluster's daemon; install python3 and python3-venv for all users, or set "
        "DEN_CLUSTER_PYTHON to one.", tried=tried or {"(none found)": ", ".join(_PYTHONS[:2])})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def _log_tail(path: Path, lines: int = 20, offset: int = 0) -> str:
    """The last ``lines`` of a log, from ``offset`` on (what one daemon wrote)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _make_dirs(path: Path, mode: int = 0o755) -> None:
    """``path`` and its missing parents, each with ``mode`` (den's umask would
    make them 0700, which the cluster user could not enter)."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir()
        os.chmod(folder, mode)


def _own_dir(path: Path, user: ClusterUser) -> None:
    """A folder of the cluster user's own, mode 0700 (its contents too, if a
    previous daemon ran as someone else)."""
    path.mkdir(parents=True, exist_ok=True)
    if path.stat().st_uid != user.uid:
        for folder, _, names in os.walk(path):
            os.lchown(folder, user.uid, user.gid)
            for name in names:
                os.lchown(os.path.join(folder, name), user.uid, user.gid)
    os.chmod(path, 0o700)


def _check_root(root: Path) -> None:
    home = Path(settings.DEN_HOME).expanduser().resolve()
    resolved = root.resolve()
    if resolved == home or home in resolved.parents:
        raise BackendError(
            "DEN_CLUSTER_ROOT is inside DEN_HOME, where den keeps its keys and database; "
            "set it to a folder outside DEN_HOME.", cluster_root=str(root))


@dataclass(frozen=True)
class _Start:
    """How to start one daemon: its interpreter, environment and user."""

    python: str
    env: dict[str, str]
    user: ClusterUser | None


@register_backend
class LocalBackend(ClusterBackend):
    """Daemons as detached local processes, health-checked over HTTP."""

    name = "local"

    def begin_up(self, spec: LaunchSpec, log: LogFn) -> Launched | Pending:
        """Spawn the daemon (after stopping any this cluster left); Launched if
        it answers within a few seconds, else Pending for ``poll_up``."""
        root = cluster_root()
        _check_root(root)
        home = root / spec.cluster_key
        workdir = home / "node"
        user = cluster_user()
        _make_dirs(home)
        # A daemon left by an interrupted start (a worker that died mid-task)
        # holds an old token and maybe the port: stop it first.
        self._stop_pid(home, workdir, log)
        start = self._as_user(user, home, workdir, log) if user else self._as_den(workdir)
        chosen = spec.config.get("server_port")
        port = int(chosen) if chosen else _free_port()
        command = [
            start.python, "-m", "den.node",
            "--host", "127.0.0.1", "--port", str(port),
            "--den-url", spec.den_url,
            "--cluster-address", spec.address,
            "--workdir", str(workdir),
            "--autostop-mins", str(spec.autostop_mins),
            "--heartbeat-seconds", str(spec.heartbeat_seconds),
            "--auth-cache-seconds", str(spec.auth_cache_seconds),
            "--cluster-token-file", "-",
        ]
        if not spec.den_auth:
            command.append("--no-den-auth")
        switch: dict[str, Any] = (
            {"user": start.user.uid, "group": start.user.gid, "extra_groups": []}
            if start.user else {}
        )
        log_path = home / "daemon.log"
        with open(log_path, "ab") as log_file:
            offset = log_file.tell()
            process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=log_file, stderr=subprocess.STDOUT,
                env=start.env, cwd=str(workdir), start_new_session=True, umask=0o077, **switch,
            )
        self._hand_token(process, spec.token)
        # Reap it when it exits, so it never lingers as a zombie of this worker.
        threading.Thread(target=process.wait, daemon=True).start()
        (home / "daemon.pid").write_text(str(process.pid))
        who = start.user.name if start.user else "den's own user"
        log("daemon.started", f"Started the node daemon as {who}.", pid=process.pid,
            port=port, user=start.user.name if start.user else None)
        handles = {"pid": process.pid, "port": port, "log": str(log_path),
                   "log_offset": offset, "port_chosen": bool(chosen)}
        # A local daemon usually answers within a second: wait that long here
        # (bounded) rather than pay a trip through the broker per poll.
        deadline = time.monotonic() + _INLINE_WAIT_SECONDS
        while True:
            result = self.poll_up(spec, handles, log)
            if isinstance(result, Launched) or time.monotonic() >= deadline \
                    or result.handles.get("pid") != process.pid:
                return result
            time.sleep(0.05)

    def poll_up(self, spec: LaunchSpec, handles: Mapping[str, Any],
                log: LogFn) -> Launched | Pending:
        """Launched once the daemon this start spawned answers ``/health`` with
        its own pid; BackendError if it exited. A daemon that lost a race for
        a free port is spawned again on another (the port was den's choice)."""
        pid, port = int(handles["pid"]), int(handles["port"])
        home = cluster_dir(spec.cluster_key)
        url = f"http://127.0.0.1:{port}"
        if not _is_cluster_daemon(pid, home / "node"):
            tail = _log_tail(Path(handles.get("log") or home / "daemon.log"),
                             offset=int(handles.get("log_offset") or 0))
            if "address already in use" in tail.lower() and not handles.get("port_chosen"):
                log("daemon.retry", "The node daemon lost a race for its port; "
                    "starting it again on another.", log_tail=tail)
                return self.begin_up(spec, log)
            raise BackendError("The node daemon exited before it answered; the end of its "
                               "log is in this event's details.", log_tail=tail)
        try:
            answer = httpx.get(url + "/health", timeout=2.0)
            # Only our own process counts: another daemon may already hold the
            # port, and ours is about to fail to bind it.
            if answer.status_code == 200 and answer.json().get("pid") == pid:
                return Launched(daemon_url=url, handles={
                    "pid": pid, "port": port, "log": handles.get("log"),
                    "nodes": [{"url": url}]})
        except (httpx.HTTPError, ValueError):
            pass
        return Pending(handles=dict(handles), retry_in=_POLL_SECONDS,
                       waiting_for="the node daemon on 127.0.0.1 to answer its health check")

    def cancel_up(self, cluster_key: str, handles: Mapping[str, Any], log: LogFn) -> None:
        """Stop only the daemon this start spawned (a newer start may run beside it)."""
        pid = handles.get("pid")
        workdir = cluster_dir(cluster_key) / "node"
        if pid and _is_cluster_daemon(int(pid), workdir):
            self._terminate(int(pid), log)

    @staticmethod
    def _hand_token(process: subprocess.Popen[bytes], token: str) -> None:
        """Give the daemon its token on stdin (one line), then close the pipe."""
        assert process.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # it died already: the health check says why
            process.stdin.write(f"{token}\n".encode())
        with contextlib.suppress(BrokenPipeError):
            process.stdin.close()

    def _as_den(self, workdir: Path) -> _Start:
        """Den's own user and interpreter, importing the same den as the worker."""
        workdir.mkdir(parents=True, exist_ok=True)
        env = {n: os.environ[n] for n in (*_PASSED_ENV, *_SAME_USER_ENV) if n in os.environ}
        env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
        env["PYTHONUNBUFFERED"] = "1"
        return _Start(python=sys.executable, env=env, user=None)

    def _as_user(self, user: ClusterUser, home: Path, workdir: Path, log: LogFn) -> _Start:
        """The cluster user, on a node runtime for a python3 it can run."""
        root = home.parent
        target = find_python(user, root)
        archive = node_runtime.build_runtime(target, Path(settings.DEN_HOME) / "node-runtime")
        installed = node_runtime.install_runtime(archive, target, root / ".runtime")
        if installed.fresh:
            log("runtime.installed",
                f"Installed the node runtime for Python {target.version_text}.",
                python=target.path, **node_runtime.describe(archive))
        _own_dir(workdir, user)
        user_home = home / "home"
        _own_dir(user_home, user)
        env = {n: os.environ[n] for n in _PASSED_ENV if n in os.environ}
        env.setdefault("LANG", "C.UTF-8")
        env.update({
            "PATH": f"{installed.python.parent}:{_SYSTEM_PATH}",
            "HOME": str(user_home),
            "USER": user.name,
            "LOGNAME": user.name,
            "PYTHONUNBUFFERED": "1",
        })
        return _Start(python=str(installed.python), env=env, user=user)

    def stop(self, cluster_key: str, handles: Mapping[str, Any], log: LogFn) -> None:
        for home in _cluster_dirs(cluster_key):
            self._stop_pid(home, home / "node", log, handles.get("pid"))

    def teardown(self, cluster_key: str, handles: Mapping[str, Any], log: LogFn) -> None:
        self.stop(cluster_key, handles, log)
        for home in _cluster_dirs(cluster_key):
            if home.exists():
                shutil.rmtree(home, ignore_errors=True)
                log("cluster.cleaned", "Removed the cluster's working folder.", path=str(home))

    def status(self, cluster_key: str, handles: Mapping[str, Any]) -> str:
        for home in _cluster_dirs(cluster_key):
            pid = handles.get("pid") or _read_pid(home / "daemon.pid")
            if pid and _is_cluster_daemon(int(pid), home / "node"):
                break
        else:
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
            how = "was killed (it did not stop in time)" if forced else "stopped"
            log("daemon.stopped", f"The node daemon {how}.", pid=pid)
