"""A whole den for a benchmark: ``manage.py serve`` in a temporary DEN_HOME.

SQLite and kombu's filesystem broker by default, or PostgreSQL and Redis when
``DATABASE_URL`` and ``CELERY_BROKER_URL`` are set. Used as a context manager,
it stops everything it started (and any node daemon started under its home).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalDen:
    """``with LocalDen(worker=True) as server: server.url, server.make_token(...)``."""

    def __init__(self, *, worker: bool = True, prefix: str = "den-bench-") -> None:
        self.worker = worker
        self.tmp = Path(tempfile.mkdtemp(prefix=prefix))
        # Enterable by den's cluster user (daemons run as it when den is root);
        # DEN_HOME inside is made private by den itself.
        self.tmp.chmod(0o755)
        self.home = self.tmp / "home"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.tmp / "serve.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DEN_", "DJANGO_"))}
        env.update({
            "DEN_HOME": str(self.home),
            "DEN_CLUSTER_ROOT": str(self.tmp / "clusters"),
            "DEN_SECRET_KEY": "bench-" + uuid.uuid4().hex,
            "DEN_PUBLIC_URL": self.url,
            "DEN_LOG_LEVEL": "INFO",  # the worker says "ready." at INFO
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        })
        if "DATABASE_URL" not in os.environ or "CELERY_BROKER_URL" not in os.environ:
            env.pop("DATABASE_URL", None)
            env.pop("CELERY_BROKER_URL", None)
        self.env = env
        self.backing = "PostgreSQL + Redis" if "DATABASE_URL" in env else "SQLite + filesystem broker"
        self.server: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LocalDen:
        command = [sys.executable, "manage.py", "serve", "--bind", f"127.0.0.1:{self.port}"]
        if not self.worker:
            command.append("--no-worker")
        with open(self.log, "wb") as out:
            self.server = subprocess.Popen(command, cwd=REPO, env=self.env, stdout=out,
                                           stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_healthy(120)
            if self.worker:
                self._wait_for_log("ready.", 60, "the Celery worker to start")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def _wait_healthy(self, timeout: float) -> None:
        assert self.server is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise RuntimeError(f"den exited ({self.server.returncode}):\n{self._tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"den did not answer {self.url}/healthz in {timeout:.0f} s:\n"
                           f"{self._tail()}")

    def _wait_for_log(self, text: str, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log.read_text(errors="replace"):
                return
            time.sleep(0.1)
        raise RuntimeError(f"timed out waiting for {what}:\n{self._tail()}")

    def make_token(self, username: str) -> str:
        """A new user and a write token for it, made through den's own service.
        The user is staff: local clusters are for den's administrators."""
        code = (
            "from django.contrib.auth import get_user_model\n"
            "from registry import services\n"
            f"user = get_user_model().objects.create_user({username!r}, "
            f"{username + '@example.com'!r}, 'bench password 123', is_staff=True)\n"
            "_, plain = services.token_create(user=user, name='bench', scope='write', "
            "expires_in_days=1)\n"
            "print(plain)\n"
        )
        out = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=REPO,
                             env=self.env, capture_output=True, text=True, check=True)
        return out.stdout.strip().splitlines()[-1]

    def daemon_pids(self) -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                args = (entry / "cmdline").read_bytes().split(b"\0")
                if b"den.node" in args and any(str(self.tmp).encode() in a for a in args):
                    pids.append(int(entry.name))
        return pids

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.server is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.server.pid, signal.SIGTERM)
            try:
                self.server.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.server.pid, signal.SIGKILL)
                self.server.wait()
        for pid in self.daemon_pids():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        shutil.rmtree(self.tmp, ignore_errors=True)
