#!/usr/bin/env python
"""Runhouse-compatible API benchmark: ``GET /rh/resource/{uri}`` beside
``GET /api/v1/resources/<address>``, the same resources and tokens, in one run.

    .venv/bin/python bench/bench_rh_compat.py      # about 1 minute

It starts its own PostgreSQL on loopback (or uses ``DATABASE_URL``, a scratch
database), migrates, saves 200 resources through the /rh/ layer's own service
(runhouse payloads: static and on-demand clusters, functions with their
openapi specs, modules, secrets; 20 users, 10 each, plus grants so that a
quarter of the reads are of resources others shared), starts gunicorn as in
production (2 sync workers) and drives both endpoints with wrk (8
connections), interleaved, after a warm-up. It prints requests per second,
p50/p99 and the ratio of /rh/ to the native API. Goal: at least 0.9.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_registry import (  # noqa: E402
    Bench,
    Gunicorn,
    Interrupted,
    Postgres,
    Sample,
    bounded,
    combine,
    django_env,
    ensure_wrk,
    log,
    run,
)

SEED_MARK = "RH_BENCH_SEED "
GOAL_RATIO = 0.9


def django_seed(users: int, per_user: int) -> dict:
    """Users, tokens and resources saved as a runhouse client saves them."""
    import django

    django.setup()
    from registry import services
    from registry.models import User
    from rhcompat import mapping
    from rhcompat import services as rh_services

    names = [f"rhbench{i}" for i in range(users)]
    people = [User.objects.get_or_create(username=n, defaults={"email": f"{n}@example.com"})[0]
              for n in names]
    spec = {"paths": {f"/{m}": {"post": {"summary": m * 20}} for m in ("call", "get", "map")}}
    api, rh = [], []
    for index, user in enumerate(people):
        _, plain = services.token_create(user=user, name="bench", scope="read", expires_in_days=1)
        mine = []
        for n in range(per_user):
            kind = ("cluster", "function", "module", "secret", "cluster")[n % 5]
            data: dict = {"resource_subtype": {"cluster": "Cluster", "function": "Function",
                                               "module": "Counter", "secret": "Secret"}[kind]}
            if kind == "cluster":
                data.update(ips=[f"10.0.{index}.{n}"], server_port=32300, ssh_port=22,
                            den_auth=False, ssh_properties={"ssh_user": "ubuntu"})
            elif kind in ("function", "module"):
                data.update(system=f"/{user.username}/thing0", process="default_process",
                            fn_pointers=["/home/x", "fns", f"f{n}"], openapi_spec=spec,
                            signature={"call": {"signature": "(a: int) -> int", "doc": "x"}})
            address = f"/{user.username}/thing{n}"
            if not services.Resource.objects.filter(owner=user, name=f"thing{n}").exists():
                envelope = mapping.parse_envelope({"name": address, "resource_type": kind,
                                                   "visibility": "private", "data": data})
                rh_services.resource_save(actor=user, envelope=envelope, name=f"thing{n}")
            mine.append(address)
        # Share two of them with the next user, who reads them too.
        neighbour = people[(index + 1) % len(people)]
        for address in mine[:2]:
            resource = services.Resource.objects.get(owner=user, name=address.split("/")[2])
            if not resource.grants.filter(user=neighbour).exists():
                services.resource_share(actor=user, resource=resource,
                                        users=[neighbour.username], level="read")
        reads = [(plain, a) for a in mine[:6]]
        previous = people[index - 1]
        reads += [(plain, f"/{previous.username}/thing{n}") for n in range(2)]
        for token, address in reads:
            api.append((token, f"/api/v1/resources{address}"))
            rh.append((token, f"/rh/resource/{mapping.address_to_uri(address)}"))
    return {"requests": {"healthz": [["", "/healthz"]], "api": api, "rh": rh}}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--duration", type=int, default=5, help="seconds per run (default 5)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--time-limit", type=int, default=240)
    args = parser.parse_args(argv)
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="den-rh-bench."))
    tmp.chmod(0o755)
    pg: Postgres | None = None
    server: Gunicorn | None = None
    try:
        with bounded(args.time_limit):
            ensure_wrk()
            database_url = os.environ.get("DATABASE_URL", "")
            if not database_url:
                pg = Postgres(tmp)
                log(f"starting PostgreSQL on 127.0.0.1:{pg.port}")
                database_url = pg.start()
            env = django_env(database_url, tmp / "home")
            log("manage.py migrate")
            run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT,
                env=env, timeout=180)
            log("saving 200 resources through /rh/'s service")
            out = run([sys.executable, str(Path(__file__).resolve()), "--_seed"], cwd=ROOT,
                      env=env, timeout=180)
            line = next(x for x in out.stdout.splitlines() if x.startswith(SEED_MARK))
            requests = json.loads(line[len(SEED_MARK):])["requests"]
            server = Gunicorn(tmp, env, args.workers, "den.wsgi:application")
            log(f"starting gunicorn -w {args.workers} on {server.url}")
            server.start()
            bench = Bench(args, tmp, server, pg, database_url, requests)
            keys = ["healthz", "api", "rh"]
            for key in keys:
                bench.measure(key, args.connections, 1)  # warm-up
            samples: dict[str, list[Sample]] = {k: [] for k in keys}
            for r in range(args.rounds):
                for key in keys:
                    log(f"round {r + 1}/{args.rounds}: {key}")
                    samples[key].append(bench.measure(key, args.connections, args.duration))
            total = {k: combine(v) for k, v in samples.items()}
            print(f"\n/rh/ beside den's own API: gunicorn sync -w {args.workers}, PostgreSQL, "
                  f"wrk {args.connections} connections, {args.rounds} x {args.duration} s each, "
                  f"interleaved; load average {os.getloadavg()[0]:.2f}")
            print(f"{'endpoint':<44}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
            labels = {"healthz": "GET /healthz (the stack's ceiling)",
                      "api": "GET /api/v1/resources/<address>",
                      "rh": "GET /rh/resource/{uri}"}
            for key in keys:
                s = total[key]
                print(f"{labels[key]:<44}{s.rps:>8.0f}{s.p50_ms:>9.2f}{s.p99_ms:>9.2f}"
                      f"{s.errors:>8}")
            ratio = total["rh"].rps / total["api"].rps if total["api"].rps else 0.0
            per_round = [r.rps / a.rps for r, a in zip(samples["rh"], samples["api"], strict=True)
                         if a.rps]
            verdict = "PASS" if ratio >= GOAL_RATIO else "MISS"
            print(f"\n/rh/ throughput is {ratio:.2f}x the native API's (per round: "
                  f"{', '.join(f'{x:.2f}' for x in per_round)}); goal >= {GOAL_RATIO}: {verdict}")
            print(f"(total run time {time.monotonic() - started:.0f} s)")
            return 0
    except Interrupted as exc:
        log(f"stopped by {exc}")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if server is not None:
            server.stop()
        if pg is not None:
            pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--_seed"]:
        print(SEED_MARK + json.dumps(django_seed(20, 10)))
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
