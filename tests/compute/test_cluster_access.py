"""The access matrix for the cluster endpoints, on the same rules (and the
same expected statuses) as ``tests/registry/test_access_matrix.py``: every
endpoint as owner, writer, reader, stranger, anonymous and with read-only,
expired and revoked tokens, on every visibility. Plus: the cluster's own
token, non-cluster resources, bad input and the event stream."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from compute import services
from compute.models import ClusterState
from registry.models import AccessGrant, AccessLevel, ApiToken
from tests.factories import ResourceFactory, UserFactory, make_token
from tests.registry.test_access_matrix import CALLERS, VISIBILITIES, _token_id, check_endpoint

R, W = AccessLevel.READ, AccessLevel.WRITE
BASE = "/api/v1/resources/alice/gpu/-/cluster"
HEARTBEAT = {"last_activity": "2030-01-01T00:00:00+00:00", "calls_in_flight": 0, "objects": 1}

# name, method, path, body, level needed, status on success
CLUSTER_ENDPOINTS = [
    ("cluster-status", "get", BASE, None, R, 200),
    ("cluster-up", "post", f"{BASE}/up", None, W, 202),
    ("cluster-stop", "post", f"{BASE}/stop", None, W, 202),
    ("cluster-teardown", "post", f"{BASE}/teardown", None, W, 202),
    ("cluster-autostop", "put", f"{BASE}/autostop", {"autostop_mins": 30}, W, 200),
    ("cluster-events", "get", f"{BASE}/events", None, R, 200),
    # Users may never post heartbeats: those who may read the cluster get 403.
    ("cluster-heartbeat", "post", f"{BASE}/heartbeat", HEARTBEAT, R, 403),
]
# ... and those whose matrices are in tests/compute/test_deployments.py.
#: Needs a host key den trusts (an ssh cluster that was up): its own test below.
FORGET_HOST_KEY = ("cluster-forget-host-key", "post", f"{BASE}/forget-host-key",
                   {"host": "198.18.0.2"}, W, 200)
CLUSTER_ROUTE_NAMES = {endpoint[0] for endpoint in CLUSTER_ENDPOINTS} | {
    "cluster-probe", "deployment", "deployment-code", "code-bundle", FORGET_HOST_KEY[0]}


@pytest.fixture
def world(db):
    alice = UserFactory(username="alice")
    people = {name: UserFactory(username=name) for name in ("wendy", "rita", "sam")}

    def build(visibility: str):
        gpu = ResourceFactory(owner=alice, name="gpu", type="cluster",
                              config={"provider": "local"}, visibility=visibility)
        AccessGrant.objects.create(resource=gpu, user=people["wendy"], level=W)
        AccessGrant.objects.create(resource=gpu, user=people["rita"], level=R)
        expired = make_token(alice)
        revoked = make_token(alice)
        ApiToken.objects.filter(pk=_token_id(expired)).update(
            expires_at=timezone.now() - timedelta(minutes=1))
        ApiToken.objects.filter(pk=_token_id(revoked)).update(revoked_at=timezone.now())
        tokens = {
            "owner": make_token(alice),
            "writer": make_token(people["wendy"]),
            "reader": make_token(people["rita"]),
            "stranger": make_token(people["sam"]),
            "read_token": make_token(alice, scope="read"),
            "expired": expired,
            "revoked": revoked,
            "anonymous": None,
        }
        return gpu, tokens

    return build


@pytest.mark.parametrize("visibility", VISIBILITIES)
@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("endpoint", CLUSTER_ENDPOINTS, ids=[e[0] for e in CLUSTER_ENDPOINTS])
def test_cluster_endpoint_status(world, api, endpoint, caller, visibility):
    _, tokens = world(visibility)
    check_endpoint(api, tokens[caller], endpoint, caller, visibility)


@pytest.mark.parametrize("visibility", VISIBILITIES)
@pytest.mark.parametrize("caller", CALLERS)
def test_forget_host_key_status(world, api, caller, visibility):
    gpu, tokens = world(visibility)
    ClusterState.objects.create(resource=gpu, status="stopped",
                                host_keys={"198.18.0.2": "ssh-ed25519 AAAAC3Nza"})
    check_endpoint(api, tokens[caller], FORGET_HOST_KEY, caller, visibility)
    forgotten = not ClusterState.objects.get(resource=gpu).host_keys
    assert forgotten == (caller in ("owner", "writer")), (caller, visibility)


def test_cluster_token_may_only_post_its_own_heartbeats(world, api):
    gpu, tokens = world("private")
    plain = services._mint_cluster_token(ClusterState.objects.create(resource=gpu, status="up"), 0)
    api.as_token(plain)
    assert api.post(f"{BASE}/heartbeat", HEARTBEAT, format="json").status_code == 200
    for method, path in [("get", BASE), ("get", f"{BASE}/events"), ("post", f"{BASE}/up"),
                         ("post", f"{BASE}/stop"), ("get", "/api/v1/resources/alice/gpu"),
                         ("get", "/api/v1/tokens"), ("get", "/api/v1/resources")]:
        assert getattr(api, method)(path).status_code == 403, (method, path)
    # The last activity a daemon reports is never in the future.
    assert ClusterState.objects.get(resource=gpu).last_activity_at <= timezone.now()
    # Once revoked (a stop revokes it), it is refused like any revoked token.
    services.cluster_request_stop(actor=gpu.owner, resource=gpu)
    assert api.post(f"{BASE}/heartbeat", HEARTBEAT, format="json").status_code == 401


def test_cluster_tokens_are_not_listed_among_the_owners_tokens(world, api):
    gpu, tokens = world("private")
    services._mint_cluster_token(ClusterState.objects.create(resource=gpu), 0)
    api.as_token(tokens["owner"])
    names = [t["name"] for t in api.get("/api/v1/tokens").json()]
    assert not any(name.startswith("cluster ") for name in names)


def test_non_cluster_resources_get_a_clear_400(world, api):
    gpu, tokens = world("private")
    ResourceFactory(owner=gpu.owner, name="sk", type="env", config={})
    api.as_token(tokens["owner"])
    for method, suffix in [("get", ""), ("post", "/up"), ("get", "/events")]:
        response = getattr(api, method)(f"/api/v1/resources/alice/sk/-/cluster{suffix}")
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "not_a_cluster" and "not a cluster" in error["message"]
    # A stranger learns nothing about the type: 404, as for anything they may not read.
    api.as_token(tokens["stranger"])
    assert api.get("/api/v1/resources/alice/sk/-/cluster").status_code == 404


@pytest.mark.parametrize("body", [{}, {"autostop_mins": -2}, {"autostop_mins": "30"},
                                  {"autostop_mins": 1.5}, {"autostop_mins": True}, []])
def test_autostop_refuses_bad_values(world, api, body):
    _, tokens = world("private")
    api.as_token(tokens["owner"])
    response = api.put(f"{BASE}/autostop", body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["message"]


def test_autostop_overrides_the_config_without_a_new_version(world, api):
    gpu, tokens = world("private")
    api.as_token(tokens["owner"])
    assert api.get(BASE).json()["autostop_mins"] == -1
    assert api.put(f"{BASE}/autostop", {"autostop_mins": 15}, format="json").json()[
        "autostop_mins"] == 15
    gpu.refresh_from_db()
    assert gpu.version == 1


def test_up_is_idempotent_and_a_stopping_cluster_is_busy(world, api):
    gpu, tokens = world("private")
    api.as_token(tokens["owner"])
    assert api.post(f"{BASE}/up").json()["status"] == "provisioning"
    assert api.post(f"{BASE}/up").json()["status"] == "provisioning"
    assert api.post(f"{BASE}/stop").json()["status"] == "stopping"
    response = api.post(f"{BASE}/up")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "cluster_busy"


def test_a_cloud_provider_goes_to_the_skypilot_backend(world, api):
    gpu, tokens = world("private")
    gpu.config = {"provider": "aws", "instance_type": "A10G:1"}
    gpu.save()
    api.as_token(tokens["owner"])
    response = api.post(f"{BASE}/up")
    assert response.status_code == 202, response.content
    assert api.get(BASE).json()["backend"] == "skypilot"


def test_a_provider_whose_backend_this_den_lacks_is_refused_on_up(world, api, monkeypatch):
    from compute import backends

    backends._load_builtin()
    monkeypatch.delitem(backends._BACKENDS, "skypilot")
    monkeypatch.setattr(backends, "_load_builtin", lambda: None)
    gpu, tokens = world("private")
    gpu.config = {"provider": "aws", "instance_type": "A10G:1"}
    gpu.save()
    api.as_token(tokens["owner"])
    response = api.post(f"{BASE}/up")
    assert response.status_code == 400
    assert "skypilot" in response.json()["error"]["message"]


def test_events_list_and_stream(world, api):
    gpu, tokens = world("private")
    api.as_token(tokens["owner"])
    api.post(f"{BASE}/up")
    api.put(f"{BASE}/autostop", {"autostop_mins": 5}, format="json")
    listed = api.get(f"{BASE}/events").json()
    assert [e["kind"] for e in listed["results"]] == ["autostop.set", "up.requested"]
    first_id = listed["results"][-1]["id"]

    response = api.get(f"{BASE}/events?wait=0", HTTP_ACCEPT="text/event-stream",
                       HTTP_LAST_EVENT_ID=str(first_id))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/event-stream")
    text = b"".join(response.streaming_content).decode()
    assert text.startswith("retry: ")
    assert "event: autostop.set" in text and "event: up.requested" not in text

    # Without a starting id, a stream brings only what happens from now on.
    response = api.get(f"{BASE}/events?wait=0", HTTP_ACCEPT="text/event-stream")
    assert "event:" not in b"".join(response.streaming_content).decode()
    # A stranger gets 404 on the stream too, before it starts.
    api.as_token(tokens["stranger"])
    response = api.get(f"{BASE}/events", HTTP_ACCEPT="text/event-stream")
    assert response.status_code == 404
