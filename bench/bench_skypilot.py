"""Benchmark: what the SkyPilot extra costs where it must cost nothing, and
where an ``up`` on a cloud spends its time.

1. ``import den`` time and the web processes' memory, with SkyPilot
   importable (its virtualenv's site-packages behind den's) and without:
   neither may change, since only Celery workers' adapter imports ``sky``.
   For scale, the same run times ``import sky`` itself.
2. On the test suite's fake cloud (SkyPilot replaced at den's adapter
   boundary; its "machines" are this one), ``up`` to daemon healthy, split
   from the cluster's events into the adapter (launch request to machines:
   mostly the fake's own ``--fake-seconds``), the bootstrap (machines to
   daemon started) and the health check (daemon started to up), against a
   ``local`` cluster's whole ``up`` in the same run.

    .venv/bin/python bench/bench_skypilot.py [--runs 3] [--sky-python PATH]

``--sky-python`` (or ``DEN_SKYPILOT_PYTHON``, which scripts/test sets) is a
python with SkyPilot 0.14; without one, part 1 is skipped. It prints medians
and ratios, and removes everything it started.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from bench._den_server import LocalDen  # noqa: E402


def _sky_site(sky_python: str) -> str:
    return subprocess.run(
        [sky_python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.strip()


def _import_seconds(code: str, pythonpath: str, runs: int) -> float:
    env = {**os.environ, "PYTHONPATH": pythonpath}
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, check=True,
                       capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _rss_mb(session: int) -> float:
    """Resident memory of every process in the server's session (its web processes)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            if os.getsid(int(entry.name)) != session:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def _web_memory(pythonpath: str) -> float:
    server = LocalDen(worker=False, prefix="den-bench-sky-")
    server.env["PYTHONPATH"] = pythonpath
    with server:
        token = server.make_token(f"bench{uuid.uuid4().hex[:6]}")
        headers = {"Authorization": f"Bearer {token}"}
        user = httpx.get(f"{server.url}/api/v1/me", headers=headers).json()["username"]
        httpx.post(f"{server.url}/api/v1/resources", headers=headers, json={
            "address": f"/{user}/gpu", "type": "cluster",
            "config": {"provider": "aws", "instance_type": "A10G:1"}})
        for _ in range(40):
            httpx.get(f"{server.url}/api/v1/resources/{user}/gpu/-/cluster", headers=headers)
            httpx.get(f"{server.url}/api/v1/resources/{user}/gpu/-/cluster/events",
                      headers=headers)
        assert server.server is not None
        return _rss_mb(server.server.pid)


def _paths(site: str) -> tuple[str, str]:
    """PYTHONPATHs without and with SkyPilot installed: SkyPilot's site-packages
    is added *after* den's virtualenv (``site.addsitedir`` from a
    sitecustomize), as if ``den-ml[skypilot]`` were installed beside den's
    packages without changing them; the other has the same, empty, hook."""
    hooks = Path(tempfile.mkdtemp(prefix="den-bench-sky-path-"))
    for name, body in (("without", ""), ("with", f"import site\nsite.addsitedir({site!r})\n")):
        (hooks / name).mkdir()
        (hooks / name / "sitecustomize.py").write_text(body)
    return (os.pathsep.join([str(hooks / "without"), str(REPO)]),
            os.pathsep.join([str(hooks / "with"), str(REPO)]))


def part_one(sky_python: str, runs: int) -> None:
    without, with_sky = _paths(_sky_site(sky_python))
    print("1. SkyPilot installed or not (medians of", runs, "runs)")
    base = _import_seconds("import den", without, runs)
    other = _import_seconds("import den", with_sky, runs)
    sky = _import_seconds("import sky", with_sky, runs)
    print(f"   python -c 'import den'  without: {base:.3f} s   with: {other:.3f} s   "
          f"ratio {other / base:.2f}")
    print(f"   python -c 'import sky'  (for scale): {sky:.3f} s = {sky / base:.1f}x import den")
    mem_base, mem_other = _web_memory(without), _web_memory(with_sky)
    print(f"   web processes' memory after 80 cluster requests  without: {mem_base:.0f} MB   "
          f"with: {mem_other:.0f} MB   ratio {mem_other / mem_base:.2f}")


def _events(url: str, headers: dict[str, str], address: str) -> dict[str, datetime]:
    body = httpx.get(f"{url}/api/v1/resources{address}/-/cluster/events?limit=100",
                     headers=headers).json()
    out: dict[str, datetime] = {}
    for event in reversed(body["results"]):  # oldest first: keep each kind's last
        out[event["kind"]] = datetime.fromisoformat(event["created_at"].replace("Z", "+00:00"))
    return out


def _up(url: str, headers: dict[str, str], address: str, config: dict) -> dict[str, float]:
    httpx.put(f"{url}/api/v1/resources{address}", headers=headers,
              json={"type": "cluster", "config": config}).raise_for_status()
    started = time.perf_counter()
    httpx.post(f"{url}/api/v1/resources{address}/-/cluster/up",
               headers=headers).raise_for_status()
    deadline = time.monotonic() + 120
    while True:
        status = httpx.get(f"{url}/api/v1/resources{address}/-/cluster",
                           headers=headers).json()["status"]
        if status in ("up", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    total = time.perf_counter() - started
    if status != "up":
        raise RuntimeError(f"{address} ended {status}")
    events = _events(url, headers, address)
    httpx.post(f"{url}/api/v1/resources{address}/-/cluster/teardown", headers=headers)
    figures = {"total": total}
    if "provisioned" in events:
        t0, t1 = events["up.requested"], events["provisioned"]
        t2, t3 = events["daemon.started"], events["up"]
        figures.update(adapter=(t1 - t0).total_seconds(), bootstrap=(t2 - t1).total_seconds(),
                       health=(t3 - t2).total_seconds())
    return figures


def part_two(runs: int, fake_seconds: float) -> None:
    fake_dir = tempfile.mkdtemp(prefix="den-bench-fake-cloud-")
    server = LocalDen(worker=True, prefix="den-bench-sky-")
    server.env.update({
        "PYTHONPATH": str(REPO),
        "DEN_SKYPILOT_ADAPTER": "tests.compute.fake_cloud:FakeCloud",
        "DEN_FAKE_CLOUD_DIR": fake_dir, "DEN_SKYPILOT_BOOTSTRAP": "local",
        "DEN_SKYPILOT_POLL_SECONDS": "0.2",
    })
    os.environ["DEN_FAKE_CLOUD_DIR"] = fake_dir
    from tests.compute.fake_cloud import FakeCloud

    FakeCloud.configure(seconds=fake_seconds)
    print(f"2. up to daemon healthy ({server.backing}; fake cloud requests take "
          f"{fake_seconds} s; medians of {runs} runs)")
    with server:
        token = server.make_token(f"bench{uuid.uuid4().hex[:6]}")
        headers = {"Authorization": f"Bearer {token}"}
        user = httpx.get(f"{server.url}/api/v1/me", headers=headers).json()["username"]
        local, cloud = [], []
        for n in range(runs):
            local.append(_up(server.url, headers, f"/{user}/cpu{n}", {"provider": "local"}))
            cloud.append(_up(server.url, headers, f"/{user}/gpu{n}",
                             {"provider": "aws", "instance_type": "CPU:2"}))
            time.sleep(1)
    med = {key: statistics.median(f[key] for f in cloud) for key in cloud[0]}
    base = statistics.median(f["total"] for f in local)
    print(f"   local cluster up (baseline):  {base:.2f} s")
    print(f"   fake-cloud cluster up:        {med['total']:.2f} s = {med['total'] / base:.2f}x "
          "local")
    for key in ("adapter", "bootstrap", "health"):
        print(f"     {key:<10} {med[key]:.2f} s  ({med[key] / med['total']:.0%} of the up; "
              f"{med[key] / base:.2f}x local's whole up)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--fake-seconds", type=float, default=0.5)
    parser.add_argument("--sky-python", default=os.environ.get("DEN_SKYPILOT_PYTHON", ""))
    args = parser.parse_args()
    if args.sky_python:
        part_one(args.sky_python, max(args.runs, 5))
    else:
        print("1. skipped: no python with SkyPilot (--sky-python, DEN_SKYPILOT_PYTHON)")
    part_two(args.runs, args.fake_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
