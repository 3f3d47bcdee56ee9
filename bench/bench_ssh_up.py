"""Benchmark: ssh clusters on two fresh test hosts, beside a local cluster, in one run.

It starts a whole den (``manage.py serve``, as bench_up_to_first_call.py does)
and two test hosts (tests/sshhosts.py: network namespaces with their own sshd;
needs root), then times, through the client only:

- a local cluster: ``up_if_not()`` to the first call's result (the peer);
- an ssh cluster of both hosts, fresh (den's node runtime is sent to each):
  ``up_if_not()`` to the first call's result;
- the same cluster after ``stop()``, with the runtime cached on the hosts;
- a no-op call's p50 over HTTPS (certificate pinned) to the ssh head, beside
  plain HTTP to the local daemon on loopback.

and prints each figure, the ratios, and the issue's goals (first bring-up
under 30 s, cached under 5 s, HTTPS adding under 0.3 ms to p50).

    .venv/bin/python bench/bench_ssh_up.py [--calls 500]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import den  # noqa: E402
from bench._den_server import LocalDen  # noqa: E402


def noop() -> None:
    return None


def where() -> str:
    import socket

    return socket.gethostname()


def _p50_ms(fn: den.Function, calls: int) -> float:
    for _ in range(20):
        fn()
    times = []
    for _ in range(calls):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


def _timed_up(cluster: den.Cluster) -> float:
    began = time.perf_counter()
    cluster.up_if_not(quiet=True, timeout=300)
    fn = den.function(where).to(cluster)
    fn()
    return time.perf_counter() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()

    from tests.sshhosts import hosts_available, make_hosts

    why = hosts_available()
    if why:
        print(f"cannot make test hosts here: {why}")
        return 2
    user = f"bench{uuid.uuid4().hex[:8]}"
    clusters: list[den.Cluster] = []
    site = make_hosts(2)
    try:
        with LocalDen(worker=True, prefix="den-bench-ssh-") as server:
            site.expose(server.port)
            print(f"started den ({server.backing}) on {server.url}; hosts "
                  f"{', '.join(h.ip for h in site.hosts)}", flush=True)
            os.environ["DEN_CONFIG"] = str(server.tmp / "client.yaml")
            den.login(url=server.url, token=server.make_token(user), persist=False)
            try:
                local = den.cluster(name="bench-local", provider="local")
                clusters.append(local)
                t_local = _timed_up(local)
                print(f"local cluster: up_if_not() to first result {t_local:.2f} s", flush=True)

                with tempfile.NamedTemporaryFile("w", suffix=".key", delete=False) as key:
                    key.write(site.private_key_pem)
                os.chmod(key.name, 0o600)
                box = den.cluster(name="bench-box", ips=[h.ip for h in site.hosts],
                                  ssh_creds={"ssh_user": site.user,
                                             "ssh_private_key": key.name})
                clusters.append(box)
                t_first = _timed_up(box)
                print(f"ssh cluster, 2 fresh hosts: up_if_not() to first result "
                      f"{t_first:.2f} s", flush=True)
                os.unlink(key.name)

                box.stop()
                deadline = time.monotonic() + 60
                while box.status()["status"] != "stopped" and time.monotonic() < deadline:
                    time.sleep(0.1)
                t_cached = _timed_up(box)
                print(f"ssh cluster, runtime cached: up_if_not() to first result "
                      f"{t_cached:.2f} s", flush=True)

                http = _p50_ms(den.function(noop).to(local), args.calls)
                https = _p50_ms(den.function(noop).to(box), args.calls)
                print(f"no-op call p50: HTTP on loopback {http:.3f} ms, HTTPS to the ssh head "
                      f"{https:.3f} ms ({args.calls} calls each)", flush=True)
            finally:
                for cluster in clusters:
                    with contextlib.suppress(Exception):
                        cluster.teardown()
                deadline = time.monotonic() + 60
                while clusters and time.monotonic() < deadline:
                    with contextlib.suppress(Exception):
                        if all(c.status()["status"] in ("terminated", "down") for c in clusters):
                            break
                    time.sleep(0.2)
    finally:
        site.close()

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    print()
    print(f"ssh first bring-up / local bring-up:   {t_first / t_local:.2f}x "
          f"({t_first:.2f} s; goal < 30 s: {verdict(t_first < 30)})")
    print(f"ssh cached bring-up / first bring-up:  {t_cached / t_first:.2f}x "
          f"({t_cached:.2f} s; goal < 5 s: {verdict(t_cached < 5)})")
    print(f"no-op p50 HTTPS (ssh) / HTTP (local):  {https / http:.2f}x "
          f"(+{https - http:.3f} ms; goal < +0.3 ms: {verdict(https - http < 0.3)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
