"""Cluster sub-tokens (``POST /rh/auth/token/cluster``): minted by den for the
caller and one namespace, hashed at rest, worth no more than the caller's own
access (and only on a runhouse daemon's few requests, in that namespace),
refused by den's own API, and dead the moment their parent token is revoked."""

from __future__ import annotations

import pytest

from compute import services as compute_services
from registry import services
from registry.credentials import hash_token
from registry.models import AccessGrant, AccessLevel, ApiToken
from rhcompat.models import ClusterSubToken
from tests.factories import ResourceFactory, UserFactory, make_token


@pytest.fixture
def world(db):
    alice, bob, sam = (UserFactory(username=n) for n in ("alice", "bob", "sam"))
    gpu = ResourceFactory(owner=alice, name="gpu", type="cluster", config={"provider": "ssh",
                                                                          "ips": ["10.0.0.1"]})
    fn = ResourceFactory(owner=alice, name="fn", type="function", config={"system": "/alice/gpu"})
    AccessGrant.objects.create(resource=fn, user=bob, level=AccessLevel.READ)
    AccessGrant.objects.create(resource=gpu, user=bob, level=AccessLevel.READ)
    ResourceFactory(owner=bob, name="mine", type="resource", config={})
    return {"alice": alice, "bob": bob, "sam": sam, "gpu": gpu,
            "tokens": {n: make_token(u) for n, u in (("alice", alice), ("bob", bob),
                                                      ("sam", sam))}}


def mint(api, token, namespace, username):
    api.as_token(token)
    response = api.post("/rh/auth/token/cluster",
                        {"resource_address": namespace, "username": username}, format="json")
    assert response.status_code == 200, response.content
    return response.json()["data"]["token"]


def test_minted_for_the_caller_same_each_time_and_hashed(world, api):
    plain = mint(api, world["tokens"]["bob"], "alice", "bob")
    assert mint(api, world["tokens"]["bob"], "alice", "bob") == plain
    assert plain != mint(api, world["tokens"]["bob"], "sam", "bob")
    row = ClusterSubToken.objects.get(namespace="alice")
    assert row.token_hash == hash_token(plain) and plain not in str(row.__dict__)
    assert ClusterSubToken.objects.count() == 2
    api.as_token(world["tokens"]["bob"])
    other = api.post("/rh/auth/token/cluster", {"resource_address": "alice", "username": "alice"},
                     format="json")
    assert other.status_code == 400 and other.json()["error"]["field"] == "username"
    bad = api.post("/rh/auth/token/cluster", {"resource_address": "../x", "username": "bob"},
                   format="json")
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "resource_address"


def test_a_daemon_learns_the_caller_and_their_level_and_nothing_else(world, api):
    sub = mint(api, world["tokens"]["bob"], "alice", "bob")
    api.as_token(sub)
    assert api.get("/rh/user").json() == {"data": {"username": "bob"}}
    level = api.get("/rh/resource/alice:fn").json()["data"]["access_level"]
    assert level == "read"
    # Not outside its namespace, even what bob owns.
    assert api.get("/rh/resource/bob:mine").status_code == 404
    # Not any write, list, vault read or mint.
    assert api.put("/rh/resource/alice:fn", {"name": "/alice/fn", "resource_type": "function",
                                             "data": {}}, format="json").status_code == 403
    assert api.get("/rh/resource").status_code == 403
    assert api.get("/rh/user/secret/alice:fn").status_code == 403
    assert api.post("/rh/auth/token/cluster", {"resource_address": "alice"},
                    format="json").status_code == 403
    # den's own API does not know it at all.
    assert api.get("/api/v1/resources/alice/fn").status_code == 401
    assert api.get("/api/v1/auth/check").status_code == 401


def test_never_worth_more_than_the_parent_token(world, api):
    read_token = make_token(world["bob"], scope="read")
    AccessGrant.objects.filter(user=world["bob"], resource=world["gpu"]).update(
        level=AccessLevel.WRITE)
    sub = mint(api, read_token, "alice", "bob")
    api.as_token(sub)
    assert api.get("/rh/resource/alice:gpu").json()["data"]["access_level"] == "read"
    status = api.post("/rh/resource/alice:gpu/cluster/status", {"daemon_status": "running"},
                      format="json")
    assert status.status_code == 403
    write_sub = mint(api, world["tokens"]["bob"], "alice", "bob")
    api.as_token(write_sub)
    assert api.get("/rh/resource/alice:gpu").json()["data"]["access_level"] == "write"


def test_revoked_with_its_parent(world, api):
    sub = mint(api, world["tokens"]["bob"], "alice", "bob")
    api.as_token(sub)
    assert api.get("/rh/user").status_code == 200
    parent = ApiToken.objects.get(token_hash=hash_token(world["tokens"]["bob"]))
    services.token_revoke(user=world["bob"], token_id=parent.pk)
    response = api.get("/rh/user")
    assert response.status_code == 401 and "revoked" in response.json()["detail"]
    parent.delete()
    assert not ClusterSubToken.objects.exists()
    assert api.get("/rh/user").status_code == 401


def test_token_check_trusts_only_those_who_may_manage_the_cluster(world, api):
    owner_sub = mint(api, world["tokens"]["alice"], "alice", "alice")
    reader_sub = mint(api, world["tokens"]["bob"], "alice", "bob")
    stranger_sub = mint(api, world["tokens"]["sam"], "alice", "sam")
    wrong_namespace = mint(api, world["tokens"]["alice"], "bob", "alice")
    for token, expected in ((owner_sub, 200), (reader_sub, 403), (stranger_sub, 404),
                            (wrong_namespace, 404), (world["tokens"]["alice"], 403)):
        api.as_token(token)
        assert api.get("/rh/auth/token/cluster/alice:gpu").status_code == expected
    # The owner's daemon reports with the owner's sub-token.
    api.as_token(owner_sub)
    response = api.post("/rh/resource/alice:gpu/cluster/status", {"daemon_status": "running"},
                        format="json")
    assert response.status_code == 200
    assert compute_services.REPORTED == "reported"


def test_admin_shows_sub_tokens_without_their_hash(world, api, client):
    mint(api, world["tokens"]["bob"], "alice", "bob")
    staff = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(staff)
    for path in ("/admin/rhcompat/clustersubtoken/", "/admin/rhcompat/runhousesettings/"):
        assert client.get(path).status_code == 200, path
    row = ClusterSubToken.objects.get()
    page = client.get(f"/admin/rhcompat/clustersubtoken/{row.pk}/change/")
    assert page.status_code == 200 and row.token_hash not in page.content.decode()
