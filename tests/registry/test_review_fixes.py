"""Regression tests for defects found in a security review of the registry."""

from __future__ import annotations

import pytest
from django.core import mail

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


def _share_and_get_link(alice_api, email, capture):
    with capture(execute=True):
        response = alice_api.put("/api/v1/resources/alice/box/-/access", {"users": [email]},
                                 format="json")
    assert response.json()["invited"] == [email]
    link = next(line for line in mail.outbox[-1].body.splitlines() if "/invite/" in line)
    return link.rsplit("/", 1)[1]


@pytest.mark.parametrize("cancel", ["revoke", "delete"])
def test_cancelled_invitation_link_makes_no_account(
    alice_api, api, django_capture_on_commit_callbacks, cancel
):
    """ "Cancel the invitation" (or deleting the resource) ends the link: the
    person it went to cannot still join den with it."""
    ResourceFactory(owner=User.objects.get(username="alice"), name="box")
    link = _share_and_get_link(alice_api, "eve@example.com", django_capture_on_commit_callbacks)
    if cancel == "revoke":
        assert alice_api.delete(
            "/api/v1/resources/alice/box/-/access/eve@example.com").status_code == 204
    else:
        assert alice_api.delete("/api/v1/resources/alice/box").status_code == 204
    api.as_token(None)
    assert api.get(f"/api/v1/invitations/{link}").status_code == 404
    accepted = api.post("/api/v1/invitations/accept",
                        {"token": link, "username": "eve", "password": "a long password 123"},
                        format="json")
    assert accepted.status_code == 404
    assert not User.objects.filter(username="eve").exists()


def test_cancelling_one_share_keeps_the_other_invitation(
    alice_api, api, django_capture_on_commit_callbacks
):
    alice = User.objects.get(username="alice")
    ResourceFactory(owner=alice, name="box")
    ResourceFactory(owner=alice, name="other")
    _share_and_get_link(alice_api, "eve@example.com", django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        alice_api.put("/api/v1/resources/alice/other/-/access", {"users": ["eve@example.com"]},
                      format="json")
    other_link = next(line for line in mail.outbox[-1].body.splitlines()
                      if "/invite/" in line).rsplit("/", 1)[1]
    alice_api.delete("/api/v1/resources/alice/box/-/access/eve@example.com")
    api.as_token(None)
    accepted = api.post("/api/v1/invitations/accept",
                        {"token": other_link, "username": "eve", "password": "a long password 123"},
                        format="json")
    assert accepted.status_code == 201
    eve = User.objects.get(username="eve")
    assert list(AccessGrant.objects.filter(user=eve).values_list("resource__name", flat=True)) == [
        "other"
    ]
