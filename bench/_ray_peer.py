"""Runs inside the bench-only Ray virtualenv (see bench/_peers.py): a Ray actor's
no-op call and a 100 MB NumPy echo, measured like den's in bench_remote_call.py.
Prints one JSON line."""

import argparse
import json
import statistics
import threading
import time

import numpy as np
import ray


@ray.remote
class Peer:
    def noop(self, *args, **kwargs):
        return None

    def echo(self, x):
        return x


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--latency-calls", type=int, default=3000)
    ap.add_argument("--big-mb", type=int, default=100)
    ap.add_argument("--callers", type=int, default=8)
    ns = ap.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False, object_store_memory=2 * ns.big_mb * 2**20 * 3)
    # Up to 8 calls at once, like den's env worker accepts concurrent calls.
    actor = Peer.options(max_concurrency=ns.callers).remote()
    ray.get(actor.noop.remote())

    def call() -> None:
        ray.get(actor.noop.remote())

    for _ in range(200):
        call()
    samples = []
    for _ in range(ns.latency_calls):
        t = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t)
    samples.sort()
    out = {"p50_ms": statistics.median(samples) * 1e3,
           "p99_ms": samples[int(len(samples) * 0.99)] * 1e3}

    for callers in (1, ns.callers):
        stop = time.monotonic() + ns.seconds
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
        out[f"rate_{callers}"] = sum(counts) / (time.monotonic() - started)

    a = np.ones(ns.big_mb * 2**20 // 8)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        b = ray.get(actor.echo.remote(a))
        best = min(best, time.perf_counter() - t)
        assert b.shape == a.shape
        del b
    out["big_round_trip_s"] = best
    out["version"] = ray.__version__
    ray.shutdown()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
