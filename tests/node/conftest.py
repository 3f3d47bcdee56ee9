"""Fixtures for the node daemon tests: real daemons on free loopback ports.

No Django here: these tests start ``python -m den.node`` as subprocesses.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from den.node.caller import NodeClient

REPO = Path(__file__).resolve().parents[2]
CLUSTER = "/alice/cpu"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeDen:
    """Answers auth checks from a table: token -> {address: best level}, with den's
    statuses (401 unknown token, 404 no access, 403 read but not write); records
    the checks and heartbeats it gets."""

    def __init__(self, grants: dict[str, dict[str, str]] | None = None) -> None:
        self.grants: dict[str, dict[str, str]] = grants if grants is not None else {
            "den_alice": {CLUSTER: "write", "/alice/train": "write"},
            "den_bob": {CLUSTER: "read", "/alice/train": "read"},
            "den_carol": {"/alice/train": "read"},  # may call /alice/train only
        }
        self.checks: list[tuple[str, str, str]] = []
        self.heartbeats: list[tuple[str, str, dict]] = []
        #: path -> (status, body, content type): what den answers a daemon's
        #: deployment requests with (den.node.restore); each request is recorded.
        self.deployments: dict[str, tuple[int, bytes, str]] = {}
        self.deployment_gets: list[tuple[str, str]] = []
        self.deployment_delay = 0.0
        den = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlparse(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                token = self.headers.get("authorization", "").removeprefix("Bearer ")
                if "/-/deployment" in url.path:
                    den.deployment_gets.append((url.path, token))
                    time.sleep(den.deployment_delay)
                    status, data, ctype = den.deployments.get(
                        url.path, (404, b'{"error": {"code": "no_deployment"}}',
                                   "application/json"))
                    self.send_response(status)
                    self.send_header("content-type", ctype)
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                den.checks.append((token, q.get("address", ""), q.get("level", "")))
                grants = den.grants.get(token)
                if grants is None:
                    return self._reply(401, {"error": {"code": "unauthorized"}})
                have = grants.get(q["address"])
                if have is None:
                    return self._reply(404, {"error": {"code": "not_found"}})
                if q["level"] == "write" and have != "write":
                    return self._reply(403, {"error": {"code": "forbidden"}})
                return self._reply(200, {"username": token[4:], "level": have})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                den.heartbeats.append((self.path, self.headers.get("authorization", ""), body))
                self._reply(404, {"error": {"code": "not_found"}})

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Daemon:
    """A node daemon subprocess; ``url`` is its base URL."""

    def __init__(self, workdir: Path, *args: str, token: str | None = None,
                 env: dict[str, str] | None = None, wait: bool = True) -> None:
        """``token``: the cluster token, handed over on stdin as den's backends
        do; ``env``: extra variables for the daemon's own environment; ``wait``:
        return only once it answers /health."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"daemon-{self.port}.log"
        extra = dict(env or {})
        environ = {k: v for k, v in os.environ.items() if not k.startswith("DEN_NODE_")}
        environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (extra.pop("PYTHONPATH", ""), str(REPO), environ.get("PYTHONPATH", ""))
            if p)
        environ.update(extra)
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
        if not wait:
            return
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

    def rss_bytes(self) -> int:
        """The daemon process's resident memory (VmRSS)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS in /proc/<pid>/status")

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
