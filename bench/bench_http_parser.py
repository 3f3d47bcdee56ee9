"""Benchmark: the node daemon's request heads parsed by httptools (or h11) against the
hand-written parser it replaced, on no-op calls through the real daemon.

Three daemons run side by side on loopback, all with den auth off and one env worker:

* **before**: the daemon as it is at ``--baseline-ref`` (default: where this branch
  left main), extracted with ``git archive`` into a temporary directory;
* **httptools**: this tree, heads parsed by llhttp;
* **h11**: this tree, heads parsed by h11 (the fallback when httptools does not
  import).

Each round measures every daemon in turn (``--calls`` no-op calls by one
``NodeClient``, after a warm-up), so that drift on this shared machine hits all
three alike; the figures are medians over rounds, and what counts is the ratio to
*before*. Then a ``--big-mb`` NumPy array is sent and returned (best of 4): its
body is received into a buffer that now grows as bytes arrive instead of being
allocated at the declared length, which must not cost the zero-copy path. A
second table times the plain-data unpickler readers' arguments go
through (den.node.safepickle) against the C unpickler writers get.

    .venv/bin/python bench/bench_http_parser.py [--rounds 7] [--calls 2000]
"""

from __future__ import annotations

import argparse
import io
import os
import pickle
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from den.node.caller import NodeClient  # noqa: E402


def noop(*args, **kwargs):
    return None


def echo(x):
    return x


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def baseline_tree(ref: str, into: Path) -> Path:
    """``den/`` as it is at ``ref``, unpacked under ``into``."""
    data = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", ref, "den"],
                          capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        tf.extractall(into, filter="data")
    return into


def start_daemon(root: Path, workdir: Path, env_extra: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEN_NODE_")}
    env.update(env_extra)
    env["PYTHONPATH"] = str(root)
    proc = subprocess.Popen(
        [sys.executable, "-m", "den.node", "--no-den-auth", "--port", str(port),
         "--workdir", str(workdir), "--log-level", "warning"],
        env=env, cwd=str(root),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/health", timeout=1)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"the daemon from {root} did not come up")


def p50_ms(call: Callable[[], object], n: int) -> float:
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1e3


def unpickler_table() -> list[tuple[str, float, float]]:
    from den.node import safepickle

    rows = []
    small = pickle.dumps(((1, 2.0, "x"), {"k": [1, 2]}), protocol=5)
    cases: list[tuple[str, bytes, list[pickle.PickleBuffer]]] = [("(1, 2.0, 'x'), {k: [1, 2]}",
                                                                   small, [])]
    try:
        import numpy as np
        import pandas as pd
    except ImportError:
        pass
    else:
        for label, value in (
            ("8 MB float64 array (out-of-band)", np.ones(1 << 20)),
            ("DataFrame, 1,000 rows, 2 numeric + 1 str column",
             pd.DataFrame({"a": np.arange(1000), "b": np.arange(1000.0), "c": ["x"] * 1000})),
        ):
            buffers: list[pickle.PickleBuffer] = []
            data = pickle.dumps(((value,), {}), protocol=5, buffer_callback=buffers.append)
            cases.append((label, data, buffers))
    for label, data, buffers in cases:
        raw = [b.raw() for b in buffers]
        n = 3000 if len(data) < 1 << 16 else 300
        timings = []
        for loads in (lambda: pickle.loads(data, buffers=raw),
                      lambda: safepickle.loads(data, buffers=raw)):
            loads()
            t = time.perf_counter()
            for _ in range(n):
                loads()
            timings.append((time.perf_counter() - t) / n * 1e6)
        rows.append((label, timings[0], timings[1]))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--big-mb", type=int, default=100)
    ap.add_argument("--baseline-ref", default=None,
                    help="git ref of the daemon to compare with (default: merge-base with main)")
    ns = ap.parse_args()
    ref = ns.baseline_ref or subprocess.run(
        ["git", "-C", str(REPO), "merge-base", "HEAD", "main"], capture_output=True, text=True,
        check=True).stdout.strip()
    tmp = Path(tempfile.mkdtemp(prefix="den-bench-parser-"))
    kinds = {
        "before": (baseline_tree(ref, tmp / "before"), {}),
        "httptools": (REPO, {"DEN_NODE_HTTP_PARSER": "httptools"}),
        "h11": (REPO, {"DEN_NODE_HTTP_PARSER": "h11"}),
    }
    procs: list[subprocess.Popen] = []
    results: dict[str, list[float]] = {k: [] for k in kinds}
    try:
        clients = {}
        for name, (root, env) in kinds.items():
            proc, url = start_daemon(root, tmp / f"work-{name}", env)
            procs.append(proc)
            client = NodeClient(url, stream=None)
            client.put_function("noop", noop)
            client.put_function("echo", echo)
            for _ in range(300):
                client.call("noop")
            clients[name] = client
        for _ in range(ns.rounds):
            for name, client in clients.items():
                results[name].append(p50_ms(lambda c=client: c.call("noop"), ns.calls))
        big: dict[str, float] = {}
        if ns.big_mb:
            import numpy as np

            array = np.ones(ns.big_mb << 17)  # float64: 8 bytes each
            for i in range(4):  # alternating who goes first
                for name in ("before", "httptools")[::1 if i % 2 else -1]:
                    t = time.perf_counter()
                    clients[name].call("echo", args=(array,))
                    big[name] = min(big.get(name, float("inf")), time.perf_counter() - t)
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()

    base = statistics.median(results["before"])
    print()
    print(f"no-op call p50 through the daemon, median of {ns.rounds} interleaved rounds of "
          f"{ns.calls} calls; before = {ref[:10]}")
    print(f"{'head parser':12} {'p50 ms':>8} {'x before':>9}   per-round p50s")
    for name, values in results.items():
        med = statistics.median(values)
        spread = " ".join(f"{v:.3f}" for v in values)
        print(f"{name:12} {med:8.3f} {med / base:9.2f}   {spread}")
    if big:
        print()
        print(f"{ns.big_mb} MB array sent and returned, best of 4 (MB/s counting both ways)")
        for name in ("before", "httptools"):
            seconds = big[name]
            rate = 2 * ns.big_mb / seconds
            print(f"{name:12} {rate:8.0f} {big['before'] / seconds:9.2f}")
    print()
    print("decoding call arguments: C unpickler (writers) vs den.node.safepickle (readers)")
    print(f"{'arguments':50} {'C us':>9} {'safe us':>9} {'x C':>7}")
    for label, c, safe in unpickler_table():
        print(f"{label:50} {c:9.1f} {safe:9.1f} {safe / c:7.2f}")


if __name__ == "__main__":
    main()
