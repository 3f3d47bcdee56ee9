#!/usr/bin/env python
"""Organisations benchmark: the access path through a team grant and an org
role, beside a direct user grant, in the same run.

    DATABASE_URL=postgres://... [REDIS_URL=redis://...] .venv/bin/python bench/bench_orgs.py

In-process, with Django's test client against PostgreSQL (a scratch
``test_<name>`` database beside ``DATABASE_URL``'s, dropped at the end), and
bob's bearer token on every request. It seeds 2,000 resources of 40 people
and 5 organisations (each with 20 teams of 10 members and 400 team grants),
then measures, in interleaved rounds so drift hits every row alike:

    direct   GET /api/v1/resources/alice/direct     bob holds a user grant
    team     GET /api/v1/resources/alice/via-team   bob's team acme/ml holds the grant
    org      GET /api/v1/resources/acme/model       bob is a member of acme
    and      GET /api/v1/auth/check?address=...     for each (the daemons' question)

and prints requests/s, p50, the database queries per request (the access
part must stay one query), and each row's throughput as a ratio to
``direct``, with PASS/MISS against the goal: team and org at least 0.9x.
With ``--uncached`` the token and auth-check caches are off, so every
request, the auth checks too, runs the access query (and the token lookup).
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

GOAL_RATIO = 0.9


def seed() -> dict[str, str]:
    """The data described above; returns bob's token and the addresses."""
    from django.contrib.auth import get_user_model

    from registry import services
    from registry.models import (
        AccessGrant,
        AccessLevel,
        Membership,
        Resource,
        ResourceVersion,
        Team,
        TeamGrant,
        TeamMember,
    )

    users = get_user_model()
    people = [users(username=f"user{n}", email=f"user{n}@example.com", password="!")
              for n in range(40)]
    users.objects.bulk_create(people)
    people = list(users.objects.order_by("pk"))
    alice = users.objects.create_user(username="alice", email="alice@example.com")
    bob = users.objects.create_user(username="bob", email="bob@example.com")
    orgs = [services.org_create(actor=alice, name=name)
            for name in ("acme", "globex", "initech", "umbrella", "hooli")]
    resources = [Resource(owner=(people + orgs)[n % (len(people) + len(orgs))],
                          name=f"project{n % 13}/thing-{n}", type="resource", config={"n": n},
                          visibility="private") for n in range(2000)]
    Resource.objects.bulk_create(resources)
    ResourceVersion.objects.bulk_create(
        ResourceVersion(resource=r, number=1, type=r.type, config=r.config, author=alice)
        for r in resources)
    Membership.objects.bulk_create(Membership(org=org, user=person, role="member")
                                   for org in orgs for person in people)
    for org in orgs:
        teams = Team.objects.bulk_create(Team(org=org, name=f"team{n}") for n in range(20))
        TeamMember.objects.bulk_create(TeamMember(team=team, user=people[(i * 7 + j) % 40])
                                       for i, team in enumerate(teams) for j in range(10))
        TeamGrant.objects.bulk_create(TeamGrant(team=teams[n % 20], resource=resources[n * 5 % 2000],
                                                level=AccessLevel.READ) for n in range(400))
    acme = orgs[0]
    services.org_members_add(actor=alice, org=acme, users=["bob"])
    ml = services.team_create(actor=alice, org=acme, name="ml")
    services.team_members_add(actor=alice, team=ml, users=["bob"])
    direct = services.resource_create(actor=alice, name="direct", type="resource", config={"a": 1})
    via_team = services.resource_create(actor=alice, name="via-team", type="resource",
                                        config={"a": 1})
    services.resource_create(actor=alice, owner=acme, name="model", type="resource",
                             config={"a": 1})
    AccessGrant.objects.create(resource=direct, user=bob, level=AccessLevel.READ)
    services.resource_share(actor=alice, resource=via_team, teams=["acme/ml"], level="read")
    _, token = services.token_create(user=bob, name="bench", scope="read")
    return {"token": token}


ROWS = [
    ("direct", "/api/v1/resources/alice/direct"),
    ("team", "/api/v1/resources/alice/via-team"),
    ("org", "/api/v1/resources/acme/model"),
    ("check direct", "/api/v1/auth/check?address=/alice/direct&level=read"),
    ("check team", "/api/v1/auth/check?address=/alice/via-team&level=read"),
    ("check org", "/api/v1/auth/check?address=/acme/model&level=read"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--requests", type=int, default=100, help="per row and round")
    parser.add_argument("--uncached", action="store_true",
                        help="no token or auth-check cache: every request runs the access query")
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        print("Set DATABASE_URL to a PostgreSQL server (a scratch test_ database is made "
              "beside it).", file=sys.stderr)
        return 2

    import django

    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, setup_test_environment

    setup_test_environment()
    if args.uncached:
        from django.conf import settings

        settings.DEN_AUTH_CACHE_SECONDS = 0
    original = connection.settings_dict["NAME"]
    name = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        data = seed()
        client = Client(HTTP_AUTHORIZATION=f"Bearer {data['token']}")
        queries = {}
        for label, path in ROWS:
            for _ in range(20):
                assert client.get(path).status_code == 200, (label, path)
            with CaptureQueriesContext(connection) as captured:
                client.get(path)
            queries[label] = len(captured.captured_queries)
        times: dict[str, list[float]] = {label: [] for label, _ in ROWS}
        elapsed: dict[str, float] = {label: 0.0 for label, _ in ROWS}
        for round_number in range(args.rounds):
            shift = round_number % len(ROWS)  # each row takes every position in turn
            for label, path in ROWS[shift:] + ROWS[:shift]:
                start_row = time.perf_counter()
                for _ in range(args.requests):
                    start = time.perf_counter()
                    client.get(path)
                    times[label].append((time.perf_counter() - start) * 1000)
                elapsed[label] += time.perf_counter() - start_row
        total = args.rounds * args.requests
        cache = "no auth cache" if args.uncached else "auth cache on"
        print(f"den access through orgs and teams, in-process test client, PostgreSQL ({name}),"
              f" {cache}; {args.rounds} rounds x {args.requests} requests per row")
        print(f"{'row':<14}{'req/s':>9}{'p50 ms':>9}{'queries':>9}{'vs direct':>11}  "
              f"goal >= {GOAL_RATIO}x")
        misses = 0
        for label, _ in ROWS:
            rate = total / elapsed[label]
            base_label = "check direct" if label.startswith("check") else "direct"
            ratio = rate / (total / elapsed[base_label])
            verdict = ""
            if label not in ("direct", "check direct"):
                verdict = "PASS" if ratio >= GOAL_RATIO else "MISS"
                misses += verdict == "MISS"
            print(f"{label:<14}{rate:>9.0f}{statistics.median(times[label]):>9.2f}"
                  f"{queries[label]:>9}{ratio:>10.2f}x  {verdict}")
        return 1 if misses else 0
    finally:
        connection.creation.destroy_test_db(original, verbosity=0)


if __name__ == "__main__":
    sys.exit(main())
