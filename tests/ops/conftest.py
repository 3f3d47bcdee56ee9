"""Real servers for the operators' tests: den started as a subprocess (on a
database of its own, in the test PostgreSQL, or on SQLite), and a Redis of a
test's own that it can stop and start again.

Nothing here mocks a part: den answers over HTTP from its own processes, and
Redis is a ``redis-server`` on a free loopback port.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg2
import pytest

REPO = Path(__file__).resolve().parents[2]
#: Generous bounds: the machine is shared; these say "answers at all".
START_TIMEOUT = 120.0
ANSWER_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float, what: str,
               interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def base_env(**extra: str) -> dict[str, str]:
    """The test process's environment without den's, Django's or Celery's
    settings (each server gets its own), plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DEN_", "DJANGO_", "CELERY_", "PROMETHEUS_"))
           and k not in ("DATABASE_URL", "REDIS_URL")}
    env.update({"DEN_LOGIN_RATE": "100000/min", "DEN_LOG_LEVEL": "INFO"})
    env.update(extra)
    return env


# -- Redis --------------------------------------------------------------------


class RedisServer:
    """A ``redis-server`` of one test's own, on a fixed free port, that the test
    stops (``stop``: data saved to its folder, as a clean shutdown does;
    ``kill``: gone at once) and starts again with what it saved."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "redis.log", "ab") as out:
            self.process = subprocess.Popen(
                ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                 "--appendonly", "no", "--dir", str(self.folder), "--dbfilename", "dump.rdb"],
                stdout=out, stderr=subprocess.STDOUT)
        wait_until(self.answers, 20, "redis-server to answer")

    def answers(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def client(self) -> Any:
        import redis

        return redis.Redis(port=self.port, socket_timeout=2)

    def stop(self) -> None:
        """Save what it holds and stop (SHUTDOWN SAVE), like a restart that keeps data."""
        if self.process is None:
            return
        with contextlib.suppress(Exception):
            self.client().shutdown(save=True)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture
def redis_server(tmp_path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is missing: apt-get install redis-server (scripts/test does)")
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.kill()


# -- PostgreSQL ---------------------------------------------------------------


def postgres_url() -> str:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        pytest.skip("needs the test PostgreSQL (DATABASE_URL; scripts/test starts it)")
    return url


def admin_connection() -> Any:
    url = postgres_url()
    conn = psycopg2.connect(urllib.parse.urlsplit(url)._replace(path="/postgres").geturl())
    conn.autocommit = True
    return conn


@dataclass
class Database:
    """A database of one test's own in the test PostgreSQL."""

    name: str
    url: str

    def drop(self) -> None:
        with contextlib.closing(admin_connection()) as conn, conn.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")

    def create(self) -> None:
        with contextlib.closing(admin_connection()) as conn, conn.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {self.name}")


@pytest.fixture
def database() -> Iterator[Database]:
    base = postgres_url()
    name = f"test_ops_{uuid.uuid4().hex[:10]}"
    db = Database(name, urllib.parse.urlsplit(base)._replace(path=f"/{name}").geturl())
    db.create()
    try:
        yield db
    finally:
        db.drop()


# -- den ----------------------------------------------------------------------


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


SEED = """
import json
from django.contrib.auth import get_user_model
from registry import services
out = {}
for name in %(users)r:
    user = get_user_model().objects.create_user(name, f"{name}@example.com", "pw pw pw 1234")
    _, out[name] = services.token_create(user=user, name="t", scope="write", expires_in_days=1)
print("TOKENS " + json.dumps(out))
"""


@dataclass
class Den:
    """``manage.py serve`` as a subprocess, answering on ``url``."""

    env: dict[str, str]
    home: Path
    log: Path
    port: int = field(default_factory=free_port)
    workers: int = 1
    process: subprocess.Popen[bytes] | None = None
    tokens: dict[str, str] = field(default_factory=dict)
    workers_started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *extra: str) -> Den:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "serve", "--bind", f"127.0.0.1:{self.port}",
                 "--workers", str(self.workers), "--no-worker", *extra],
                cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        self._wait_up()
        return self

    def _wait_up(self) -> None:
        def up() -> bool:
            assert self.process is not None and self.process.poll() is None, \
                f"den exited:\n{self.log_text()[-4000:]}"
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{self.url}/livez", timeout=2).status_code == 200
            return False

        wait_until(up, START_TIMEOUT, "den to answer", 0.2)

    def start_processes(self) -> Den:
        """Start den as production does (``den.processes``): migrate, then
        gunicorn with den's config; the first admin and static files are
        serve's business and are left out."""
        from den import processes

        self.manage(*processes.migrate_command()[2:])
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                processes.web_command(bind=f"127.0.0.1:{self.port}", workers=self.workers),
                cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        self._wait_up()
        return self

    def start_worker(self, name: str = "w1") -> subprocess.Popen[bytes]:
        """A Celery worker (``den.processes.worker_command``) beside this den."""
        from den import processes

        log = self.log.with_name(f"worker-{name}.log")
        with open(log, "ab") as out:
            worker = subprocess.Popen(
                [*processes.worker_command(hostname=f"{name}@%h", concurrency=1),
                 "--without-gossip", "--without-mingle"],
                cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        self.workers_started.append(worker)
        wait_until(lambda: "ready." in log.read_text(errors="replace")
                   or worker.poll() is not None, START_TIMEOUT, "the Celery worker to start")
        assert worker.poll() is None, log.read_text(errors="replace")[-3000:]
        return worker

    def stop(self) -> None:
        for worker in self.workers_started:
            _stop_group(worker)
        self.workers_started.clear()
        if self.process is None:
            return
        _stop_group(self.process)
        self.process = None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def manage(self, *args: str, check: bool = True, input: str | None = None
               ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=self.env,
                                capture_output=True, text=True, timeout=180, input=input)
        if check:
            assert result.returncode == 0, f"manage.py {args}:\n{result.stdout[-2000:]}\n" \
                                           f"{result.stderr[-3000:]}"
        return result

    def seed(self, *users: str) -> dict[str, str]:
        out = self.manage("shell", "-c", SEED % {"users": list(users)}).stdout
        self.tokens.update(json.loads(out.split("TOKENS ", 1)[1]))
        return self.tokens

    def client(self, user: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        headers.update(kwargs.pop("headers", {}))
        return httpx.Client(base_url=self.url, headers=headers,
                            timeout=kwargs.pop("timeout", ANSWER_TIMEOUT), **kwargs)


@pytest.fixture
def make_den(tmp_path) -> Iterator[Callable[..., Den]]:
    """``make_den(**env)``: a den (not started) with its own DEN_HOME and keys."""
    made: list[Den] = []

    def make(workers: int = 1, **env: str) -> Den:
        n = len(made)
        home = tmp_path / f"den{n}" / "home"
        home.parent.mkdir(parents=True, exist_ok=True)
        full = base_env(DEN_HOME=str(home), DEN_SECRET_KEY="ops-test-" + uuid.uuid4().hex,
                        DEN_CACHE_KEY_PREFIX=f"ops-{uuid.uuid4().hex[:8]}:")
        full.update(env)
        den = Den(env=full, home=home, log=tmp_path / f"den{n}" / "serve.log", workers=workers)
        made.append(den)
        return den

    yield make
    for den in made:
        den.stop()
