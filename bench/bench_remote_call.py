"""Benchmark: remote calls through the den node daemon, against a bare ASGI ceiling.

In one run on loopback:

* **ceiling**: a raw ASGI app on uvicorn (one process, uvloop + httptools) that does
  the same cloudpickle round trip as a call (unpickle args, call a no-op, pickle
  the result), driven by a plain httpx client;
* **den**: ``python -m den.node`` (its own HTTP server, one env worker process),
  driven by ``den.node.caller.NodeClient``.

Figures: no-op call p50/p99 latency, calls/s with 1 and 8 concurrent callers (threads
sharing one client, and processes), and a 100 MB NumPy array sent and returned.
Each den figure is printed beside the ceiling's with their ratio.

    .venv/bin/python bench/bench_remote_call.py [--seconds 3] [--big-mb 100]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cloudpickle
import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from den.node.caller import NodeClient, _content, _read_sized  # noqa: E402


# -- the ceiling: a bare ASGI endpoint ------------------------------------------------
def noop(*args, **kwargs):
    return None


def echo(x):
    return x


async def ceiling_app(scope, receive, send):
    if scope["type"] != "http":
        return
    chunks = []
    more = True
    while more:
        msg = await receive()
        chunks.append(msg.get("body", b""))
        more = msg.get("more_body", False)
    body = b"".join(chunks)
    if not body:  # the health probe
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    args, kwargs = cloudpickle.loads(body)
    fn = echo if scope["path"].endswith("/echo") else noop
    out = cloudpickle.dumps(fn(*args, **kwargs), protocol=5)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})


def serve_ceiling(port: int) -> None:
    import uvicorn

    uvicorn.run(ceiling_app, host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                log_level="warning", access_log=False)


# -- helpers ----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


class CeilingClient:
    """Calls the ceiling the way an httpx user would."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, limits=httpx.Limits(max_keepalive_connections=64))

    def call(self, name: str, args: tuple = ()) -> object:
        body = cloudpickle.dumps((args, {}), protocol=5)
        resp = self.http.post(f"/{name}", content=body,
                              headers={"content-type": "application/x-cloudpickle"})
        return cloudpickle.loads(resp.content)

    def call_big(self, args: tuple) -> object:
        # Same client-side care as den's caller, so that the figure is the server's.
        body = cloudpickle.dumps((args, {}), protocol=5)
        req = self.http.build_request("POST", "/echo", content=_content([body], len(body)),
                                      headers={"content-length": str(len(body))})
        resp = self.http.send(req, stream=True)
        try:
            data = _read_sized(resp.iter_raw(), int(resp.headers["content-length"]))
        finally:
            resp.close()
        return cloudpickle.loads(data)


def latency(call: Callable[[], object], n: int) -> tuple[float, float]:
    for _ in range(200):
        call()
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t)
    samples.sort()
    return statistics.median(samples) * 1e3, samples[int(len(samples) * 0.99)] * 1e3


def rate_threads(call: Callable[[], object], callers: int, seconds: float) -> float:
    stop = time.monotonic() + seconds
    counts = [0] * callers

    def loop(i: int) -> None:
        while time.monotonic() < stop:
            call()
            counts[i] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - started)


def _proc_caller(kind: str, url: str, seconds: float, start_at: float, out: mp.Queue) -> None:
    client = NodeClient(url, stream=None) if kind == "den" else CeilingClient(url)
    for _ in range(50):
        client.call("noop")
    while time.time() < start_at:
        time.sleep(0.001)
    stop = time.monotonic() + seconds
    n = 0
    while time.monotonic() < stop:
        client.call("noop")
        n += 1
    out.put(n)


def rate_processes(kind: str, url: str, callers: int, seconds: float) -> float:
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()
    start_at = time.time() + 3
    procs = [ctx.Process(target=_proc_caller, args=(kind, url, seconds, start_at, out))
             for _ in range(callers)]
    for p in procs:
        p.start()
    total = sum(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join()
    return total / seconds


def big_round_trip(call: Callable[[object], object], mb: int, repeat: int = 3) -> float:
    import numpy as np

    a = np.ones(mb * 1024 * 1024 // 8)
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        b = call(a)
        best = min(best, time.perf_counter() - t)
        assert b.shape == a.shape  # type: ignore[attr-defined]
    return best


# -- main ---------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--latency-calls", type=int, default=3000)
    ap.add_argument("--big-mb", type=int, default=100)
    ap.add_argument("--serve-ceiling", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--http-server", default="den", choices=("den", "uvicorn"))
    ns = ap.parse_args()
    if ns.serve_ceiling:
        serve_ceiling(ns.serve_ceiling)
        return

    cport, dport = free_port(), free_port()
    curl, durl = f"http://127.0.0.1:{cport}", f"http://127.0.0.1:{dport}"
    workdir = tempfile.mkdtemp(prefix="den-bench-")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    ceiling = subprocess.Popen([sys.executable, __file__, "--serve-ceiling", str(cport)], env=env)
    daemon = subprocess.Popen(
        [sys.executable, "-m", "den.node", "--no-den-auth", "--port", str(dport),
         "--workdir", workdir, "--log-level", "warning", "--http-server", ns.http_server],
        env=env, cwd=str(REPO),
    )
    rows: list[tuple[str, float, float, str, str]] = []
    try:
        wait_up(curl + "/health")
        wait_up(durl + "/health")
        cc = CeilingClient(curl)
        dc = NodeClient(durl, stream=None)
        dc.put_function("noop", noop)
        dc.put_function("echo", echo)

        c50, c99 = latency(lambda: cc.call("noop"), ns.latency_calls)
        d50, d99 = latency(lambda: dc.call("noop"), ns.latency_calls)
        rows.append(("no-op call p50 (ms)", c50, d50, "lower", "den <= 1 ms"))
        rows.append(("no-op call p99 (ms)", c99, d99, "lower", ""))
        for callers in (1, 8):
            c = rate_threads(lambda: cc.call("noop"), callers, ns.seconds)
            d = rate_threads(lambda: dc.call("noop"), callers, ns.seconds)
            goal = ">= 0.4 of ceiling" if callers == 8 else ""
            rows.append((f"calls/s, {callers} caller thread(s)", c, d, "higher", goal))
        c = rate_processes("ceiling", curl, 8, ns.seconds)
        d = rate_processes("den", durl, 8, ns.seconds)
        rows.append(("calls/s, 8 caller processes", c, d, "higher", ">= 0.4 of ceiling"))

        mb = ns.big_mb
        ct = big_round_trip(lambda a: cc.call_big((a,)), mb)
        dt = big_round_trip(lambda a: dc.call("echo", args=(a,)), mb)
        rows.append((f"{mb} MB array round trip (MB/s, one way)", mb / ct, mb / dt, "higher", ""))
        rows.append((f"{mb} MB array round trip (MB/s, both ways)", 2 * mb / ct, 2 * mb / dt,
                     "higher", "den >= 500"))
    finally:
        for proc in (daemon, ceiling):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()

    print()
    print(f"den node daemon ({ns.http_server} HTTP server) vs bare ASGI on uvicorn "
          f"(ceiling), loopback, {os.cpu_count()} cores")
    print(f"{'metric':44} {'ceiling':>10} {'den':>10} {'den/ceiling':>12}  goal")
    for name, c, d, better, goal in rows:
        ratio = d / c if c else float("nan")
        print(f"{name:44} {c:10.2f} {d:10.2f} {ratio:12.2f}  {goal}")


if __name__ == "__main__":
    main()
