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
import statistics
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import den  # noqa: E402
from bench._den_server import LocalDen  # noqa: E402


def double(x: int) -> int:
    return 2 * x


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--goal", type=float, default=5.0, help="seconds")
    args = parser.parse_args()

    user = f"bench{uuid.uuid4().hex[:8]}"
    figures: list[float] = []
    clusters: list[den.Cluster] = []
    with LocalDen(worker=True, prefix="den-bench-up-") as server:
        print(f"started den ({server.backing}) on {server.url}", flush=True)
        token = server.make_token(user)
        os.environ["DEN_CONFIG"] = str(server.tmp / "client.yaml")
        den.login(url=server.url, token=token, persist=False)
        try:
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

    median = statistics.median(figures)
    verdict = "PASS" if median < args.goal else "MISS"
    print(f"\nup_if_not() to first call's result, median of {len(figures)}: {median:.2f} s "
          f"(goal < {args.goal:.0f} s): {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
