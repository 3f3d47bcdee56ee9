"""The Django admin shows resources, versions, grants, invitations, secret
values, tokens and audit rows read-only; what staff change goes through
``registry.services`` as actions (visibility, delete, revoke a grant, cancel
an invitation, revoke a token), and so leaves the same audit rows as the API."""

from __future__ import annotations

import pytest

from registry import services
from registry.models import (
    AccessGrant,
    AccessLevel,
    ApiToken,
    AuditEvent,
    PendingGrant,
    Resource,
    ResourceVersion,
)
from tests.conftest import TokenClient
from tests.factories import ResourceFactory, UserFactory, make_token

pytestmark = pytest.mark.django_db
MODELS = ["resource", "resourceversion", "accessgrant", "pendinggrant", "apitoken",
          "secretvalue", "auditevent"]


@pytest.fixture
def world(client):
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    train = ResourceFactory(owner=alice, name="train", type="function", config={"code": "v1"})
    grant = AccessGrant.objects.create(resource=train, user=bob, level=AccessLevel.READ)
    services.resource_share(actor=alice, resource=train, users=["carol@example.com"], level="read")
    key = ResourceFactory(owner=alice, name="key", type="secret", config={})
    services.secret_set_values(actor=alice, resource=key, values={"k": "v"})
    bob_token = make_token(bob)
    client.force_login(root)
    return {"root": root, "train": train, "grant": grant, "bob_token": bob_token,
            "client": client}


def _action(client, model, action, ids, **extra):
    return client.post(f"/admin/registry/{model}/",
                       {"action": action, "_selected_action": [str(i) for i in ids], **extra})


def _audit(action):
    return AuditEvent.objects.filter(action=action, actor_username="root")


def test_the_pages_show_rows_but_offer_no_add_edit_or_delete(world):
    client = world["client"]
    for model in MODELS:
        listing = client.get(f"/admin/registry/{model}/")
        assert listing.status_code == 200, model
        assert f'href="/admin/registry/{model}/add/"' not in listing.content.decode(), model
        assert client.get(f"/admin/registry/{model}/add/").status_code == 403, model
    resource = world["train"]
    page = client.get(f"/admin/registry/resource/{resource.pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content
    # A forged edit changes nothing.
    before = (resource.visibility, resource.config, ResourceVersion.objects.count())
    edit = client.post(f"/admin/registry/resource/{resource.pk}/change/",
                       {"visibility": "public", "config": '{"code": "evil"}', "name": "train",
                        "type": "function", "owner": resource.owner_id})
    assert edit.status_code == 403
    assert client.post(f"/admin/registry/resource/{resource.pk}/delete/").status_code == 403
    resource.refresh_from_db()
    assert (resource.visibility, resource.config, ResourceVersion.objects.count()) == before
    assert AccessGrant.objects.filter(pk=world["grant"].pk).exists()


def test_changing_visibility_is_an_audited_action(world):
    response = _action(world["client"], "resource", "make_public", [world["train"].pk])
    assert response.status_code == 302
    world["train"].refresh_from_db()
    assert world["train"].visibility == "public"
    row = _audit("resource.visibility").get()
    assert row.data == {"old": "private", "new": "public"}


def test_deleting_asks_first_then_goes_through_the_service(world):
    client, train = world["client"], world["train"]
    asked = _action(client, "resource", "delete_resources", [train.pk])
    assert asked.status_code == 200 and b"/alice/train" in asked.content
    assert Resource.objects.filter(pk=train.pk).exists()
    done = _action(client, "resource", "delete_resources", [train.pk], confirmed="yes")
    assert done.status_code == 302
    assert not Resource.objects.filter(pk=train.pk).exists()
    assert not PendingGrant.objects.exists() and not AccessGrant.objects.exists()
    assert _audit("resource.delete").get().address == "/alice/train"


def test_revoking_a_grant_and_cancelling_an_invitation_are_audited(world):
    client = world["client"]
    _action(client, "accessgrant", "revoke_grants", [world["grant"].pk])
    assert not AccessGrant.objects.exists()
    assert _audit("access.revoke").get().data == {"user": "bob"}
    pending = PendingGrant.objects.get()
    _action(client, "pendinggrant", "cancel_pending", [pending.pk])
    assert not PendingGrant.objects.exists()
    assert _audit("access.revoke").filter(data__user="carol@example.com").exists()


def test_revoking_a_token_goes_through_the_service(world):
    token = ApiToken.objects.get(user__username="bob")
    assert TokenClient().as_token(world["bob_token"]).get("/api/v1/me").status_code == 200
    _action(world["client"], "apitoken", "revoke_tokens", [token.pk])
    assert TokenClient().as_token(world["bob_token"]).get("/api/v1/me").status_code == 401
    row = _audit("token.revoke").get()
    assert row.data["user"] == "bob" and row.data["by_admin"] is True


def test_staff_who_are_not_superusers_get_no_actions(world):
    client = world["client"]
    staff = UserFactory(username="helper", is_staff=True)
    from django.contrib.auth.models import Permission

    staff.user_permissions.add(*Permission.objects.filter(codename__startswith="view_"))
    client.force_login(staff)
    listing = client.get("/admin/registry/resource/").content.decode()
    assert "make_public" not in listing and "delete_resources" not in listing
    _action(client, "resource", "make_public", [world["train"].pk])
    world["train"].refresh_from_db()
    assert world["train"].visibility == "private"
