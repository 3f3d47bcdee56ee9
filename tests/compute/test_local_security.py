"""Local clusters run their users' code on den's own server: who may have one,
and what that code can reach, through the real Celery worker and real daemons.

The session worker (tests/celery_worker.py) starts with a DEN_HOME laid out
carelessly (mode 0755, its key files and a database file 0644) and a cluster
root outside it; when the tests run as root, its daemons run as the
unprivileged ``den-cluster`` user on a node runtime.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from compute import services
from compute.models import ClusterEvent, ClusterState
from den.node.caller import NodeClient
from registry import credentials
from registry.models import ApiToken
from tests.compute import remote_fns
from tests.compute.conftest import node_processes, state_of, wait_for, wait_status
from tests.conftest import TokenClient

REPO = Path(__file__).resolve().parents[2]
AS_ROOT = os.geteuid() == 0
TOKEN_SHAPED = re.compile(rb"den_[0-9A-Za-z]{36}")


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(part) for part in text.split()]


def _call(url: str, token: str, fn, *args):
    with NodeClient(url, token=token, stream=None) as node:
        node.put_function(fn.__name__, fn)
        return node.call(fn.__name__, args=args)


# Who may have one ---------------------------------------------------------------


def test_a_non_admins_local_cluster_is_refused(make_cluster, people, settings):
    settings.DEN_LOCAL_CLUSTERS = "admins"  # the default
    cpu = make_cluster("mine")
    api = TokenClient().as_token(people["tokens"]["alice"])
    response = api.post(f"/api/v1/resources{cpu.address}/-/cluster/up")
    assert response.status_code == 403, response.content
    error = response.json()["error"]
    assert error["field"] == "provider"
    assert error["code"] == "local_cluster_not_allowed"
    assert "administrator" in error["message"] and "DEN_LOCAL_CLUSTERS" in error["message"]
    # Nothing changed: no state, no event, no token, nothing queued.
    assert api.get(f"/api/v1/resources{cpu.address}/-/cluster").json()["status"] == "down"
    assert not ClusterEvent.objects.filter(cluster__resource=cpu).exists()
    assert not ApiToken.objects.filter(cluster=cpu).exists()


def test_an_admins_local_cluster_comes_up(up_cluster, people, settings):
    settings.DEN_LOCAL_CLUSTERS = "admins"
    alice = people["users"]["alice"]
    alice.is_staff = True
    alice.save(update_fields=["is_staff"])
    cpu = up_cluster("admins")
    assert _call(state_of(cpu).daemon_url, people["tokens"]["alice"], remote_fns.add, 2, 3) == 5


def test_an_owner_who_lost_staff_after_asking_gets_a_failed_start(make_cluster, people,
                                                                  settings):
    """The worker checks again before it starts anything (run here, in-process,
    on a request that no worker was told about)."""
    settings.DEN_LOCAL_CLUSTERS = "admins"
    cpu = make_cluster("demoted")
    state = ClusterState.objects.create(resource=cpu, status="provisioning", backend="local")
    assert services.cluster_run_up(state_id=state.pk, seq=0, claim="test-claim") == "failed"
    state.refresh_from_db()
    assert state.status == "failed"
    assert "provider 'local'" in state.message
    assert not ApiToken.objects.filter(cluster=cpu).exists()


# What its code can reach ----------------------------------------------------------


@pytest.mark.skipif(not AS_ROOT, reason="only a den running as root starts daemons as "
                                        "another user")
def test_code_runs_unprivileged_outside_den_home(up_cluster, people, celery_worker):
    cpu = up_cluster("jail")
    home = celery_worker.home
    den_pids = [os.getpid(), celery_worker.process.pid, *_children(celery_worker.process.pid)]
    paths = [str(home / name) for name in ("secret_key", "encryption_key", "den.sqlite3")]
    paths += [f"/proc/{pid}/environ" for pid in den_pids]
    got = _call(state_of(cpu).daemon_url, people["tokens"]["alice"],
                remote_fns.what_i_can_reach, str(home), paths)

    cluster_user = pwd.getpwnam("den-cluster")
    assert got["uid"] == got["euid"] == cluster_user.pw_uid != 0
    assert got["gid"] == cluster_user.pw_gid != 0 and 0 not in got["groups"]
    assert "readable" not in got["reads"].values(), got
    assert {got["reads"][path] for path in paths[:3]} == {"PermissionError"}
    assert got["lists_den_home"] is False
    cwd = Path(got["cwd"])
    assert home not in cwd.parents and cwd != home
    assert celery_worker.cluster_root in cwd.parents
    assert home not in Path(got["home"]).parents

    # The worker made its DEN_HOME private when it started, whatever it found.
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    for name in ("secret_key", "encryption_key", "den.sqlite3"):
        assert stat.S_IMODE((home / name).stat().st_mode) == 0o600, name


def test_the_cluster_token_is_nowhere_its_code_can_read(up_cluster, people, celery_worker):
    cpu = up_cluster("secrets")
    state = state_of(cpu)
    roots = [str(celery_worker.cluster_root), "/dev/shm", "/var/tmp", "/tmp"]
    got = _call(state.daemon_url, people["tokens"]["alice"], remote_fns.find_tokens, roots)
    daemon = state.handles["pid"]
    assert got["daemon_pid"] == daemon
    assert got["files"] > 100  # it did look: the runtime and its workdir at least

    live = set(ApiToken.objects.filter(cluster=cpu, revoked_at__isnull=True)
               .values_list("token_hash", flat=True))
    assert len(live) == 1
    leaked = {t: where for t, where in got["found"].items()
              if credentials.hash_token(t) in live}
    assert not leaked, f"the cluster token can be read at {leaked}"
    # The daemon is non-dumpable: its code (same OS user) cannot read its environment.
    assert got["proc"][f"/proc/{daemon}/environ"] == "PermissionError"
    assert got["proc"][f"/proc/{daemon}/cmdline"] == "readable"  # and it holds no token

    if AS_ROOT:  # the daemon's own environment does not hold it either
        environ = Path(f"/proc/{daemon}/environ").read_bytes()
        cmdline = Path(f"/proc/{daemon}/cmdline").read_bytes()
        assert not TOKEN_SHAPED.search(environ) and b"DEN_NODE_" not in environ
        assert not TOKEN_SHAPED.search(cmdline)


# What its events tell readers ------------------------------------------------------


def test_event_messages_name_no_folders_or_pids(up_cluster, people, celery_worker):
    cpu = up_cluster("quiet")
    pid = state_of(cpu).handles["pid"]
    alice = people["users"]["alice"]
    services.cluster_request_stop(actor=alice, resource=cpu)
    wait_status(cpu, "stopped", worker=celery_worker)
    services.cluster_request_teardown(actor=alice, resource=cpu)
    wait_status(cpu, "terminated", worker=celery_worker)
    events = list(ClusterEvent.objects.filter(cluster__resource=cpu))
    kinds = {event.kind for event in events}
    assert {"daemon.started", "daemon.stopped", "cluster.cleaned"} <= kinds
    for event in events:
        for detail in (str(celery_worker.cluster_root), str(celery_worker.home), str(pid), "PID"):
            assert detail not in event.message, (event.kind, event.message)
    # The details stay in the data, which only the cluster's managers see.
    started = next(e for e in events if e.kind == "daemon.started")
    assert started.data["pid"] == pid


def test_a_failed_start_keeps_its_log_out_of_the_message(celery_worker, make_cluster, people):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        cpu = make_cluster("busy", server_port=busy.getsockname()[1])
        services.cluster_request_up(actor=people["users"]["alice"], resource=cpu)
        state = wait_status(cpu, "failed", worker=celery_worker)
    failed = ClusterEvent.objects.get(cluster__resource=cpu, kind="failed")
    assert "exited before it answered" in failed.message and "details" in failed.message
    for text in (failed.message, state.message):
        assert "in use" not in text.lower() and "Traceback" not in text
        assert str(celery_worker.cluster_root) not in text
    assert "address already in use" in failed.data["log_tail"].lower()


@pytest.mark.skipif(not AS_ROOT, reason="only a den running as root looks for a python "
                                        "for another user")
@pytest.mark.parametrize("case", ["no python", "unreachable root", "root in DEN_HOME"])
def test_a_start_that_cannot_work_fails_saying_what_to_do(case, make_cluster, settings,
                                                         tmp_path):
    """Run in-process on a request no worker was told about."""
    reachable = Path(tempfile.mkdtemp(prefix="den-clusters-test-"))
    reachable.chmod(0o755)
    root, expected = {
        "no python": (reachable, "Found no Python 3.9 or newer (with venv) that the user "
                                 "den-cluster can run"),
        "unreachable root": (tmp_path / "clusters", "cannot reach DEN_CLUSTER_ROOT"),
        "root in DEN_HOME": (Path(settings.DEN_HOME) / "clusters", "inside DEN_HOME"),
    }[case]
    settings.DEN_CLUSTER_ROOT = str(root)
    if case == "no python":
        settings.DEN_CLUSTER_PYTHON = "/nonexistent/python3"
    try:
        cpu = make_cluster("doomed")
        state = ClusterState.objects.create(resource=cpu, status="provisioning",
                                            backend="local")
        assert services.cluster_run_up(state_id=state.pk, seq=0, claim="test-claim") == "failed"
        state.refresh_from_db()
        assert state.status == "failed"
        assert expected in state.message
        assert str(root) not in state.message and "/nonexistent" not in state.message
        failed = ClusterEvent.objects.get(cluster__resource=cpu, kind="failed")
        if case == "no python":
            assert "/nonexistent/python3" in failed.data["tried"]
        else:
            assert failed.data["cluster_root"] == str(root)
        assert not node_processes(root)
        assert not ApiToken.objects.filter(cluster=cpu, revoked_at__isnull=True).exists()
    finally:
        shutil.rmtree(reachable, ignore_errors=True)


def test_a_daemon_an_older_den_started_inside_den_home_is_still_stopped(settings, tmp_path):
    """Before DEN_CLUSTER_ROOT, daemons lived in DEN_HOME/clusters: one that
    still runs after an upgrade is found, stopped and cleaned up."""
    from compute.backends import get_backend

    settings.DEN_HOME = tmp_path / "home"
    settings.DEN_CLUSTER_ROOT = str(tmp_path / "clusters")
    legacy = settings.DEN_HOME / "clusters" / "42"
    (legacy / "node").mkdir(parents=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    daemon = subprocess.Popen(
        [sys.executable, "-m", "den.node", "--no-den-auth", "--port", str(port),
         "--workdir", str(legacy / "node"), "--log-level", "warning"],
        env={**os.environ, "PYTHONPATH": str(REPO)}, stdin=subprocess.DEVNULL,
        start_new_session=True)
    handles = {"pid": daemon.pid, "port": port}
    backend = get_backend("local")
    try:
        wait_for(lambda: backend.status("42", handles) == "up", 20, what="the old daemon")
        events: list[str] = []
        backend.teardown("42", handles, lambda kind, message="", **data: events.append(kind))
        assert daemon.wait(15) is not None
        assert "daemon.stopped" in events and not legacy.exists()
        assert backend.status("42", handles) == "stopped"
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()


# den's own processes and files ----------------------------------------------------


def _den_env(home: Path) -> dict[str, str]:
    """An environment for a den process with the embedded defaults under ``home``."""
    drop = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DEN_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update({"DEN_HOME": str(home), "PYTHONPATH": str(REPO),
                "DJANGO_SETTINGS_MODULE": "den.settings"})
    return env


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux only")
@pytest.mark.parametrize("module", ["den.wsgi", "den.asgi", "den.celery"])
def test_den_processes_are_not_dumpable(module, tmp_path):
    """Non-dumpable, their forks too (gunicorn workers, Celery's pool): no process
    of the same OS user can read their environment or memory through /proc."""
    script = (
        f"import ctypes, os, {module}\n"
        "libc = ctypes.CDLL('libc.so.6')\n"
        "def is_dumpable(): return libc.prctl(3, 0, 0, 0, 0) == 1  # PR_GET_DUMPABLE\n"
        "read, write = os.pipe()\n"
        "if os.fork() == 0:\n"
        "    os.write(write, b'1' if is_dumpable() else b'0')\n"
        "    os._exit(0)\n"
        "print(int(is_dumpable()), os.read(read, 1).decode())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], env=_den_env(tmp_path / "home"),
                          capture_output=True, text=True, timeout=60, cwd=str(REPO))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "0"]


def test_den_home_is_private_whatever_made_its_files(tmp_path):
    """Keys, the SQLite database and its journal, emails with sign-up links,
    the broker's messages and the cache: everything under DEN_HOME is made
    0600 (folders 0700), and older files are fixed when den starts."""
    home = tmp_path / "home"
    (home / "outbox").mkdir(parents=True)
    for folder in (home, home / "outbox"):
        folder.chmod(0o755)
    (home / "secret_key").write_text("an old key")
    (home / "outbox" / "old.log").write_text("an old sign-up link")
    for path in (home / "secret_key", home / "outbox" / "old.log"):
        path.chmod(0o644)
    script = (
        "import django\n"
        "django.setup()\n"
        "from django.core.cache import cache\n"
        "from django.core.mail import send_mail\n"
        "from django.db import connection\n"
        "with connection.cursor() as cursor:\n"
        "    cursor.execute('CREATE TABLE t (x)')\n"
        "    cursor.execute('INSERT INTO t VALUES (1)')\n"
        "cache.set('k', 'v')\n"
        "send_mail('Join', 'http://den/invite/secret', 'den@x', ['bob@x'])\n"
        "from den.celery import app\n"
        "with app.connection_for_write() as conn:\n"
        "    conn.SimpleQueue('modes').put({'x': 1})\n"
    )
    done = subprocess.run([sys.executable, "-c", script], env=_den_env(home),
                          capture_output=True, text=True, timeout=120, cwd=str(REPO))
    assert done.returncode == 0, done.stderr
    made = {p.relative_to(home).as_posix(): stat.S_IMODE(p.lstat().st_mode)
            for p in home.rglob("*") if not p.is_symlink()}
    # Static files are public (a web server may serve them); the rest is den's.
    assert made.pop("static") == 0o755
    made = {name: mode for name, mode in made.items() if not name.startswith("static/")}
    for expected in ("den.sqlite3", "encryption_key", "secret_key", "outbox/old.log"):
        assert expected in made
    assert any(name.startswith("outbox/") and name != "outbox/old.log" for name in made)
    assert any(name.startswith("cache/") and made[name] == 0o600 for name in made)
    assert any(name.startswith("broker/queue/") for name in made)
    wrong = {name: oct(mode) for name, mode in made.items()
             if mode != (0o700 if (home / name).is_dir() else 0o600)}
    assert not wrong, f"not private: {wrong}"
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
