"""Versions, restore, delete and re-create, sharing and invitations."""

from __future__ import annotations

import pytest
from django.core import mail

from registry.models import AccessGrant, AuditEvent, PendingGrant, Resource, ResourceVersion
from tests.factories import UserFactory, make_token

pytestmark = pytest.mark.django_db
URL = "/api/v1/resources/alice/train"


@pytest.fixture
def bob(db):
    return UserFactory(username="bob", email="bob@example.com")


def _save(api, config, **extra):
    return api.put(URL, {"type": "function", "config": config, **extra}, format="json")


def test_versions_are_immutable_and_restore_makes_a_new_one(alice_api):
    assert _save(alice_api, {"code": "v1"}).status_code == 201
    assert _save(alice_api, {"code": "v2"}).status_code == 200
    assert _save(alice_api, {"code": "v2"}).json()["version"] == 2  # same config: no new version
    versions = alice_api.get(f"{URL}/-/versions").json()["results"]
    assert [v["version"] for v in versions] == [2, 1]
    assert alice_api.get(f"{URL}/-/versions/1").json()["config"] == {"code": "v1"}

    restored = alice_api.post(f"{URL}/-/versions/1/restore")
    assert restored.status_code == 201
    assert restored.json()["version"] == 3
    assert restored.json()["config"] == {"code": "v1"}
    assert restored["ETag"] == '"3"'
    third = alice_api.get(f"{URL}/-/versions/3").json()
    assert third["restored_from"] == 1 and third["author"] == "alice"


def test_etag_and_if_none_match(alice_api):
    _save(alice_api, {"code": "v1"})
    response = alice_api.get(URL)
    assert response["ETag"] == '"1"'
    assert alice_api.get(URL, HTTP_IF_NONE_MATCH='"1"').status_code == 304
    assert alice_api.get(URL, HTTP_IF_NONE_MATCH='"0"').status_code == 200


def test_stale_if_match_is_refused_and_changes_nothing(alice_api):
    _save(alice_api, {"code": "v1"})
    _save(alice_api, {"code": "v2"})
    response = alice_api.put(URL, {"config": {"code": "stale"}}, format="json", HTTP_IF_MATCH='"1"')
    assert response.status_code == 412
    assert response.json()["error"]["code"] == "version_conflict"
    assert alice_api.get(URL).json()["config"] == {"code": "v2"}
    ok = alice_api.put(URL, {"config": {"code": "v3"}}, format="json", HTTP_IF_MATCH='"2"')
    assert ok.status_code == 200 and ok.json()["version"] == 3


def test_delete_and_recreate_brings_back_no_grants_versions_or_audit(alice_api, api, bob):
    _save(alice_api, {"code": "v1"})
    _save(alice_api, {"code": "v2"})
    assert alice_api.put(f"{URL}/-/access", {"users": ["bob"], "level": "write"},
                         format="json").status_code == 200
    alice_api.put(f"{URL}/-/access", {"users": ["new@example.com"]}, format="json")
    old_id = Resource.objects.get(name="train").pk
    assert alice_api.delete(URL).status_code == 204
    assert alice_api.get(URL).status_code == 404

    assert _save(alice_api, {"code": "fresh"}).status_code == 201
    resource = Resource.objects.get(name="train")
    assert resource.pk != old_id and resource.version == 1
    assert not AccessGrant.objects.filter(resource=resource).exists()
    assert not PendingGrant.objects.filter(resource=resource).exists()
    assert list(ResourceVersion.objects.filter(resource=resource).values_list("number", flat=True)) == [1]
    access = alice_api.get(f"{URL}/-/access").json()
    assert access["grants"] == [] and access["pending"] == []
    audit = alice_api.get("/api/v1/audit?address=/alice/train").json()["results"]
    assert [event["action"] for event in audit] == ["resource.create"]
    # The old rows are kept (an audit log outlives what it records) under the old id.
    assert AuditEvent.objects.filter(resource_id=old_id, action="resource.delete").exists()
    bob_api = api.as_token(make_token(bob))
    assert bob_api.get(URL).status_code == 404


def test_share_with_email_invites_and_binds_on_accept(
    alice_api, api, django_capture_on_commit_callbacks
):
    _save(alice_api, {"code": "v1"})
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_api.put(
            f"{URL}/-/access", {"users": ["Carol@Example.com"], "level": "read"}, format="json"
        )
    assert response.json() == {"granted": [], "invited": ["carol@example.com"]}
    assert len(mail.outbox) == 1
    link = next(line for line in mail.outbox[0].body.splitlines() if "/invite/" in line)
    invite_token = link.rsplit("/", 1)[1]
    assert alice_api.get(f"{URL}/-/access").json()["pending"][0]["email"] == "carol@example.com"

    api.as_token(None)
    assert api.get(f"/api/v1/invitations/{invite_token}").json()["email"] == "carol@example.com"
    accepted = api.post("/api/v1/invitations/accept", {"token": invite_token, "username": "carol",
                                                        "password": "a long password 123"},
                        format="json")
    assert accepted.status_code == 201, accepted.json()
    login = api.post("/api/v1/auth/login", {"username": "carol", "password": "a long password 123"},
                     format="json")
    assert login.status_code == 201
    carol = api.as_token(login.json()["token"])
    assert carol.get(URL).json()["access_level"] == "read"
    assert not PendingGrant.objects.exists()
    # The link works once.
    api.as_token(None)
    again = api.post("/api/v1/invitations/accept", {"token": invite_token, "username": "carol2",
                                                     "password": "a long password 123"}, format="json")
    assert again.status_code == 404


def test_revoked_teammate_gets_404(alice_api, api, bob):
    _save(alice_api, {"code": "v1"})
    alice_api.put(f"{URL}/-/access", {"users": ["bob"], "level": "read"}, format="json")
    bob_token = make_token(bob)
    alice_api.delete(f"{URL}/-/access/bob")
    response = api.as_token(bob_token).get(URL)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_secret_reads_are_audited_and_need_write(alice_api, api, bob):
    alice_api.put("/api/v1/resources/alice/aws", {"type": "secret", "config": {"provider": "aws"}},
                  format="json")
    alice_api.put("/api/v1/resources/alice/aws/-/secret", {"values": {"K": "v"}}, format="json")
    assert alice_api.get("/api/v1/resources/alice/aws/-/secret").json() == {"values": {"K": "v"}}
    alice_api.put("/api/v1/resources/alice/aws/-/access", {"users": ["bob"]}, format="json")
    bob_api = api.as_token(make_token(bob))
    assert bob_api.get("/api/v1/resources/alice/aws").status_code == 200  # metadata: fine
    assert bob_api.get("/api/v1/resources/alice/aws/-/secret").status_code == 403
    actions = list(AuditEvent.objects.filter(address="/alice/aws").values_list("action", flat=True))
    assert "secret.read" in actions and "secret.write" in actions


def test_listing_never_shows_others_unlisted(alice_api, api, bob):
    for name, visibility in [("pub", "public"), ("unl", "unlisted"), ("priv", "private")]:
        alice_api.post("/api/v1/resources", {"address": f"/alice/{name}", "type": "env",
                                             "config": {}, "visibility": visibility}, format="json")
    alice_api.put("/api/v1/resources/alice/priv/-/access", {"users": ["bob"]}, format="json")
    bob_api = api.as_token(make_token(bob))
    names = {r["address"] for r in bob_api.get("/api/v1/resources").json()["results"]}
    assert names == {"/alice/pub", "/alice/priv"}
    shared = bob_api.get("/api/v1/resources?shared_with_me=true").json()["results"]
    assert [r["address"] for r in shared] == ["/alice/priv"]
    assert bob_api.get("/api/v1/resources/alice/unl").status_code == 200  # by address: fine
    found = bob_api.get("/api/v1/resources?q=un").json()["results"]
    assert found == []
    mine = {r["address"] for r in alice_api.get("/api/v1/resources?owner=alice").json()["results"]}
    assert mine == {"/alice/pub", "/alice/unl", "/alice/priv"}


def test_cursor_pagination_walks_everything_once(alice_api):
    for i in range(7):
        alice_api.post("/api/v1/resources", {"address": f"/alice/r{i}", "type": "env", "config": {}},
                       format="json")
    seen, url = [], "/api/v1/resources?limit=3"
    while url:
        page = alice_api.get(url).json()
        seen += [r["address"] for r in page["results"]]
        url = page["next"]
    assert sorted(seen) == sorted(f"/alice/r{i}" for i in range(7))


def test_tokens_are_shown_once_and_read_scope_cannot_write(alice_api, api):
    created = alice_api.post("/api/v1/tokens", {"name": "ci", "scope": "read", "expires_in_days": 7},
                             format="json").json()
    assert created["token"].startswith("den_") and created["scope"] == "read"
    listed = alice_api.get("/api/v1/tokens").json()
    assert all("token" not in t for t in listed)
    assert created["token"][-4:] in [t["hint"] for t in listed]
    reader = api.as_token(created["token"])
    assert reader.get("/api/v1/me").json()["username"] == "alice"
    response = reader.post("/api/v1/resources", {"address": "/alice/x", "type": "env", "config": {}},
                           format="json")
    assert response.status_code == 403
    assert alice_api.delete(f"/api/v1/tokens/{created['id']}").status_code == 204
    assert api.as_token(created["token"]).get("/api/v1/me").status_code == 401


def test_login_returns_a_named_token(api, user):
    response = api.post("/api/v1/auth/login", {"username": "alice", "password":
                                               "correct horse battery staple",
                                               "token_name": "laptop"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "laptop" and body["scope"] == "write" and body["token"].startswith("den_")


def test_openapi_schema_and_docs(api):
    schema = api.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/resources" in schema.content
    assert api.get("/api/docs/").status_code == 200


def test_every_model_is_in_the_admin():
    from django.apps import apps
    from django.contrib import admin

    for model in apps.get_app_config("registry").get_models():
        assert admin.site.is_registered(model), model.__name__


def test_login_is_throttled(api, user, monkeypatch):
    import uuid

    from django.core.cache import cache
    from rest_framework.throttling import ScopedRateThrottle

    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"login": "3/min"})
    # An address of its own: other test processes share the cache and sign in too.
    address = f"203.0.113.{uuid.uuid4().int % 250 + 1}"
    cache.delete(f"throttle_login_{address}")

    def attempt(**headers):
        return api.post("/api/v1/auth/login", {"username": "alice", "password": "wrong"},
                        format="json", REMOTE_ADDR=address, **headers).status_code

    assert [attempt() for _ in range(4)] == [401, 401, 401, 429]
    # A forged X-Forwarded-For does not make a fresh client.
    assert attempt(HTTP_X_FORWARDED_FOR="198.51.100.9") == 429
    cache.delete(f"throttle_login_{address}")


def test_admin_creates_users_and_refuses_reserved_names(client, django_user_model):
    admin_user = django_user_model.objects.create_superuser("root1", "root@example.com", "pw-123-long")
    client.force_login(admin_user)
    form = {"username": "search", "email": "s@example.com", "password1": "a long password 123",
            "password2": "a long password 123", "usable_password": "true"}
    response = client.post("/admin/registry/user/add/", form)
    assert response.status_code == 200  # the form again, with the error
    assert b"reserved" in response.content
    assert not django_user_model.objects.filter(username="search").exists()
    form["username"] = "dora"
    response = client.post("/admin/registry/user/add/", form)
    assert response.status_code == 302
    assert django_user_model.objects.filter(username="dora", email="s@example.com").exists()


def test_listing_costs_the_same_queries_for_many_resources(alice_api, django_assert_max_num_queries):
    for i in range(30):
        alice_api.post("/api/v1/resources", {"address": f"/alice/r{i}", "type": "env",
                                             "config": {"reqs": ["x"] * 10}}, format="json")
    with django_assert_max_num_queries(3):  # token (cached or not), the page, nothing per row
        page = alice_api.get("/api/v1/resources?limit=30").json()
    assert len(page["results"]) == 30 and "config" not in page["results"][0]


def test_admins_invite_from_the_admin_and_the_shell(client, django_user_model, api,
                                                    django_capture_on_commit_callbacks):
    import io
    import re

    from django.core import mail
    from django.core.management import call_command

    root = django_user_model.objects.create_superuser("root1", "root@example.com", "pw-123-long")
    client.force_login(root)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/admin/registry/invitation/add/", {"email": "new@example.com"},
                               follow=True)
    shown = re.search(r"/invite/(den_\w+)", response.content.decode()).group(1)
    assert "new@example.com" in mail.outbox[-1].to and shown in mail.outbox[-1].body
    accepted = api.post("/api/v1/invitations/accept", {"token": shown, "username": "newbie",
                                                       "password": "a long password 123"},
                        format="json")
    assert accepted.status_code == 201

    out = io.StringIO()
    call_command("invite", "other@example.com", stdout=out)
    link = re.search(r"/invite/(den_\w+)", out.getvalue()).group(1)
    assert api.get(f"/api/v1/invitations/{link}").json()["email"] == "other@example.com"
