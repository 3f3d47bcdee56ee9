#!/usr/bin/env python
"""Web UI benchmark: server time of the main pages, beside /healthz.

    DATABASE_URL=postgres://... .venv/bin/python bench/bench_pages.py [--requests 300]

In-process, with Django's test client against PostgreSQL: each request goes
through the whole middleware stack (session, CSRF, auth, messages), the view,
its queries and the templates, but not a socket or a WSGI server, so the
figures are den's own time per page. The bench creates a scratch test database
beside ``DATABASE_URL``'s (``test_<name>``, dropped at the end), fills it with

    1,000 resources of 50 users, 200 of them public and 100 shared with alice;
    alice's /alice/model with 100 versions, 50 grants, 10 pending invitations
    and 200 audit rows,

then times, signed in as alice, ``--requests`` requests to each page after a
warm-up, and prints p50 and p99 per page, as ratios to /healthz, and PASS/MISS
against the goal: every page's p50 at most 50 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "den.settings")

GOAL_P50_MS = 50.0
PAGES = [
    ("healthz (baseline)", "/healthz"),
    ("dashboard", "/"),
    ("search", "/search?q=model"),
    ("search, filtered", "/search?type=function&visibility=public"),
    ("resource page", "/alice/model"),
    ("versions (100)", "/alice/model/-/versions"),
    ("diff v1 vs current", "/alice/model/-/versions/1"),
    ("access (50 grants)", "/alice/model/-/access"),
    ("audit log", "/alice/model/-/audit"),
    ("tokens", "/settings/tokens"),
]


def seed() -> object:
    """The data described above; returns alice."""
    from django.contrib.auth import get_user_model

    from registry import services
    from registry.models import (
        AccessGrant,
        AccessLevel,
        AuditEvent,
        PendingGrant,
        Resource,
        ResourceVersion,
    )

    users_model = get_user_model()
    alice = users_model.objects.create_user(username="alice", email="alice@example.com")
    people = [
        users_model(username=f"user{n}", email=f"user{n}@example.com", password="!")
        for n in range(50)
    ]
    users_model.objects.bulk_create(people)
    people = list(users_model.objects.exclude(pk=alice.pk).order_by("pk"))
    types = ["function", "module", "env", "cluster", "resource"]
    resources = []
    for n in range(1000):
        owner = people[n % len(people)]
        resources.append(
            Resource(
                owner=owner,
                name=f"project{n % 17}/model-{n}",
                type=types[n % len(types)],
                config={"n": n} if types[n % len(types)] != "cluster" else {"provider": "local"},
                visibility="public" if n % 5 == 0 else "private",
                description=f"Model {n} of project {n % 17}, trained nightly.",
            )
        )
    Resource.objects.bulk_create(resources)
    ResourceVersion.objects.bulk_create(
        ResourceVersion(resource=r, number=1, type=r.type, config=r.config, author=r.owner)
        for r in resources
    )
    AccessGrant.objects.bulk_create(
        AccessGrant(resource=r, user=alice, level=AccessLevel.READ, granted_by=r.owner)
        for r in resources[1::10]
    )
    model = services.resource_create(
        actor=alice, name="model", type="function",
        config={"code": "sha256:0", "pointers": {"module": "model", "qualname": "train"}},
        description="The model everyone uses.",
    )
    ResourceVersion.objects.bulk_create(
        ResourceVersion(resource=model, number=n, type="function",
                        config={"code": f"sha256:{n}", "pointers": {"module": "model"}}, author=alice)
        for n in range(2, 101)
    )
    Resource.objects.filter(pk=model.pk).update(version=100)
    AccessGrant.objects.bulk_create(
        AccessGrant(resource=model, user=person, level=AccessLevel.READ + n % 2, granted_by=alice)
        for n, person in enumerate(people)
    )
    PendingGrant.objects.bulk_create(
        PendingGrant(resource=model, email=f"new{n}@example.com", level=1, invited_by=alice)
        for n in range(10)
    )
    AuditEvent.objects.bulk_create(
        AuditEvent(actor=alice, actor_username="alice", action="resource.update",
                   resource=model, address=model.address, data={"version": n})
        for n in range(200)
    )
    for n in range(5):
        services.token_create(user=alice, name=f"token {n}", scope="read")
    return alice


def measure(client, path: str, requests: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        assert client.get(path).status_code == 200, path
    times = []
    for _ in range(requests):
        start = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, path
    return times


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        print("Set DATABASE_URL to a PostgreSQL server (a scratch test_ database is made beside it).",
              file=sys.stderr)
        return 2

    import django

    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment

    setup_test_environment()
    original = connection.settings_dict["NAME"]
    name = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        alice = seed()
        client = Client()
        client.force_login(alice)
        print(f"den pages, in-process test client, PostgreSQL ({name}); "
              f"{args.requests} requests each after {args.warmup} warm-up; times in ms")
        print(f"{'page':<24}{'p50':>8}{'p99':>8}{'p50/base':>10}  goal p50<={GOAL_P50_MS:.0f}ms")
        base = None
        misses = 0
        for label, path in PAGES:
            times = measure(client, path, args.requests, args.warmup)
            p50, p99 = statistics.median(times), percentile(times, 0.99)
            base = base or p50
            verdict = ""
            if path != "/healthz":
                verdict = "PASS" if p50 <= GOAL_P50_MS else "MISS"
                misses += verdict == "MISS"
            print(f"{label:<24}{p50:>8.2f}{p99:>8.2f}{p50 / base:>9.1f}x  {verdict}")
        return 1 if misses else 0
    finally:
        connection.creation.destroy_test_db(original, verbosity=0)


if __name__ == "__main__":
    sys.exit(main())
