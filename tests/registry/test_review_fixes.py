"""Regression tests for defects found in a security review of the registry."""

from __future__ import annotations

import pytest

from registry import services
from registry.models import AccessGrant, Invitation, User
from tests.factories import ResourceFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_anonymous_shared_with_me_lists_nothing_rather_than_failing(api, settings):
    settings.DEN_ANONYMOUS_READ_PUBLIC = True
    ResourceFactory(owner=User.objects.create_user(username="alice"), name="pub",
                    visibility="public")
    response = api.get("/api/v1/resources?shared_with_me=1")
    assert response.status_code == 200
    assert response.json()["results"] == []
    assert len(api.get("/api/v1/resources").json()["results"]) == 1


def test_invitation_cannot_make_a_second_account_for_a_known_email(alice_api, api):
    """A disabled account's owner must not get back in through a teammate's
    share to their email (which invites it, as no active account has it)."""
    alice = User.objects.get(username="alice")
    ResourceFactory(owner=alice, name="box")
    UserFactory(username="gone", email="gone@example.com", is_active=False)
    shared = alice_api.put("/api/v1/resources/alice/box/-/access",
                           {"users": ["gone@example.com"]}, format="json")
    assert shared.json()["invited"] == ["gone@example.com"]
    invitation = Invitation.objects.get(email="gone@example.com")
    invitation.delete()  # the plain link only went by email: make one we know
    link = services.invitation_send(actor=alice, email="Gone@Example.com").plain_token
    accepted = api.post("/api/v1/invitations/accept",
                        {"token": link, "username": "back", "password": "a long password 123"},
                        format="json")
    assert accepted.status_code == 409
    assert accepted.json()["error"]["field"] == "email"
    assert not User.objects.filter(username="back").exists()
    assert not AccessGrant.objects.filter(resource__name="box").exists()
