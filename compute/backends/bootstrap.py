"""Starting den's node daemon on a host over SSH: the piece both the ``ssh``
and the ``skypilot`` backends use on the machines they are given.

Given a host (address, port, user, private key, the host key den trusts),
:func:`connect` opens an asyncssh connection, trusting the host key on first
use and refusing one that changed (:class:`HostKeyChanged`, whose message says
how to accept it). :func:`bootstrap_node` then, on that connection:

1. finds ``python3`` (3.9 or newer, with its ``venv`` module); a host without
   them fails with a message naming the package to install;
2. sends den's node runtime (:mod:`compute.backends.node_runtime`: den's node
   code, httpx, cloudpickle, ... packed from den's own environment for that
   python), unless the host has that archive already: it is cached there by
   its content hash, so a second bring-up sends nothing;
3. unpacks it into a virtualenv under ``~/.den/runtime`` (the SSH user's home;
   no sudo, no internet);
4. stops a daemon this cluster left on the host (a start interrupted by a
   lost worker), writes the cluster token and the daemon's TLS certificate and
   key into 0600 files in ``~/.den/clusters/<key>/`` (the daemon deletes the
   token file once read; nothing secret is ever on a command line), and
   starts the daemon: under ``systemd --user`` where that works and outlives
   the SSH session (lingering on: it restarts on a crash), else detached in
   its own session with a pid file.

Health checks are HTTPS with the cluster's certificate pinned
(:func:`health`); :func:`read_log` fetches a daemon's log, which the backends
ship into the cluster's events. :func:`stop_node` and :func:`remove_node`
stop a daemon and remove den's files from the host.

Everything runs on asyncio (asyncssh): the backends call it with
``asyncio.run`` and gather the hosts of a cluster in parallel.

How a backend drives it: :class:`compute.backends.ssh.SshBackend` is the one
driver (two-phase start, a gate so no daemon starts unless every host got
ready, health, logs, stop, teardown). It gets its hosts from one overridable
method, ``SshBackend.hosts(cluster_key, handles=None) -> list[SshHost]``; a
backend with machines from elsewhere (SkyPilot's IPs and key, kept out of
den's database) subclasses it and overrides only that method.
"""

from __future__ import annotations

import asyncio
import json
import posixpath
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh
import httpx

from compute.backends import node_runtime
from compute.backends.base import BackendError, TransientBackendError
from compute.backends.tls import DaemonCert

#: Seconds to wait for a host's TCP connect and SSH handshake, and for one command.
CONNECT_TIMEOUT = 10.0
COMMAND_TIMEOUT = 120.0
#: What a host without python3 or its venv module should install (Debian/Ubuntu names).
PYTHON_PACKAGES = "python3 python3-venv"


@dataclass(frozen=True)
class SshHost:
    """How to reach one host. ``host_key`` is the key den trusts for it (an
    OpenSSH public key line), or None when it has never connected."""

    host: str
    port: int
    user: str
    private_key: str = field(repr=False)
    host_key: str | None = None

    @property
    def label(self) -> str:
        return self.host if self.port == 22 else f"{self.host}:{self.port}"


class HostKeyChanged(BackendError):
    """The host presented a key other than the one den trusts for it."""


class _Client(asyncssh.SSHClient):
    """Trust on first use, then only the pinned key: asyncssh asks this for
    every key it does not already trust, during the key exchange, before the
    client authenticates."""

    def __init__(self, pinned: asyncssh.SSHKey | None) -> None:
        self.pinned = pinned
        self.seen: asyncssh.SSHKey | None = None

    def validate_host_public_key(self, host: str, addr: str, port: int,
                                 key: asyncssh.SSHKey) -> bool:
        self.seen = key
        if self.pinned is None:
            return True
        return bool(key.public_data == self.pinned.public_data)


def key_fingerprint(key_line: str) -> str:
    """``SHA256:...`` of an OpenSSH public key line, as ssh-keygen -l shows it
    (``an unreadable key`` for a line that is not one: never an error here)."""
    try:
        return str(asyncssh.import_public_key(key_line).get_fingerprint("sha256"))
    except (asyncssh.KeyImportError, ValueError, TypeError):
        return "an unreadable key"


@dataclass
class Connected:
    """An open connection, and the host key it was made with (an OpenSSH line)."""

    conn: asyncssh.SSHClientConnection
    host_key: str
    first_use: bool


async def connect(host: SshHost, *, timeout: float = CONNECT_TIMEOUT) -> Connected:
    """Connect and authenticate with ``host.private_key``.

    HostKeyChanged if the host's key is not the pinned one; BackendError if the
    key is refused; TransientBackendError if the host does not answer (the
    start keeps trying until its timeout).
    """
    try:
        client_key = asyncssh.import_private_key(host.private_key)
    except (asyncssh.KeyImportError, ValueError, TypeError):
        raise BackendError(
            "The cluster's creds secret holds no usable private key (private_key: an "
            "OpenSSH or PEM private key without a passphrase); save the key again.") from None
    pinned = asyncssh.import_public_key(host.host_key) if host.host_key else None
    client = _Client(pinned)
    options: dict[str, Any] = {}
    if pinned is not None:
        # Ask the host for the pinned key's type, so that a host with several
        # keys answers with the one den knows.
        options["server_host_key_algs"] = [a.decode() for a in pinned.sig_algorithms]
    try:
        conn, _ = await asyncio.wait_for(asyncssh.create_connection(
            lambda: client, host.host, port=host.port, username=host.user,
            client_keys=[client_key], known_hosts=([], [], []), agent_path=None,
            preferred_auth="publickey", config=None, connect_timeout=timeout,
            login_timeout=timeout, keepalive_interval=15, **options,
        ), timeout + 5)
    except asyncssh.HostKeyNotVerifiable:
        seen = client.seen.export_public_key("openssh").decode().strip() if client.seen else ""
        was = key_fingerprint(host.host_key) if host.host_key else "?"
        now = key_fingerprint(seen) if seen else "a key of another type"
        raise HostKeyChanged(
            f"The SSH host key of {host.label} changed since den first trusted it (it was "
            f"{was}, it is now {now}): den refuses to connect, as this may be another "
            "machine. If the host was reinstalled, accept its new key with `den cluster "
            "forget-host-key ADDRESS "
            f"{host.host}` (or POST .../-/cluster/forget-host-key with "
            f'{{"host": "{host.host}"}}), then bring the cluster up again.',
            host=host.label, trusted=was, presented=now) from None
    except asyncssh.PermissionDenied:
        raise BackendError(
            f"{host.label} refused the cluster's SSH key for user {host.user}: check the "
            "user, and that the key's public half is in that user's ~/.ssh/authorized_keys.",
            host=host.label) from None
    except (TimeoutError, OSError, asyncssh.Error) as exc:
        cause = _cause(exc)
        raise TransientBackendError(f"{host.label} does not answer SSH on port {host.port} "
                                    f"({cause})", host=host.label, cause=cause) from None
    key = client.seen or conn.get_server_host_key()
    line = key.export_public_key("openssh").decode().strip() if key else ""
    return Connected(conn=conn, host_key=line, first_use=host.host_key is None)


def _cause(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    return text[:200]


# -- running things on a host -------------------------------------------------------


async def _run(conn: asyncssh.SSHClientConnection, args: list[str], *,
               stdin: str | None = None, timeout: float = COMMAND_TIMEOUT
               ) -> asyncssh.SSHCompletedProcess:
    """Run ``args`` (quoted here; never anything secret) through the user's shell."""
    command = " ".join(shlex.quote(a) for a in args)
    try:
        return await asyncio.wait_for(conn.run(command, input=stdin, check=False), timeout)
    except TimeoutError:
        raise TransientBackendError(f"a command on the host took longer than {timeout:.0f} s"
                                    ) from None


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value or "")


#: Prints the user's home and the python3 the shell finds (standard sh).
_WHERE = 'printf "%s\\n" "$HOME"; command -v python3 || true'


@dataclass(frozen=True)
class HostInfo:
    """What a host is: its user's home and its python."""

    home: str
    python: node_runtime.Interpreter

    @property
    def den_dir(self) -> str:
        return posixpath.join(self.home, ".den")

    def cluster_dir(self, cluster_key: str) -> str:
        return posixpath.join(self.den_dir, "clusters", cluster_key)


async def inspect_host(conn: asyncssh.SSHClientConnection, label: str) -> HostInfo:
    """The host's home and a python3 (3.9+) with venv; BackendError naming what
    to install otherwise."""
    where = await conn.run(f"sh -c {shlex.quote(_WHERE)}", check=False)
    lines = _text(where.stdout).splitlines()
    home = lines[0].strip() if lines else ""
    python = lines[1].strip() if len(lines) > 1 else ""
    if not home.startswith("/"):
        raise BackendError(f"Could not find the SSH user's home folder on {label}.",
                           host=label, output=_text(where.stderr)[-1000:])
    if not python:
        raise BackendError(
            f"{label} has no python3 on the SSH user's PATH; install Python 3.9 or newer "
            f"with its venv module (Debian/Ubuntu: apt-get install {PYTHON_PACKAGES}).",
            host=label)
    probe = await _run(conn, node_runtime.probe_command(python))
    try:
        found = node_runtime.Interpreter.from_probe(python, _text(probe.stdout))
    except (ValueError, KeyError, IndexError):
        raise BackendError(f"{python} on {label} did not run den's probe; install Python 3.9 "
                           f"or newer (Debian/Ubuntu: apt-get install {PYTHON_PACKAGES}).",
                           host=label, output=_text(probe.stderr)[-1000:]) from None
    want = "{}.{}".format(*node_runtime.MIN_PYTHON)
    if found.version[:2] < node_runtime.MIN_PYTHON:
        raise BackendError(f"python3 on {label} is {found.version_text}; den's node needs "
                           f"Python {want} or newer: install a newer python3 (and its venv "
                           "module).", host=label, python=python)
    if not found.has_venv:
        raise BackendError(
            f"python3 on {label} ({found.version_text}) has no venv module; install it "
            "(Debian/Ubuntu: apt-get install python3-venv) and bring the cluster up again.",
            host=label, python=python)
    return HostInfo(home=home, python=found)


@dataclass(frozen=True)
class DaemonSpec:
    """What one host's daemon is started with (the token never on a command line)."""

    cluster_key: str
    address: str
    den_url: str
    token: str = field(repr=False)
    port: int
    cert: DaemonCert | None
    den_auth: bool = True
    autostop_mins: int = -1
    heartbeat_seconds: float = 30.0
    auth_cache_seconds: float = 10.0
    listen: str = "0.0.0.0"


async def _write_file(sftp: asyncssh.SFTPClient, path: str, data: str, mode: int) -> None:
    """Write ``data`` to ``path`` created with ``mode`` from the start (never
    readable by others, not even for a moment)."""
    with_mode = asyncssh.SFTPAttrs(permissions=mode)
    async with sftp.open(path, "w", with_mode) as handle:
        await handle.write(data)
    await sftp.chmod(path, mode)


async def send_runtime(conn: asyncssh.SSHClientConnection, info: HostInfo,
                       archive: node_runtime.RuntimeArchive) -> tuple[str, bool]:
    """The runtime archive on the host (sent unless it is there already, by its
    hash) and installed; returns (the venv's python, whether anything was sent)."""
    runtime_dir = posixpath.join(info.den_dir, "runtime")
    await _run(conn, ["mkdir", "-p", "-m", "700", info.den_dir])
    await _run(conn, ["mkdir", "-p", "-m", "755", runtime_dir])
    remote = posixpath.join(runtime_dir, archive.path.name)
    sent = False
    async with conn.start_sftp_client() as sftp:
        if not await sftp.exists(remote):
            partial = f"{remote}.partial"
            await sftp.put(str(archive.path), partial)
            await sftp.rename(partial, remote)
            sent = True
    done = await _run(conn, node_runtime.install_command(info.python.path, remote,
                                                         archive.sha256, runtime_dir))
    try:
        answer = json.loads(_text(done.stdout).strip().splitlines()[-1])
        python = str(answer["python"])
    except (ValueError, IndexError, KeyError, TypeError):
        raise BackendError(
            f"Could not install den's node runtime with Python {info.python.version_text} "
            f"(exit code {done.exit_status}); its output is in this event's details.",
            output=(_text(done.stdout) + _text(done.stderr))[-3000:]) from None
    return python, sent


#: Stops the daemon named by a pid file if it still serves this workdir:
#: SIGTERM, then SIGKILL to its session after a grace. Prints what it did.
_STOP_SOURCE = r"""
import os, signal, sys, time
pidfile, workdir = sys.argv[1], sys.argv[2]
only = int(sys.argv[3]) if len(sys.argv) > 3 else None
try:
    pid = int(open(pidfile).read().strip())
except (OSError, ValueError):
    pid = only
if pid is None or (only is not None and pid != only):
    pid = only  # a newer start's daemon owns the pid file: leave it alone
if pid is None:
    print("none"); sys.exit(0)
def alive():
    try:
        args = open("/proc/%d/cmdline" % pid, "rb").read().split(b"\0")
    except OSError:
        return False
    return b"den.node" in args and workdir.encode() in args
def unlink():
    try:
        if int(open(pidfile).read().strip()) == pid:
            os.unlink(pidfile)
    except (OSError, ValueError):
        pass
if not alive():
    unlink(); print("none"); sys.exit(0)
os.kill(pid, signal.SIGTERM)
deadline = time.time() + 10
while time.time() < deadline and alive():
    time.sleep(0.05)
forced = alive()
if forced:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        os.kill(pid, signal.SIGKILL)
unlink()
print("killed" if forced else "stopped")
"""

#: Starts the daemon detached (its own session, stdin on /dev/null, output to
#: its log) and prints its pid, which it also writes to the pid file.
_SPAWN_SOURCE = r"""
import os, subprocess, sys
log, pidfile = sys.argv[1], sys.argv[2]
env = dict(os.environ, PYTHONUNBUFFERED="1")
with open(log, "ab") as out:
    p = subprocess.Popen(sys.argv[3:], stdin=subprocess.DEVNULL, stdout=out,
                         stderr=subprocess.STDOUT, start_new_session=True, env=env)
with open(pidfile, "w") as handle:
    handle.write(str(p.pid))
print(p.pid)
"""


def _unit_name(cluster_key: str) -> str:
    return f"den-node-{cluster_key}.service"


async def _systemd_usable(conn: asyncssh.SSHClientConnection) -> bool:
    """``systemd --user`` runs for this user and lingers (so its services
    outlive the SSH session that started them)."""
    check = await conn.run(
        'systemctl --user show-environment >/dev/null 2>&1 && '
        'loginctl show-user "$(id -un)" -p Linger 2>/dev/null', check=False)
    return check.exit_status == 0 and "Linger=yes" in _text(check.stdout)


async def stop_node(conn: asyncssh.SSHClientConnection, info: HostInfo,
                    cluster_key: str, only_pid: int | None = None) -> str:
    """Stop this cluster's daemon on the host (by systemd, or by its pid file
    after checking the pid is still that daemon); "none" if none ran.
    ``only_pid``: stop that daemon only (one start's own, not a newer one's)."""
    home = info.cluster_dir(cluster_key)
    unit = _unit_name(cluster_key)
    unit_file = posixpath.join(info.home, ".config", "systemd", "user", unit)
    via_systemd = await conn.run(f"test -f {shlex.quote(unit_file)}", check=False)
    if via_systemd.exit_status == 0 and only_pid is None:
        await conn.run(f"systemctl --user stop {shlex.quote(unit)}", check=False)
    extra = [str(only_pid)] if only_pid is not None else []
    done = await _run(conn, [info.python.path, "-I", "-c", _STOP_SOURCE,
                             posixpath.join(home, "daemon.pid"), posixpath.join(home, "node"),
                             *extra])
    answer = _text(done.stdout).strip() or "none"
    return "stopped" if via_systemd.exit_status == 0 and answer == "none" else answer


async def start_node(conn: asyncssh.SSHClientConnection, info: HostInfo, python: str,
                     spec: DaemonSpec) -> dict[str, Any]:
    """Start this cluster's daemon on the host (stopping one it left first);
    returns its handle: pid, port, supervisor."""
    home = info.cluster_dir(spec.cluster_key)
    workdir = posixpath.join(home, "node")
    await stop_node(conn, info, spec.cluster_key)
    await _run(conn, ["mkdir", "-p", "-m", "700", posixpath.join(info.den_dir, "clusters")])
    await _run(conn, ["mkdir", "-p", "-m", "700", home])
    await _run(conn, ["mkdir", "-p", "-m", "700", workdir])
    token_file = posixpath.join(home, "token")
    args = [python, "-m", "den.node", "--host", spec.listen, "--port", str(spec.port),
            "--den-url", spec.den_url, "--cluster-address", spec.address,
            "--workdir", workdir, "--autostop-mins", str(spec.autostop_mins),
            "--heartbeat-seconds", str(spec.heartbeat_seconds),
            "--auth-cache-seconds", str(spec.auth_cache_seconds),
            "--cluster-token-file", token_file]
    if not spec.den_auth:
        args.append("--no-den-auth")
    async with conn.start_sftp_client() as sftp:
        await _write_file(sftp, token_file, spec.token + "\n", 0o600)
        if spec.cert is not None:
            cert_file = posixpath.join(home, "tls.crt")
            key_file = posixpath.join(home, "tls.key")
            await _write_file(sftp, cert_file, spec.cert.cert_pem, 0o600)
            await _write_file(sftp, key_file, spec.cert.key_pem, 0o600)
            args += ["--tls-cert-file", cert_file, "--tls-key-file", key_file]
    log = posixpath.join(home, "daemon.log")
    size = await conn.run(f"stat -c %s {shlex.quote(log)} 2>/dev/null || echo 0", check=False)
    offset = int(_text(size.stdout).strip() or 0)
    if await _systemd_usable(conn):
        pid = await _start_systemd(conn, info, spec.cluster_key, args, home, log)
        supervisor = "systemd"
    else:
        done = await _run(conn, [info.python.path, "-I", "-c", _SPAWN_SOURCE, log,
                                 posixpath.join(home, "daemon.pid"), *args])
        try:
            pid = int(_text(done.stdout).strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise BackendError("Could not start the node daemon on the host; the output is "
                               "in this event's details.",
                               output=(_text(done.stdout) + _text(done.stderr))[-2000:]
                               ) from None
        supervisor = "detached"
    return {"pid": pid, "port": spec.port, "supervisor": supervisor, "log_offset": offset}


async def _start_systemd(conn: asyncssh.SSHClientConnection, info: HostInfo,
                         cluster_key: str, args: list[str], home: str, log: str) -> int:
    """Run the daemon as a ``systemd --user`` service that restarts on a crash
    (so it keeps its token file: ``--keep-token-file``, mode 0600)."""
    unit = _unit_name(cluster_key)
    folder = posixpath.join(info.home, ".config", "systemd", "user")
    command = " ".join(_systemd_quote(a) for a in [*args, "--keep-token-file"])
    text = "\n".join([
        "[Unit]", f"Description=den node daemon (cluster {cluster_key})", "",
        "[Service]", f"WorkingDirectory={home}", f"ExecStart={command}",
        "Restart=on-failure", "RestartSec=2", "UMask=0077",
        "Environment=PYTHONUNBUFFERED=1",
        f"StandardOutput=append:{log}", f"StandardError=append:{log}", "",
        "[Install]", "WantedBy=default.target", "",
    ])
    await _run(conn, ["mkdir", "-p", folder])
    async with conn.start_sftp_client() as sftp:
        await _write_file(sftp, posixpath.join(folder, unit), text, 0o600)
    await conn.run("systemctl --user daemon-reload", check=False)
    started = await conn.run(f"systemctl --user restart {shlex.quote(unit)} && "
                             f"systemctl --user show -p MainPID --value {shlex.quote(unit)}",
                             check=False)
    try:
        return int(_text(started.stdout).strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise BackendError("systemd --user could not start the node daemon; its output is in "
                           "this event's details.", output=_text(started.stderr)[-2000:]
                           ) from None


def _systemd_quote(arg: str) -> str:
    if arg and all(c.isalnum() or c in "/._-:=+," for c in arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def read_log(conn: asyncssh.SSHClientConnection, info: HostInfo, cluster_key: str,
                   offset: int = 0, limit: int = 16_000) -> str:
    """The daemon's log from ``offset`` on (its last ``limit`` characters)."""
    log = posixpath.join(info.cluster_dir(cluster_key), "daemon.log")
    done = await conn.run(f"tail -c +{int(offset) + 1} {shlex.quote(log)} 2>/dev/null",
                          check=False)
    return _text(done.stdout)[-limit:]


async def pid_alive(conn: asyncssh.SSHClientConnection, info: HostInfo, cluster_key: str,
                    pid: int) -> bool:
    """Whether ``pid`` is still this cluster's daemon on the host."""
    workdir = posixpath.join(info.cluster_dir(cluster_key), "node")
    done = await conn.run(f"tr '\\0' '\\n' < /proc/{int(pid)}/cmdline 2>/dev/null", check=False)
    args = _text(done.stdout).splitlines()
    return "den.node" in args and workdir in args


async def remove_node(conn: asyncssh.SSHClientConnection, info: HostInfo,
                      cluster_key: str) -> bool:
    """Stop the daemon and remove this cluster's files from the host; den's
    folder goes too (the cached runtime with it) once no cluster is left in
    it. True if anything was removed."""
    await stop_node(conn, info, cluster_key)
    unit = posixpath.join(info.home, ".config", "systemd", "user", _unit_name(cluster_key))
    script = (
        f"had=0; [ -e {shlex.quote(info.cluster_dir(cluster_key))} ] && had=1; "
        f"rm -rf {shlex.quote(info.cluster_dir(cluster_key))}; "
        f"if [ -f {shlex.quote(unit)} ]; then rm -f {shlex.quote(unit)}; had=1; "
        "systemctl --user daemon-reload >/dev/null 2>&1; fi; "
        f"rmdir {shlex.quote(posixpath.join(info.den_dir, 'clusters'))} 2>/dev/null && "
        f"{{ rm -rf {shlex.quote(info.den_dir)}; had=1; }}; echo $had"
    )
    done = await conn.run(script, check=False)
    return _text(done.stdout).strip().endswith("1")


# -- health, over HTTPS with the certificate pinned -----------------------------------


def node_url(host: str, port: int, tls: bool) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"


async def health(url: str, cert: tuple[str, str] | None,
                 timeout: float = 2.0) -> dict[str, Any] | None:
    """The daemon's /health answer, or None if it does not answer (yet)."""
    from den.node.pinning import pinned_context

    verify: Any = pinned_context(*cert) if cert else True
    try:
        async with httpx.AsyncClient(verify=verify, timeout=timeout) as client:
            answer = await client.get(url + "/health")
        if answer.status_code == 200:
            data = answer.json()
            return data if isinstance(data, dict) else None
    except (httpx.HTTPError, ValueError):
        return None
    return None


def bootstrap_cache_dir(den_home: str | Path) -> Path:
    """Where den keeps the runtime archives it builds (one per target python)."""
    return Path(den_home) / "node-runtime"


def host_label(entry: Mapping[str, Any]) -> str:
    port = int(entry.get("ssh_port") or 22)
    host = str(entry.get("host") or "")
    return host if port == 22 else f"{host}:{port}"
