"""Benchmark: from ``up_if_not()`` on a new local cluster to the first call's result.

It starts a whole den the way a user does (``manage.py serve``: migrations,
gunicorn with sync workers, a Celery worker with beat) in a temporary ``DEN_HOME``:
SQLite and kombu's filesystem broker, or PostgreSQL and Redis when
``DATABASE_URL`` and ``CELERY_BROKER_URL`` are set. It creates a user and a token,
then times, through the client only::

    cpu = den.cluster(name=..., provider="local").up_if_not()
    fn = den.function(double).to(cpu)
    fn(1)

for ``--runs`` new clusters (each torn down afterwards), prints each figure and
their median against the goal (5 s) with PASS or MISS, and removes everything it
started.

    .venv/bin/python bench/bench_up_to_first_call.py [--runs 3] [--goal 5]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import den  # noqa: E402


def double(x: int) -> int:
    return 2 * x


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(url: str, server: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"den exited ({server.returncode}):\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"den did not answer {url}/healthz in {timeout:.0f} s:\n"
                       f"{log.read_text()[-3000:]}")


def _worker_ready(log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "ready." in log.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise RuntimeError(f"the Celery worker did not start:\n{log.read_text()[-3000:]}")


def _make_token(env: dict[str, str], username: str) -> str:
    code = (
        "from django.contrib.auth import get_user_model\n"
        "from registry import services\n"
        f"user = get_user_model().objects.create_user({username!r}, "
        f"{username + '@example.com'!r}, 'bench password 123')\n"
        "_, plain = services.token_create(user=user, name='bench', scope='write', "
        "expires_in_days=1)\n"
        "print(plain)\n"
    )
    out = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=REPO, env=env,
                         capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def _daemon_pids(home: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            args = (entry / "cmdline").read_bytes().split(b"\0")
            if b"den.node" in args and any(str(home).encode() in a for a in args):
                pids.append(int(entry.name))
    return pids


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--goal", type=float, default=5.0, help="seconds")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="den-bench-up-"))
    home = tmp / "home"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEN_", "DJANGO_"))}
    env.update({
        "DEN_HOME": str(home),
        "DEN_SECRET_KEY": "bench-" + uuid.uuid4().hex,
        "DEN_PUBLIC_URL": url,
        "DEN_LOG_LEVEL": "INFO",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    })
    if "DATABASE_URL" not in os.environ or "CELERY_BROKER_URL" not in os.environ:
        env.pop("DATABASE_URL", None)
        env.pop("CELERY_BROKER_URL", None)
    backing = "PostgreSQL + Redis" if "DATABASE_URL" in env else "SQLite + filesystem broker"
    log = tmp / "serve.log"
    server: subprocess.Popen[bytes] | None = None
    user = f"bench{uuid.uuid4().hex[:8]}"
    figures: list[float] = []
    clusters: list[den.Cluster] = []
    try:
        print(f"starting den ({backing}) on {url} ...", flush=True)
        with open(log, "wb") as out:
            server = subprocess.Popen(
                [sys.executable, "manage.py", "serve", "--bind", f"127.0.0.1:{port}"],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        _wait_healthy(url, server, log, 120)
        _worker_ready(log, 60)
        token = _make_token(env, user)
        os.environ["DEN_CONFIG"] = str(tmp / "client.yaml")
        den.login(url=url, token=token, persist=False)

        for run in range(args.runs):
            started = time.perf_counter()
            cpu = den.cluster(name=f"bench-{run}", provider="local").up_if_not(quiet=True)
            clusters.append(cpu)
            fn = den.function(double).to(cpu)
            result = fn(1)
            elapsed = time.perf_counter() - started
            assert result == 2, result
            figures.append(elapsed)
            print(f"run {run + 1}: up_if_not() to first result {elapsed:.2f} s", flush=True)
            cpu.teardown()
    finally:
        for cpu in clusters:
            with contextlib.suppress(Exception):
                cpu.teardown()
        deadline = time.monotonic() + 20
        while clusters and time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if all(c.status()["status"] in ("terminated", "down") for c in clusters):
                    break
            time.sleep(0.2)
        if server is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        for pid in _daemon_pids(home):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)

    median = statistics.median(figures)
    verdict = "PASS" if median < args.goal else "MISS"
    print(f"\nup_if_not() to first call's result, median of {len(figures)}: {median:.2f} s "
          f"(goal < {args.goal:.0f} s): {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
