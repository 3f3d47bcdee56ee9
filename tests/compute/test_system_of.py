"""Whoever may call a shared function may find the cluster it runs on, but
never a cluster of someone else's through it."""

from __future__ import annotations

import pytest

from registry.models import AccessGrant, AccessLevel
from tests.conftest import TokenClient
from tests.factories import ResourceFactory, UserFactory, make_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(api):
    alice, bob, eve = (UserFactory(username=n) for n in ("alice", "bob", "eve"))
    ResourceFactory(owner=alice, name="cpu", type="cluster", config={"provider": "local"})
    ResourceFactory(owner=eve, name="private-gpu", type="cluster", config={"provider": "local"})
    train = ResourceFactory(owner=alice, name="train", type="function",
                            config={"system": "/alice/cpu"})
    sneaky = ResourceFactory(owner=alice, name="sneaky", type="function",
                             config={"system": "/eve/private-gpu"})
    loose = ResourceFactory(owner=alice, name="loose", type="function", config={})
    for resource in (train, sneaky, loose):
        AccessGrant.objects.create(resource=resource, user=bob, level=AccessLevel.READ)
    return {"bob": api.as_token(make_token(bob))}


def test_a_function_reader_sees_its_owners_cluster(world):
    bob = world["bob"]
    assert bob.get("/api/v1/resources/alice/cpu/-/cluster").status_code == 404  # not shared
    response = bob.get("/api/v1/resources/alice/train/-/cluster")
    assert response.status_code == 200
    assert response.json()["address"] == "/alice/cpu"
    assert bob.post("/api/v1/resources/alice/cpu/-/cluster/up").status_code == 404


def test_never_a_strangers_cluster_and_never_without_a_system(world):
    bob = world["bob"]
    assert bob.get("/api/v1/resources/alice/sneaky/-/cluster").status_code == 404
    assert bob.get("/api/v1/resources/alice/loose/-/cluster").status_code == 404


def test_strangers_to_the_function_learn_nothing(world):
    stranger = TokenClient().as_token(make_token(UserFactory(username="sam")))
    assert stranger.get("/api/v1/resources/alice/train/-/cluster").status_code == 404


def test_a_writer_cannot_point_a_function_at_a_cluster_they_cannot_see(world, django_user_model):
    from registry.models import Resource

    bob = django_user_model.objects.get(username="bob")
    train = Resource.objects.get(name="train")
    AccessGrant.objects.filter(resource=train, user=bob).update(level=AccessLevel.WRITE)
    ResourceFactory(owner=train.owner, name="hidden-gpu", type="cluster", config={})
    writer = TokenClient().as_token(make_token(bob))
    response = writer.put("/api/v1/resources/alice/train",
                          {"config": {"system": "/alice/hidden-gpu"}}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "config.system"
    assert writer.get("/api/v1/resources/alice/train/-/cluster").json()["address"] == "/alice/cpu"
    # Keeping the cluster it already has is fine.
    response = writer.put("/api/v1/resources/alice/train",
                          {"config": {"system": "/alice/cpu", "code": "v2"}}, format="json")
    assert response.status_code == 200
