"""Benchmark the den client against bare httpx, measured side by side in one run.

1. ``import den`` against ``import httpx``: fresh interpreter per sample, many
   samples, interleaved, median. Reports the whole process wall time and the
   import alone (timed inside the child). Goal: den <= 1.5x httpx.
2. Loading a resource by address (``den.load``) against a bare ``httpx.get`` of
   the same API URL with the same token: p50 latency. Goal: <= 1.3x. Without
   ``--url`` it starts its own den as in production (``manage.py serve``:
   gunicorn, SQLite or the PostgreSQL in ``DATABASE_URL``) in a temporary
   DEN_HOME and stops it afterwards; or point it at a running one:

       python bench/bench_client.py --url http://127.0.0.1:8000 --token den_... \\
           --address /alice/train

``--json`` prints the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

_TIMED_IMPORT = (
    "import time; t = time.perf_counter(); import {module}; "
    "print(time.perf_counter() - t)"
)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # Installed packages (httpx) carry compiled bytecode; let den's be cached too,
    # or the comparison measures the compiler instead of the import.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["DEN_CONFIG"] = str(ROOT / ".bench-nonexistent-config.yaml")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _sample(module: str, env: dict[str, str]) -> tuple[float, float]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _TIMED_IMPORT.format(module=module)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    wall = time.perf_counter() - start
    return wall, float(done.stdout.strip())


def bench_import(repeat: int) -> dict[str, Any]:
    """Median wall and in-process import time of den and httpx, interleaved."""
    env = _child_env()
    for module in ("den", "httpx"):  # warm the OS cache and write bytecode
        _sample(module, env)
    samples: dict[str, list[tuple[float, float]]] = {"den": [], "httpx": [], "pass": []}
    for _ in range(repeat):
        for module in ("den", "httpx"):
            samples[module].append(_sample(module, env))
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
        samples["pass"].append((time.perf_counter() - start, 0.0))
    result: dict[str, Any] = {"repeat": repeat}
    for module, values in samples.items():
        result[f"{module}_wall_ms"] = statistics.median(v[0] for v in values) * 1000
        result[f"{module}_import_ms"] = statistics.median(v[1] for v in values) * 1000
    result["wall_ratio"] = result["den_wall_ms"] / result["httpx_wall_ms"]
    result["import_ratio"] = result["den_import_ms"] / result["httpx_import_ms"]
    return result


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def bench_load(url: str, token: str, address: str, repeat: int) -> dict[str, Any]:
    """p50/p90 of den.load(address) against httpx.get (and a pooled httpx.Client)."""
    import httpx

    import den
    from den.client.addresses import to_address

    den.login(url=url, token=token, persist=False)
    full = to_address(address, username=den.whoami()["username"], server_url=url)
    api_url = f"{url.rstrip('/')}/api/v1/resources{full}"
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    pooled = httpx.Client(headers=headers)

    def bare() -> None:
        response = httpx.get(api_url, headers=headers)
        response.raise_for_status()
        response.json()

    def pooled_get() -> None:
        response = pooled.get(api_url)
        response.raise_for_status()
        response.json()

    def den_load() -> None:
        den.load(full)

    runners = {"den_load": den_load, "httpx_get": bare, "httpx_client": pooled_get}
    times: dict[str, list[float]] = {name: [] for name in runners}
    for runner in runners.values():  # warm up connections and caches
        for _ in range(5):
            runner()
    batch = 10
    for _ in range(max(1, repeat // batch)):
        for name, runner in runners.items():  # interleave to share any drift
            for _ in range(batch):
                start = time.perf_counter()
                runner()
                times[name].append(time.perf_counter() - start)
    pooled.close()
    result: dict[str, Any] = {"address": full, "samples": len(times["den_load"])}
    for name, values in times.items():
        result[f"{name}_p50_ms"] = _percentile(values, 0.5) * 1000
        result[f"{name}_p90_ms"] = _percentile(values, 0.9) * 1000
    result["ratio_vs_httpx_get"] = result["den_load_p50_ms"] / result["httpx_get_p50_ms"]
    result["ratio_vs_httpx_client"] = result["den_load_p50_ms"] / result["httpx_client_p50_ms"]
    return result


def _bench_load_on_a_local_den(repeat: int, *, quiet: bool) -> dict[str, Any]:
    """Without --url: start a den as in production (gunicorn, SQLite or the
    PostgreSQL in DATABASE_URL), save one function-sized resource, measure."""
    import httpx

    from bench._den_server import LocalDen

    with LocalDen(worker=False, prefix="den-bench-client-") as server:
        if not quiet:
            print(f"load: started den ({server.backing}) on {server.url}", flush=True)
        token = server.make_token("benchuser")
        config = {"pointers": {"module": "train", "qualname": "train"},
                  "signature": {"parameters": [{"name": "data"}], "doc": "Train."}}
        saved = httpx.put(f"{server.url}/api/v1/resources/benchuser/train",
                          json={"type": "function", "config": config},
                          headers={"Authorization": f"Bearer {token}"})
        saved.raise_for_status()
        return bench_load(server.url, token, "/benchuser/train", repeat)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a running den server (enables the load benchmark)")
    parser.add_argument("--token", default=os.environ.get("DEN_TOKEN"), help="API token")
    parser.add_argument("--address", help="resource to load, e.g. /alice/train")
    parser.add_argument("--import-repeat", type=int, default=40)
    parser.add_argument("--load-repeat", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    results: dict[str, Any] = {"python": sys.version.split()[0]}
    results["import"] = imp = bench_import(args.import_repeat)
    if not args.json:
        print(f"import, median of {imp['repeat']} fresh interpreters (python -c 'pass': "
              f"{imp['pass_wall_ms']:.1f} ms)")
        print(f"  den    wall {imp['den_wall_ms']:6.1f} ms   import {imp['den_import_ms']:6.1f} ms")
        print(f"  httpx  wall {imp['httpx_wall_ms']:6.1f} ms   import {imp['httpx_import_ms']:6.1f} ms")
        print(f"  ratio  wall {imp['wall_ratio']:6.2f}x     import {imp['import_ratio']:6.2f}x"
              "   (goal <= 1.5x)")
    if args.url and not (args.token and args.address):
        parser.error("--url needs --token (or DEN_TOKEN) and --address")
    if args.url:
        load = bench_load(args.url, args.token, args.address, args.load_repeat)
    else:
        load = _bench_load_on_a_local_den(args.load_repeat, quiet=args.json)
    results["load"] = load
    if not args.json:
        print(f"load {load['address']}, {load['samples']} samples each")
        for name in ("den_load", "httpx_get", "httpx_client"):
            print(f"  {name:<13} p50 {load[name + '_p50_ms']:6.2f} ms   "
                  f"p90 {load[name + '_p90_ms']:6.2f} ms")
        print(f"  ratio den.load / httpx.get p50 {load['ratio_vs_httpx_get']:.2f}x (goal <= 1.3x);"
              f" / pooled httpx.Client {load['ratio_vs_httpx_client']:.2f}x")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
