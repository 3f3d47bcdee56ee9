"""Sign-in counters that nothing else can erase, the admin's sign-in under the
same limit, and limits on the mail den sends for someone (invitations,
password resets)."""

from __future__ import annotations

import uuid

import pytest
from django.core import mail
from rest_framework.throttling import ScopedRateThrottle

from registry.models import Invitation, PendingGrant
from tests.factories import PASSWORD, ResourceFactory, UserFactory, make_token
from tests.registry.test_caches import embedded_caches

pytestmark = pytest.mark.django_db


def _address() -> str:
    """A client address of this test's own (other processes sign in too)."""
    return f"198.18.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250 + 1}"


@pytest.fixture
def login_rate(monkeypatch):
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"login": "3/min"})


def _api_login(api, address, password="wrong"):
    return api.post("/api/v1/auth/login", {"username": "alice", "password": password},
                    format="json", REMOTE_ADDR=address).status_code


def test_flooding_the_auth_cache_does_not_erase_sign_in_counters(settings, tmp_path, api,
                                                                 user, login_rate):
    """On embedded defaults (file caches), a user whose requests fill the
    token and access-answer cache cannot thereby reset the sign-in limit."""
    settings.CACHES = embedded_caches(tmp_path / "home")
    address = _address()
    assert [_api_login(api, address) for _ in range(3)] == [401, 401, 401]
    flooder = api.__class__().as_token(make_token(user))
    for n in range(1500):  # each answer is a cache entry of its own
        flooder.get(f"/api/v1/auth/check?address=/alice/thing{n}&level=read")
    assert _api_login(api, address, PASSWORD) == 429


def test_admin_sign_in_shares_the_sign_in_limit(client, api, user, login_rate):
    address = _address()
    assert [_api_login(api, address) for _ in range(2)] == [401, 401]
    form = {"username": "alice", "password": "wrong", "next": "/admin/"}
    assert client.post("/admin/login/", form, REMOTE_ADDR=address).status_code == 200
    refused = client.post("/admin/login/", form, REMOTE_ADDR=address)
    assert refused.status_code == 429
    assert "Too many sign-in attempts" in refused.content.decode()
    assert refused["Retry-After"]
    assert _api_login(api, address, PASSWORD) == 429  # one counter for all sign-ins
    assert client.get("/admin/login/", REMOTE_ADDR=address).status_code == 200  # the form shows


def _emails(n, tag):
    return [f"{tag}{i}@example.com" for i in range(n)]


def test_invitations_per_request_are_limited(alice_api, user):
    ResourceFactory(owner=user, name="box")
    response = alice_api.put("/api/v1/resources/alice/box/-/access",
                             {"users": _emails(11, "many"), "level": "read"}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["field"] == "users" and "at most 10 invitations per request" in error["message"]
    assert not PendingGrant.objects.exists() and not Invitation.objects.exists()
    assert not mail.outbox


def test_invitations_per_hour_are_limited(alice_api, user, django_capture_on_commit_callbacks):
    ResourceFactory(owner=user, name="box")
    ResourceFactory(owner=user, name="other")
    share = "/api/v1/resources/alice/{}/-/access"
    for n in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            response = alice_api.put(share.format("box"), {"users": _emails(10, f"batch{n}-")},
                                     format="json")
        assert response.status_code == 200, response.json()
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_api.put(share.format("other"), {"users": ["one-more@example.com"]},
                                 format="json")
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "throttled" and "at most 20 invitations an hour" in error["message"]
    assert int(response["Retry-After"]) > 0
    assert Invitation.objects.count() == 20 and len(mail.outbox) == 20
    # Someone else's invitations are their own.
    bob = UserFactory(username="bob")
    ResourceFactory(owner=bob, name="box")
    bob_api = alice_api.__class__().as_token(make_token(bob))
    assert bob_api.put("/api/v1/resources/bob/box/-/access", {"users": ["x@example.com"]},
                       format="json").status_code == 200


def test_password_reset_mails_are_limited_per_address(client):
    # Addresses of this test's own: the counters live in the Redis other test
    # processes share.
    user = UserFactory(email=f"reset-{uuid.uuid4().hex[:8]}@example.com")
    nobody = f"nobody-{uuid.uuid4().hex[:8]}@example.com"
    address = _address()
    statuses = [client.post("/password-reset", {"email": user.email},
                            REMOTE_ADDR=address).status_code for _ in range(3)]
    assert statuses == [302, 302, 302] and len(mail.outbox) == 3
    refused = client.post("/password-reset", {"email": user.email.upper()}, REMOTE_ADDR=_address())
    assert refused.status_code == 429
    assert "A reset link was sent to this address 3 times" in refused.content.decode()
    assert len(mail.outbox) == 3
    # An address with no account is limited alike, so the answer tells nothing.
    for _ in range(3):
        client.post("/password-reset", {"email": nobody}, REMOTE_ADDR=_address())
    assert client.post("/password-reset", {"email": nobody},
                       REMOTE_ADDR=_address()).status_code == 429


def test_password_reset_mails_are_limited_per_client(client, user):
    address = _address()
    statuses = [client.post("/password-reset", {"email": f"someone{n}@example.com"},
                            REMOTE_ADDR=address).status_code for n in range(10)]
    assert statuses == [302] * 10
    refused = client.post("/password-reset", {"email": user.email}, REMOTE_ADDR=address)
    assert refused.status_code == 429
    assert "asked for from your address" in refused.content.decode()
    assert not mail.outbox
