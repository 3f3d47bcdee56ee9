"""``/livez`` and ``/readyz`` against real parts that the test takes away:
the broker's Redis, the cache's Redis and the database."""

from __future__ import annotations

import httpx
import pytest

from tests.ops.conftest import RedisServer, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def broker(tmp_path):
    server = RedisServer(tmp_path / "broker")
    server.start()
    yield server
    server.kill()


def ready(den) -> httpx.Response:
    return httpx.get(f"{den.url}/readyz", timeout=30)


def test_readiness_names_what_is_down_and_liveness_does_not_care(make_den, database,
                                                                  redis_server, broker):
    den = make_den(DATABASE_URL=database.url, REDIS_URL=f"{redis_server.url}/0",
                   CELERY_BROKER_URL=f"{broker.url}/0")
    den.start_processes()
    den.seed("alice")
    answer = ready(den)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "ready"
    assert {name: c["ok"] for name, c in answer.json()["checks"].items()} == \
        {"database": True, "broker": True, "cache": True}

    broker.kill()
    answer = ready(den)
    assert answer.status_code == 503
    body = answer.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["broker"]["ok"] is False and body["checks"]["cache"]["ok"] is True
    assert "broker" in body["message"]
    assert str(broker.port) not in answer.text  # names no host or port
    assert httpx.get(f"{den.url}/livez").status_code == 200

    redis_server.kill()
    body = ready(den).json()
    assert body["checks"]["cache"]["ok"] is False
    assert "the broker and the cache" in body["message"]
    with den.client("alice") as alice:  # den still answers (from the database)
        assert alice.get("/api/v1/me").status_code == 200

    broker.start()
    redis_server.start()
    wait_until(lambda: ready(den).status_code == 200, 30, "readiness once Redis is back")

    database.drop()  # the database goes away under den
    answer = ready(den)
    assert answer.status_code == 503
    assert answer.json()["checks"]["database"]["ok"] is False
    assert httpx.get(f"{den.url}/livez").status_code == 200
    assert "Readiness: the database is unavailable" in den.log_text()


def test_an_embedded_den_is_ready(make_den):
    den = make_den().start()  # SQLite, the filesystem broker, file caches
    answer = ready(den)
    assert answer.status_code == 200, answer.text
    assert answer.json()["checks"]["broker"]["ok"] is True
