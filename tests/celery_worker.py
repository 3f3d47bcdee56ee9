"""A real Celery worker for the whole test session, shared by every suite
that needs one (compute, e2e, browser): one ``celery -A den worker`` on the
test database, consuming a queue of its own (``compute-test-<random>``) so
that other runs sharing the same Redis never take its messages, and whose
local node daemons call back into pytest-django's live server.

Registered as a plugin in ``tests/conftest.py``, so there is exactly one
worker and one task route per session.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection

from compute import tasks
from registry.models import Resource

REPO = Path(__file__).resolve().parents[1]
FAKE_CLOUD_ADAPTER = "tests.compute.fake_cloud:FakeCloud"
#: The SkyPilot cluster names of this test run (the orphan sweep looks only at these).
SKY_PREFIX = f"den-t{uuid.uuid4().hex[:6]}-"


def _route_compute_tasks(queue: str) -> None:
    """Send this process's compute tasks to ``queue`` (the test worker's own)."""
    app = tasks.cluster_up._get_app()
    app.conf.task_routes = {"compute.*": {"queue": queue}}
    app.amqp.flush_routes()
    app.amqp.__dict__.pop("router", None)  # a cached property holding the old routes


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1,
             what: str = "condition") -> Any:
    """Poll until ``predicate()`` is truthy; return its value or fail saying what."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def _database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] or ""
    if db.get("PASSWORD"):
        auth += f":{db['PASSWORD']}"
    host = f"{auth}@{db['HOST']}" if auth else db["HOST"]
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{host}{port}/{db['NAME']}"


def node_processes(home: Path) -> dict[int, list[str]]:
    """Node daemons whose workdir is under ``home`` (our DEN_CLUSTER_ROOT, or one
    cluster's folder in it): pid -> argv."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = [a.decode() for a in (entry / "cmdline").read_bytes().split(b"\0") if a]
        except OSError:
            continue
        if "den.node" in args and any(str(home) in a for a in args):
            found[int(entry.name)] = args
    return found


class Worker:
    def __init__(self, home: Path, cluster_root: Path, queue: str, env: dict[str, str],
                 log: Path, python: str = sys.executable) -> None:
        self.python = python
        self.home = home
        self.cluster_root = cluster_root
        self.queue = queue
        self.env = env
        self.log_path = log
        self.process: subprocess.Popen = self.start()

    def start(self, **overrides: str) -> subprocess.Popen:
        """Start ``celery worker`` (again), with ``overrides`` in its environment,
        and wait until it is ready."""
        mark = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as out:
            process = subprocess.Popen(
                [self.python, "-m", "celery", "-A", "den", "worker", "-Q", self.queue,
                 "--concurrency", "2", "--pool", "prefork", "--without-gossip",
                 "--without-mingle", "--without-heartbeat", "--hostname", f"{self.queue}@%h",
                 "--loglevel", "INFO"],
                stdout=out, stderr=subprocess.STDOUT, env={**self.env, **overrides},
                cwd=str(REPO),
            )
        self.process = process
        wait_for(lambda: "ready." in self.log()[mark:] or process.poll() is not None, 60,
                 what="the Celery worker to start")
        if process.poll() is not None:
            raise RuntimeError(f"the Celery worker exited:\n{self.log()}")
        return process

    def kill(self) -> None:
        """kill -9 the worker: its pool processes, then the main process."""
        children = [int(entry.name) for entry in Path("/proc").iterdir()
                    if entry.name.isdigit() and _ppid(entry) == self.process.pid]
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def cluster_dir(self, resource: Resource) -> Path:
        return self.cluster_root / str(resource.pk)


def _ppid(entry: Path) -> int | None:
    try:
        return int((entry / "stat").read_text().rsplit(") ", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _careless_home(home: Path) -> dict[str, str]:
    """Lay out the worker's DEN_HOME as an older den (or a umask of 022) left
    it: the folder and its key files readable by everyone, and a stand-in for
    the SQLite database. The worker must make it private when it starts
    (tests/compute/test_local_security.py checks that, and that no daemon can
    read it). Returns the key variables the worker still needs in its
    environment (none, unless the test process rotates encryption keys)."""
    home.chmod(0o755)
    keys = django_settings.DEN_ENCRYPTION_KEYS
    for name, value in (("secret_key", django_settings.SECRET_KEY), ("encryption_key", keys[0]),
                        ("den.sqlite3", "SQLite format 3\0 (a stand-in)")):
        (home / name).write_text(value)
        (home / name).chmod(0o644)
    return {"DEN_ENCRYPTION_KEY": ",".join(keys)} if len(keys) > 1 else {}


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker, live_server, tmp_path_factory
                  ) -> Iterator[Worker]:
    """One real ``celery -A den worker`` for the session, on the test database,
    whose local daemons use the live server as their den."""
    if connection.vendor != "postgresql":
        pytest.skip("compute tests need PostgreSQL (run them through scripts/test)")
    base = tmp_path_factory.mktemp("compute")
    # Outside pytest's own temporary folder (mode 0700): when the tests run as
    # root, the daemons' unprivileged user must be able to reach the cluster
    # root, and DEN_HOME must be kept from it by den itself, not by its parent.
    outside = Path(tempfile.mkdtemp(prefix="den-compute-test-"))
    outside.chmod(0o755)
    home = outside / "home"
    home.mkdir()
    cluster_root = outside / "clusters"
    queue = f"compute-test-{uuid.uuid4().hex[:10]}"
    _route_compute_tasks(queue)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DEN_NODE_", "DEN_SECRET_KEY", "DEN_ENCRYPTION_KEY"))}
    env.update(_careless_home(home))
    env.update({
        "DATABASE_URL": _database_url(),
        "DEN_HOME": str(home),
        "DEN_CLUSTER_ROOT": str(cluster_root),
        # The suite's users are not staff; tests/compute/test_local_security.py
        # checks the default ("admins") in the processes where it is enforced.
        "DEN_LOCAL_CLUSTERS": "everyone",
        "CELERY_BROKER_URL": django_settings.CELERY_BROKER_URL,
        # Tasks the worker enqueues itself (a start's polls) go to its own queue.
        "DEN_COMPUTE_QUEUE": queue,
        "DEN_CLUSTER_DEN_URL": live_server.url,
        "DEN_CLUSTER_HEARTBEAT_SECONDS": "0.5",
        "DEN_CLUSTER_AUTH_CACHE_SECONDS": "1",
        "DEN_CLUSTER_START_TIMEOUT": "30",
        # The skypilot backend's cloud is the suite's fake (tests/compute/fake_cloud.py),
        # whose machines are this one: the daemons start beside the worker.
        "DEN_SKYPILOT_ADAPTER": FAKE_CLOUD_ADAPTER,
        "DEN_FAKE_CLOUD_DIR": str(outside / "fake-cloud"),
        "DEN_SKYPILOT_BOOTSTRAP": "local",
        "DEN_SKYPILOT_CLUSTER_PREFIX": SKY_PREFIX,
        "DEN_SKYPILOT_POLL_SECONDS": "0.3",
        "DEN_SKYPILOT_WAIT_SECONDS": "20",
        "DEN_SKYPILOT_START_TIMEOUT": "60",
        "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
    })
    log = base / "worker.log"
    worker: Worker | None = None
    # The test process drives the same fake cloud (the sweeps run in it too).
    os.environ["DEN_FAKE_CLOUD_DIR"] = env["DEN_FAKE_CLOUD_DIR"]
    try:
        worker = Worker(home, cluster_root, queue, env, log)
        yield worker
    finally:
        if worker is not None:
            worker.stop()
        # Daemons outlive the worker by design; end the ones this session started.
        for pid in node_processes(cluster_root):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        _route_compute_tasks("compute")
        shutil.rmtree(outside, ignore_errors=True)
