"""A cluster's event log through the API: readers get each event's kind and
message, never its ``data`` (log lines, the server's paths and process ids);
those who may write the cluster get all of it, in pages and in the stream."""

from __future__ import annotations

import json

import pytest

from compute.models import ClusterEvent, ClusterState
from registry.models import AccessGrant, AccessLevel
from tests.conftest import TokenClient
from tests.factories import ResourceFactory, UserFactory, make_token

pytestmark = pytest.mark.django_db
EVENTS = "/api/v1/resources/alice/gpu/-/cluster/events"


@pytest.fixture
def clients():
    alice, rita, wendy = (UserFactory(username=n) for n in ("alice", "rita", "wendy"))
    gpu = ResourceFactory(owner=alice, name="gpu", type="cluster", config={"provider": "local"})
    AccessGrant.objects.create(resource=gpu, user=rita, level=AccessLevel.READ)
    AccessGrant.objects.create(resource=gpu, user=wendy, level=AccessLevel.WRITE)
    state = ClusterState.objects.create(resource=gpu, status="up")
    ClusterEvent.objects.create(cluster=state, kind="daemon.started", message="Started.",
                                data={"pid": 31337, "path": "/var/lib/den/clusters/1"})
    return {name: TokenClient().as_token(make_token(user))
            for name, user in (("owner", alice), ("reader", rita), ("writer", wendy))}


def test_readers_get_messages_only(clients):
    events = clients["reader"].get(EVENTS).json()["results"]
    assert events and events[0]["message"] == "Started."
    assert "data" not in events[0]
    assert "31337" not in json.dumps(events)


@pytest.mark.parametrize("role", ["owner", "writer"])
def test_writers_get_the_data(clients, role):
    events = clients[role].get(EVENTS).json()["results"]
    assert events[0]["data"] == {"pid": 31337, "path": "/var/lib/den/clusters/1"}


@pytest.mark.parametrize(("role", "shown"), [("reader", False), ("writer", True)])
def test_the_stream_follows_the_same_rule(clients, role, shown):
    response = clients[role].get(f"{EVENTS}?after=0&wait=0", HTTP_ACCEPT="text/event-stream")
    body = b"".join(response.streaming_content).decode()
    assert "Started." in body
    assert ("31337" in body) is shown and ("/var/lib/den" in body) is shown
