"""den keeps answering while its Redis is down: the token and access caches
fall back to the database (``den.caches.RedisCache``).

A den of its own (``manage.py serve``, one web process, PostgreSQL) uses a
``redis-server`` of the test's own, which the test stops and starts again.
"""

from __future__ import annotations

import pytest

from tests.ops.conftest import wait_until

pytestmark = pytest.mark.e2e

UNAVAILABLE = "is unavailable"
BACK = "is reachable again"


@pytest.fixture
def den_on_redis(make_den, database, redis_server):
    den = make_den(DATABASE_URL=database.url, REDIS_URL=f"{redis_server.url}/0",
                   CELERY_BROKER_URL=f"{redis_server.url}/1")
    den.start()
    den.seed("alice", "bob")
    return den


def _token_keys(redis_server) -> list[bytes]:
    return [k for k in redis_server.client().keys("*") if b"den:token:" in k]


def test_requests_are_answered_from_the_database_while_redis_is_down(den_on_redis,
                                                                      redis_server):
    den = den_on_redis
    with den.client("alice") as alice:
        assert alice.get("/api/v1/me").json()["username"] == "alice"
        put = alice.put("/api/v1/resources/alice/env1", json={"type": "env", "config": {}})
        assert put.status_code == 201, put.text
    assert _token_keys(redis_server), "the token lookup was not cached in Redis"

    redis_server.kill()
    with den.client("alice") as alice, den.client("bob") as bob:
        for _ in range(20):
            me = alice.get("/api/v1/me")
            assert me.status_code == 200, me.text
            assert me.json()["username"] == "alice"
        assert alice.get("/api/v1/resources/alice/env1").json()["version"] == 1
        put = alice.put("/api/v1/resources/alice/env1",
                        json={"type": "env", "config": {"reqs": ["numpy"]}})
        assert put.status_code == 200, put.text
        assert put.json()["version"] == 2
        # Access still decided right, from the database: bob may not read it.
        assert bob.get("/api/v1/resources/alice/env1").status_code == 404
        share = alice.put("/api/v1/resources/alice/env1/-/access",
                          json={"users": ["bob"], "level": "read"})
        assert share.status_code == 200, share.text
        assert bob.get("/api/v1/resources/alice/env1").json()["config"] == {"reqs": ["numpy"]}
        # An unknown token is still refused.
        stranger = alice.get("/api/v1/me", headers={"Authorization": "Bearer nope"})
        assert stranger.status_code == 401
    # One message for the outage (per cache, per process), not one per request.
    log = den.log_text()
    assert 1 <= log.count(UNAVAILABLE) <= 2, log[-3000:]
    assert "Traceback" not in log, log[-3000:]

    redis_server.start()  # empty: it was killed without saving
    with den.client("alice") as alice:
        wait_until(lambda: alice.get("/api/v1/me").status_code == 200 and _token_keys(
            redis_server), 30, "den to use Redis again")
    assert BACK in den.log_text()


def test_a_token_revoked_while_redis_was_down_stays_revoked_when_it_returns(
        den_on_redis, redis_server):
    """Redis went away with a cached token and came back with it (a restart
    that keeps data); the revocation made meanwhile could not reach Redis.
    The process that found Redis down starts a new access epoch before it
    reads from it again, so the old entry is never served."""
    den = den_on_redis
    with den.client("alice") as alice:
        made = alice.post("/api/v1/tokens", json={"name": "laptop", "scope": "write"})
        assert made.status_code == 201, made.text
        second = made.json()
        with den.client(headers={"Authorization": f"Bearer {second['token']}"}) as laptop:
            assert laptop.get("/api/v1/me").status_code == 200  # cached in Redis now
        assert _token_keys(redis_server)

        redis_server.stop()  # saves what it holds, the cached token included
        revoked = alice.delete(f"/api/v1/tokens/{second['id']}")
        assert revoked.status_code in (200, 204), revoked.text
        redis_server.start()  # back with the old entry
        assert _token_keys(redis_server), "Redis did not keep its data"

    with den.client(headers={"Authorization": f"Bearer {second['token']}"}) as laptop:
        # Within the retry pause den still answers from the database; after
        # it, from Redis, under a new epoch. Both must refuse the token.
        def refused_until_back() -> bool:
            assert laptop.get("/api/v1/me").status_code == 401
            return BACK in den.log_text()

        wait_until(refused_until_back, 30, "den to use Redis again", interval=0.2)
        for _ in range(10):
            assert laptop.get("/api/v1/me").status_code == 401
    with den.client("alice") as alice:
        assert alice.get("/api/v1/me").status_code == 200
