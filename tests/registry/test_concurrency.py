"""32 writers race to update one resource with If-Match, over real HTTP
against a threaded server with a database connection per request."""

from __future__ import annotations

import threading

import httpx
import pytest

from registry.models import Resource, ResourceVersion
from tests.factories import UserFactory, make_token

WRITERS = 32


@pytest.mark.django_db(transaction=True)
def test_concurrent_if_match_writers_lose_nothing(live_server):
    alice = UserFactory(username="alice")
    token = make_token(alice)
    url = f"{live_server.url}/api/v1/resources/alice/counter"
    headers = {"Authorization": f"Bearer {token}"}
    created = httpx.put(url, json={"type": "resource", "config": {"writes": []}}, headers=headers)
    assert created.status_code == 201

    barrier = threading.Barrier(WRITERS)
    conflicts = [0] * WRITERS
    errors: list[str] = []

    def writer(index: int) -> None:
        with httpx.Client(headers=headers, timeout=60) as client:
            barrier.wait()
            for _ in range(200):
                current = client.get(url)
                version = int(current.headers["ETag"].strip('"'))
                writes = current.json()["config"]["writes"]
                response = client.put(
                    url,
                    json={"config": {"writes": [*writes, index]}},
                    headers={"If-Match": f'"{version}"'},
                )
                if response.status_code == 200:
                    return
                if response.status_code != 412:
                    errors.append(f"{index}: {response.status_code} {response.text}")
                    return
                assert response.json()["error"]["code"] == "version_conflict"
                conflicts[index] += 1
            errors.append(f"{index}: never won")

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors, errors
    resource = Resource.objects.get(name="counter")
    # Every writer's update is in the final config: no update was lost.
    assert sorted(resource.config["writes"]) == list(range(WRITERS))
    assert resource.version == WRITERS + 1
    numbers = list(
        ResourceVersion.objects.filter(resource=resource).order_by("number").values_list(
            "number", flat=True
        )
    )
    assert numbers == list(range(1, WRITERS + 2))  # contiguous
    assert sum(conflicts) > 0  # the losers were told with 412
