"""Test hosts that are real machines to den: Linux network namespaces with sshd.

``make_hosts(n)`` makes one *site*: a bridge in the root namespace holding
``198.18.X.1/24`` (X picked free, under a lock, so that concurrent test runs
never collide), and ``n`` network namespaces joined to it by veth pairs, each
with the address ``198.18.X.(N+2)``, its own ``sshd`` (Debian's
openssh-server, run by PID, no systemd) listening there on port 22, and its
own unprivileged user whose ``authorized_keys`` holds a fresh ed25519 key. The
hosts share this machine's file system and python3 (with venv); each user's
home stands for its host's disk. Traffic goes only to loopback and these
namespaces: there is no route out, so no internet inside.

Den's own server listens on the root namespace's loopback; ``Site.expose(port)``
makes ``127.0.0.1:port`` inside every host's namespace reach it (the test
process holds a listening socket in each namespace and relays connections;
nothing crosses the veth links), so a daemon on a host reaches den at the
same URL as a local daemon does. This stands in for den's public HTTPS URL.

Cleanup (``Site.close()``, also at interpreter exit) ends the sshd processes
by PID, deletes the namespaces (``ip netns del``), the bridge, and the users
with their homes.

API (also used by the SkyPilot tests' fake cloud, which hands these hosts back
as launched machines)::

    site = make_hosts(2)                 # needs root, iproute2 and sshd
    site.hosts[0] -> Host(ip, user, port, private_key_pem, host_key, ...)
    site.expose(live_server_port)        # den reachable from the hosts
    site.close()

``hosts_available()`` says why not when this machine cannot make them
(tests skip then). The ``ssh_site`` fixture (this module is a pytest plugin)
is two hosts for the whole session, with den's live server exposed. ``Host.processes()`` lists the host user's processes
(pid -> argv), ``Host.files()`` what is in its home.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import fcntl
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

SSHD = "/usr/sbin/sshd"
_STATE = Path("/run/den-sshhosts")
_LOCK = _STATE / "lock"
_CLONE_NEWNET = 0x40000000


def hosts_available() -> str | None:
    """None if this machine can make test hosts, else why not."""
    if os.geteuid() != 0:
        return "test hosts need root (network namespaces, users)"
    for tool in (SSHD, shutil.which("ip"), shutil.which("useradd")):
        if not tool or not os.path.exists(tool):
            return f"test hosts need {tool or 'ip/useradd'} (iproute2, openssh-server, passwd)"
    return None


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def _keypair() -> tuple[str, str]:
    """A fresh ed25519 key: (private key in OpenSSH PEM, public key line)."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return private, public


@dataclass
class Host:
    """One test host: reach it at ``ip``:``port`` as ``user`` with ``private_key_pem``
    (the same user and key on every host of a site); ``host_key`` is its
    sshd's public host key (``ssh-ed25519 AAAA...``); ``home`` is this host's
    own disk, as this machine sees it."""

    ip: str
    user: str
    port: int
    private_key_pem: str = field(repr=False)
    host_key: str
    netns: str = ""
    home: Path = Path("/nonexistent")
    uid: int = -1
    sshd_pid: int = 0
    host_key_path: Path = Path("/nonexistent")
    #: The user's home as the host sees it (``home`` is mounted there).
    nominal_home: Path = Path("/nonexistent")

    def processes(self) -> dict[int, list[str]]:
        """The host user's live processes on this host (its network namespace):
        pid -> argv (zombies left out)."""
        found: dict[int, list[str]] = {}
        try:
            netns = os.stat(f"/run/netns/{self.netns}").st_ino
        except OSError:
            return found
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if entry.stat().st_uid != self.uid or os.stat(entry / "ns" / "net").st_ino != netns:
                    continue
                args = [a.decode(errors="replace")
                        for a in (entry / "cmdline").read_bytes().split(b"\0") if a]
            except OSError:
                continue
            if args:
                found[int(entry.name)] = args
        return found

    def files(self) -> list[str]:
        """Paths under the user's home (relative), skipping the test's own ``.ssh``."""
        found = []
        # os.walk ignores folders that vanish meanwhile (a teardown under way).
        for folder, dirs, names in os.walk(self.home):
            rel = Path(folder).relative_to(self.home)
            if rel.parts[:1] == (".ssh",):
                continue
            found += [str(rel / n) for n in (*dirs, *names) if (rel / n).parts[0] != ".ssh"]
        return sorted(found)

    def kill_processes(self) -> None:
        """kill -9 every process of this host's user (cleanup)."""
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def set_host_key(self) -> str:
        """Give this host's sshd a new host key (as a reinstalled machine would
        have) and restart it; returns the new public key."""
        private, public = _keypair()
        self.host_key_path.write_text(private)
        self.host_key_path.chmod(0o600)
        self.host_key = public
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.sshd_pid, signal.SIGTERM)
        _wait_gone(self.sshd_pid)
        self.sshd_pid = _start_sshd(self.netns, self.host_key_path.parent / "sshd_config",
                                    self.ip, self.port, self.home, self.nominal_home)
        return public


def _wait_gone(pid: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.02)


def _start_sshd(netns: str, config: Path, ip: str, port: int, home: Path,
                nominal_home: Path) -> int:
    """sshd in ``netns`` and in a mount namespace of its own where this host's
    ``home`` is mounted on the user's ``nominal_home``: every host of a site
    has the same user, each with a disk of its own."""
    log = open(config.parent / "sshd.log", "ab")  # noqa: SIM115 (kept by the child)
    script = 'mount --bind "$1" "$2" && exec "$3" -D -e -f "$4"'
    process = subprocess.Popen(["ip", "netns", "exec", netns, "unshare", "--mount",
                                "--propagation", "private", "--", "sh", "-c", script, "sh",
                                str(home), str(nominal_home), SSHD, str(config)],
                               stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                               start_new_session=True)
    log.close()
    threading.Thread(target=process.wait, daemon=True).start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd in {netns} exited: "
                               f"{(config.parent / 'sshd.log').read_text()[-2000:]}")
        if _port_open_in(netns, ip, port):
            return process.pid
        time.sleep(0.05)
    raise RuntimeError(f"sshd in {netns} did not listen on {ip}:{port}")


def _port_open_in(netns: str, ip: str, port: int) -> bool:
    # From the root namespace, through the bridge.
    with socket.socket() as sock:
        sock.settimeout(0.5)
        try:
            sock.connect((ip, port))
            return True
        except OSError:
            return False


# -- sockets inside a namespace ---------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def _socket_in(netns: str, address: tuple[str, int],
               family: socket.AddressFamily = socket.AF_INET) -> socket.socket:
    """A listening TCP socket bound inside ``netns`` (setns on a throwaway thread:
    a network namespace switch is per thread, and sockets keep theirs)."""
    result: list[socket.socket | BaseException] = []

    def make() -> None:
        try:
            with open(f"/run/netns/{netns}") as handle:
                if _libc.setns(handle.fileno(), _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {netns}")
            sock = socket.socket(family)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(64)
            result.append(sock)
        except BaseException as exc:  # handed to the caller
            result.append(exc)

    thread = threading.Thread(target=make)
    thread.start()
    thread.join()
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def _relay(listener: socket.socket, target: tuple[str, int], stop: threading.Event) -> None:
    listener.settimeout(0.5)
    while not stop.is_set():
        try:
            inner, _ = listener.accept()
        except TimeoutError:
            continue
        except OSError:
            return
        try:
            outer = socket.create_connection(target, timeout=5)
        except OSError:
            inner.close()
            continue
        inner.settimeout(None)
        outer.settimeout(None)
        for a, b in ((inner, outer), (outer, inner)):
            threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


# -- sites ------------------------------------------------------------------------


@dataclass
class Site:
    """Hosts on one bridge; ``gateway`` is the root namespace's address on it."""

    index: int
    bridge: str
    gateway: str
    base: Path
    hosts: list[Host] = field(default_factory=list)
    netns: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    #: The one user every host of the site has, and its key (as on a real cluster).
    user: str = ""
    private_key_pem: str = field(default="", repr=False)
    public_key: str = ""
    uid: int = -1
    nominal_home: Path = Path("/nonexistent")
    _stop: threading.Event = field(default_factory=threading.Event)
    _listeners: list[socket.socket] = field(default_factory=list)
    closed: bool = False

    def expose(self, port: int) -> None:
        """Make ``localhost:port`` (127.0.0.1 and ::1) inside every host reach
        ``127.0.0.1:port`` here."""
        for host in self.hosts:
            for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
                listener = _socket_in(host.netns, (address, port), family)
                self._listeners.append(listener)
                threading.Thread(target=_relay,
                                 args=(listener, ("127.0.0.1", port), self._stop),
                                 daemon=True).start()

    def close(self) -> None:
        """End everything this site made: relays, sshd and user processes (by
        PID), namespaces, the bridge, users and their homes."""
        if self.closed:
            return
        self.closed = True
        self._stop.set()
        for listener in self._listeners:
            with contextlib.suppress(OSError):
                listener.close()
        for host in self.hosts:
            if host.sshd_pid:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(host.sshd_pid, signal.SIGKILL)
            host.kill_processes()
        for name in self.netns:
            _run("ip", "netns", "del", name, check=False)
        _run("ip", "link", "del", self.bridge, check=False)
        for user in self.users:
            _run("userdel", "-f", user, check=False)
        shutil.rmtree(self.base, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            (_STATE / f"site-{self.index}").unlink()


def _claim_index() -> int:
    """A free site number (the X of 198.18.X.0/24), held by a marker file."""
    _STATE.mkdir(parents=True, exist_ok=True)
    with open(_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        used = _run("ip", "-o", "-4", "addr").stdout
        for index in range(10, 250):
            marker = _STATE / f"site-{index}"
            if f" 198.18.{index}." in used:
                continue
            if marker.exists():
                try:
                    alive = Path(f"/proc/{int(marker.read_text())}").exists()
                except ValueError:
                    alive = False
                if alive:
                    continue
            marker.write_text(str(os.getpid()))
            return index
    raise RuntimeError("no free 198.18.X.0/24 for test hosts")


def make_hosts(n: int, *, python_without_venv: bool = False) -> Site:
    """``n`` fresh test hosts on a new site (call ``close()`` when done).

    ``python_without_venv``: each host's ``python3`` on its PATH has no venv
    module (a Debian host without python3-venv), for the fault tests.
    """
    why = hosts_available()
    if why:
        raise RuntimeError(why)
    index = _claim_index()
    tag = f"{index}{secrets.token_hex(2)}"
    base = Path(f"/var/tmp/den-sshhosts/{tag}")
    site = Site(index=index, bridge=f"dnb{tag}"[:15], gateway=f"198.18.{index}.1", base=base)
    atexit.register(site.close)
    try:
        base.mkdir(parents=True, exist_ok=True)
        base.chmod(0o755)
        base.parent.chmod(0o755)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        _run("ip", "link", "add", site.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{site.gateway}/24", "dev", site.bridge)
        _run("ip", "link", "set", site.bridge, "up")
        site.user = f"dh{tag}"[:31]
        site.nominal_home = base / "home"
        site.nominal_home.mkdir()
        site.nominal_home.chmod(0o755)
        _run("useradd", "--no-create-home", "--home-dir", str(site.nominal_home),
             "--shell", "/bin/sh", "--user-group", site.user)
        site.users.append(site.user)
        _run("usermod", "-p", "*", site.user)  # no password, yet not locked (sshd refuses "!")
        site.uid = pwd.getpwnam(site.user).pw_uid
        site.private_key_pem, site.public_key = _keypair()
        for number in range(n):
            site.hosts.append(_make_host(site, tag, number, python_without_venv))
    except BaseException:
        site.close()
        raise
    return site


def _make_host(site: Site, tag: str, number: int, no_venv: bool) -> Host:
    netns = f"dnh{tag}-{number}"
    site.netns.append(netns)
    ip = f"198.18.{site.index}.{number + 2}"
    outer, inner = f"dv{tag}{number}o"[:15], f"dv{tag}{number}i"[:15]
    _run("ip", "netns", "add", netns)
    _run("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
    _run("ip", "link", "set", outer, "master", site.bridge)
    _run("ip", "link", "set", outer, "up")
    _run("ip", "link", "set", inner, "netns", netns)
    _run("ip", "-n", netns, "addr", "add", f"{ip}/24", "dev", inner)
    _run("ip", "-n", netns, "link", "set", inner, "up")
    _run("ip", "-n", netns, "link", "set", "lo", "up")

    folder = site.base / f"host{number}"
    folder.mkdir()
    folder.chmod(0o755)  # the user's sshd session must traverse it, whatever the umask
    user = site.user
    entry = pwd.getpwnam(user)
    home = folder / "home"
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(parents=True)
    home.chmod(0o700)
    ssh_dir.chmod(0o700)
    (ssh_dir / "authorized_keys").write_text(site.public_key + "\n")
    (ssh_dir / "authorized_keys").chmod(0o600)
    for path in (home, ssh_dir, ssh_dir / "authorized_keys"):
        os.chown(path, entry.pw_uid, entry.pw_gid)

    path_dirs = "/usr/local/bin:/usr/bin:/bin"
    if no_venv:
        bin_dir = folder / "bin"
        bin_dir.mkdir()
        bin_dir.chmod(0o755)
        _write_python_without_venv(bin_dir / "python3")
        path_dirs = f"{bin_dir}:{path_dirs}"
    host_private, host_public = _keypair()
    host_key_path = folder / "ssh_host_ed25519_key"
    host_key_path.write_text(host_private)
    host_key_path.chmod(0o600)
    config = folder / "sshd_config"
    config.write_text("\n".join([
        f"ListenAddress {ip}",
        "Port 22",
        f"HostKey {host_key_path}",
        "PidFile none",
        "UsePAM no",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        "AuthorizedKeysFile .ssh/authorized_keys",
        f"AllowUsers {user}",
        "StrictModes yes",
        "Subsystem sftp internal-sftp",
        f"SetEnv PATH={path_dirs}",
        "LogLevel VERBOSE",
        "",
    ]))
    host = Host(ip=ip, user=user, port=22, private_key_pem=site.private_key_pem,
                host_key=host_public, netns=netns, home=home, uid=entry.pw_uid,
                host_key_path=host_key_path, nominal_home=site.nominal_home)
    host.sshd_pid = _start_sshd(netns, config, ip, 22, home, site.nominal_home)
    return host


def _write_python_without_venv(path: Path) -> None:
    """A python3 that cannot import venv (as on a Debian host without python3-venv)."""
    path.write_text(
        "#!/usr/bin/python3 -I\n"
        "import runpy, sys\n"
        "sys.modules['venv'] = None\n"
        "args = sys.argv[1:]\n"
        "while args and args[0].startswith('-') and args[0] not in ('-c', '-m'):\n"
        "    args.pop(0)\n"
        "if args[:1] == ['-c']:\n"
        "    sys.argv = ['-c', *args[2:]]\n"
        "    exec(compile(args[1], '<string>', 'exec'), {'__name__': '__main__'})\n"
        "elif args[:1] == ['-m']:\n"
        "    sys.argv = [args[1], *args[2:]]\n"
        "    runpy.run_module(args[1], run_name='__main__', alter_sys=True)\n"
        "else:\n"
        "    raise SystemExit('this test python3 runs only -c and -m')\n"
    )
    path.chmod(0o755)


# -- pytest ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ssh_site(live_server):
    """Two test hosts for the session, from which den's live server is
    reachable at the same URL as from here (``Site.expose``). Registered as a
    plugin in tests/conftest.py; skips where hosts cannot be made."""
    from urllib.parse import urlsplit

    why = hosts_available()
    if why:
        pytest.skip(why)
    site = make_hosts(2)
    site.expose(int(urlsplit(live_server.url).port or 80))
    yield site
    site.close()
