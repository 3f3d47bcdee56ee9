"""Cached token lookups and access answers never outlive a change of access."""

from __future__ import annotations

import pytest

from registry.models import User
from tests.factories import ResourceFactory, UserFactory, make_token

pytestmark = pytest.mark.django_db
CHECK = "/api/v1/auth/check?address=/alice/box&level=read"


@pytest.fixture
def shared(alice_api, api):
    alice = User.objects.get(username="alice")
    ResourceFactory(owner=alice, name="box", visibility="private")
    bob = UserFactory(username="bob")
    assert alice_api.put("/api/v1/resources/alice/box/-/access", {"users": ["bob"]},
                         format="json").status_code == 200
    bob_api = api.as_token(make_token(bob))
    for _ in range(2):  # the second answer comes from the cache
        assert bob_api.get(CHECK).status_code == 200
    return bob, bob_api


def test_revoke_is_seen_at_once(shared, alice_api):
    bob, bob_api = shared
    alice_api.delete("/api/v1/resources/alice/box/-/access/bob")
    assert bob_api.get(CHECK).status_code == 404


def test_grant_is_seen_at_once(alice_api, api):
    alice = User.objects.get(username="alice")
    ResourceFactory(owner=alice, name="box", visibility="private")
    bob_api = api.as_token(make_token(UserFactory(username="bob")))
    assert bob_api.get(CHECK).status_code == 404
    assert bob_api.get(CHECK).status_code == 404
    alice_api.put("/api/v1/resources/alice/box/-/access", {"users": ["bob"], "level": "write"},
                  format="json")
    response = bob_api.get(CHECK.replace("level=read", "level=write"))
    assert response.status_code == 200 and response.json()["level"] == "write"


def test_deleting_and_recreating_is_seen_at_once(shared, alice_api):
    bob, bob_api = shared
    alice_api.delete("/api/v1/resources/alice/box")
    assert bob_api.get(CHECK).status_code == 404
    alice_api.post("/api/v1/resources", {"address": "/alice/box", "type": "env", "config": {}},
                   format="json")
    assert bob_api.get(CHECK).status_code == 404  # the new box has no grants


def test_deactivated_user_and_revoked_token_are_refused_at_once(shared, alice_api):
    bob, bob_api = shared
    bob.is_active = False
    bob.save()  # as the Django admin does
    assert bob_api.get(CHECK).status_code == 401
    assert bob_api.get("/api/v1/me").status_code == 401
