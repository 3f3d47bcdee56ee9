"""Fixtures for the node daemon tests: real daemons on free loopback ports.

No Django here: these tests start ``python -m den.node`` as subprocesses.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from den.node.caller import NodeClient

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """A node daemon subprocess; ``url`` is its base URL."""

    def __init__(self, workdir: Path, *args: str, token: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        """``token``: the cluster token, handed over on stdin as den's backends
        do; ``env``: extra variables for the daemon's own environment."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"daemon-{self.port}.log"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("DEN_NODE_")}
        environ["PYTHONPATH"] = str(REPO) + os.pathsep + environ.get("PYTHONPATH", "")
        environ.update(env or {})
        if token is not None:
            args = (*args, "--cluster-token-file", "-")
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "den.node", "--host", "127.0.0.1", "--port", str(self.port),
             "--workdir", str(workdir / "node"), "--log-level", "warning", *args],
            stdout=self._log, stderr=subprocess.STDOUT, env=environ, cwd=str(REPO),
            stdin=subprocess.PIPE if token is not None else subprocess.DEVNULL,
        )
        if token is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(f"{token}\n".encode())
            self.proc.stdin.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited early:\n{self.log()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"daemon did not come up:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture(scope="session")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon without den auth, shared by the tests that do not need their own."""
    d = Daemon(tmp_path_factory.mktemp("node"), "--no-den-auth")
    yield d
    d.stop()


@pytest.fixture()
def node(daemon: Daemon) -> Iterator[NodeClient]:
    with NodeClient(daemon.url, stream=None) as client:
        yield client
