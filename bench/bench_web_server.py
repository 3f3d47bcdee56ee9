#!/usr/bin/env python
"""Web worker benchmark: den's worker (``den.webserver.DenWorker``) against
gunicorn's sync workers, in one run, on the same database.

    DATABASE_URL=postgres://... REDIS_URL=redis://... .venv/bin/python bench/bench_web_server.py

It makes a scratch database beside ``DATABASE_URL``'s (dropped at the end),
with one user, a token and a private resource, then for each worker kind
(``sync``, ``den``, and ``gevent`` when gevent is installed) starts
``gunicorn -w 2`` and measures with ``wrk`` (8 connections, interleaved
rounds):

    healthz   GET /healthz                       a plain Django view
    read      GET /api/v1/resources/<address>    a registry read with a token

and prints requests/s per kind and as a ratio to sync. Then, per kind, it
opens 200 sockets that each send half a request head and stall, and says
whether a normal request still answers (and how fast).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")


WORKERS = {
    "sync": ["-k", "sync"],
    "gevent": ["-k", "gevent"],
    "den": ["-k", "den.webserver.DenWorker", "--threads", "4"],
    "den-t1": ["-k", "den.webserver.DenWorker", "--threads", "1"],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def psql(url: str, sql: str) -> None:
    parts = urllib.parse.urlsplit(url)
    admin = parts._replace(path="/postgres").geturl()
    import psycopg2

    conn = psycopg2.connect(admin)
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(sql)
    conn.close()


def seed(env: dict[str, str]) -> tuple[str, str]:
    code = (
        "from django.contrib.auth import get_user_model\n"
        "from registry import services\n"
        "u = get_user_model().objects.create_user('benchuser', 'b@example.com', 'pw pw pw 123')\n"
        "services.resource_create(actor=u, name='model', type='env', config={'reqs': ['x']})\n"
        "_, plain = services.token_create(user=u, name='b', scope='read', expires_in_days=1)\n"
        "print(plain)\n"
    )
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    out = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=env,
                         check=True, capture_output=True, text=True)
    return "/api/v1/resources/benchuser/model", out.stdout.strip().splitlines()[-1]


class Gunicorn:
    def __init__(self, kind: str, env: dict[str, str], tmp: Path) -> None:
        self.kind, self.env, self.port = kind, env, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"gunicorn-{kind}.log"
        worker = WORKERS[kind]
        self.cmd = [sys.executable, "-m", "gunicorn", "den.wsgi:application", "-w", "2",
                    *worker, "-b", f"127.0.0.1:{self.port}", "--no-control-socket",
                    "--log-level", "warning", "--error-logfile", str(self.log)]
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Gunicorn:
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            time.sleep(0.2)
        self.__exit__()
        raise RuntimeError(f"{self.kind} did not start:\n{self.log.read_text()[-2000:]}")

    def cpu_seconds(self) -> float:
        """CPU time used so far by gunicorn's master and workers."""
        assert self.proc is not None
        total = 0.0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                pid, ppid = int(entry.name), int(fields[1])
                if self.proc.pid in (pid, ppid):
                    total += (int(fields[11]) + int(fields[12])) / CLK_TCK
        return total

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def wrk(url: str, path: str, token: str | None, seconds: int, connections: int
        ) -> tuple[float, int]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s"]
    if token:
        command += ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run([*command, url + path], capture_output=True, text=True,
                         timeout=seconds + 30).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    count = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if match is None or count is None or non2xx:
        raise RuntimeError(f"wrk failed against {url}{path}:\n{out}")
    return float(match.group(1)), int(count.group(1))


def stalled_sockets_check(url: str, count: int) -> str:
    """Open ``count`` sockets that send half a head, then time one request."""
    port = int(url.rsplit(":", 1)[1])
    sockets = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            sockets.append(sock)
        time.sleep(0.5)
        started = time.monotonic()
        try:
            status = httpx.get(f"{url}/healthz", timeout=10).status_code
            return f"answered {status} in {(time.monotonic() - started) * 1000:.0f} ms"
        except httpx.HTTPError as exc:
            return f"NO ANSWER within 10 s ({type(exc).__name__})"
    finally:
        for sock in sockets:
            sock.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--stalled", type=int, default=200)
    parser.add_argument("--kinds", default="", help="comma-separated, sync first (default: "
                        "sync,den and gevent when installed; den-t1 is den with one thread)")
    args = parser.parse_args()
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith("postgres") or not shutil.which("wrk"):
        print("Needs DATABASE_URL (PostgreSQL) and wrk (apt-get install wrk).", file=sys.stderr)
        return 2
    name = f"bench_web_{uuid.uuid4().hex[:8]}"
    psql(base, f"CREATE DATABASE {name}")
    tmp = Path(tempfile.mkdtemp(prefix="den-bench-web-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(DATABASE_URL=urllib.parse.urlsplit(base)._replace(path=f"/{name}").geturl(),
               DEN_HOME=str(tmp / "home"), DEN_SECRET_KEY="bench-" + uuid.uuid4().hex,
               DEN_LOG_LEVEL="WARNING")
    kinds = args.kinds.split(",") if args.kinds else \
        ["sync", "den"] + (["gevent"] if importlib.util.find_spec("gevent") else [])
    if kinds[0] != "sync" or not set(kinds) <= set(WORKERS):
        parser.error(f"--kinds: sync first, then any of {', '.join(WORKERS)}")
    try:
        path, token = seed(env)
        rates: dict[tuple[str, str], list[float]] = {}
        costs: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for kind in kinds:
                with Gunicorn(kind, env, tmp) as server:
                    for label, target, auth in (("healthz", "/healthz", None), ("read", path, token)):
                        wrk(server.url, target, auth, 1, args.connections)  # warm up
                        before = server.cpu_seconds()
                        rate, count = wrk(server.url, target, auth, args.seconds, args.connections)
                        cpu_ms = (server.cpu_seconds() - before) * 1000 / max(count, 1)
                        rates.setdefault((kind, label), []).append(rate)
                        costs.setdefault((kind, label), []).append(cpu_ms)
        print(f"\ngunicorn -w 2, wrk -c{args.connections}, {args.rounds} x {args.seconds} s; "
              "medians: req/s (ratio to sync) and server CPU ms per request (ratio to sync)")
        for label in ("healthz", "read"):
            base_rate = statistics.median(rates[("sync", label)])
            base_cost = statistics.median(costs[("sync", label)])
            cells = []
            for kind in kinds:
                rate = statistics.median(rates[(kind, label)])
                cost = statistics.median(costs[(kind, label)])
                cells.append(f"{kind} {rate:6.0f} ({rate / base_rate:.2f}x) "
                             f"{cost:5.2f} ms ({cost / base_cost:.2f}x)")
            print(f"  {label:8} " + "   ".join(cells))
        print(f"\n{args.stalled} sockets that each sent half a head, then one normal request:")
        for kind in kinds:
            with Gunicorn(kind, env, tmp) as server:
                print(f"  {kind:7} {stalled_sockets_check(server.url, args.stalled)}")
    finally:
        with contextlib.suppress(Exception):
            psql(base, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
