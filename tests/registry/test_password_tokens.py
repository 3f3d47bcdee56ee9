"""Changing or resetting a password ends the user's API tokens (whoever held
one is locked out with the old password), with an audit row; their clusters'
own tokens keep working, so running daemons are not cut off."""

from __future__ import annotations

import re

import pytest
from django.core import mail

from compute.models import ClusterState
from compute.services import _mint_cluster_token
from registry.models import ApiToken, AuditEvent
from tests.conftest import TokenClient
from tests.factories import PASSWORD, ResourceFactory, UserFactory, make_token
from tests.frontend.conftest import PageClient, text_of

pytestmark = pytest.mark.django_db
NEW_PASSWORD = "a brand new passphrase 42"


@pytest.fixture
def alice():
    return UserFactory(username="alice")


@pytest.fixture
def tokens(alice):
    """Two of alice's own tokens and her cluster's daemon token."""
    cpu = ResourceFactory(owner=alice, name="cpu", type="cluster", config={"provider": "local"})
    state = ClusterState.objects.create(resource=cpu, status="up")
    daemon = _mint_cluster_token(state, state.request_seq)
    return {"own": [make_token(alice), make_token(alice, scope="read")], "cluster": daemon}


def _works(token, path="/api/v1/me"):
    return TokenClient().as_token(token).get(path).status_code


def _assert_revoked(tokens, how):
    for token in tokens["own"]:
        assert _works(token) == 401
    # The daemon's token still checks callers (its one job).
    assert _works(tokens["cluster"], "/api/v1/auth/check?address=/alice/cpu") == 200
    row = AuditEvent.objects.filter(action="user.password").latest("id")
    assert row.data["how"] == how and row.data["tokens_revoked"] == 2


def test_changing_the_password_revokes_the_api_tokens(alice, tokens):
    for token in tokens["own"]:
        assert _works(token) == 200
    client = PageClient()
    client.force_login(alice)
    response = client.submit("/settings/password", {
        "old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert response.status_code == 302
    _assert_revoked(tokens, "change")
    page = text_of(client.get("/settings/profile"))
    assert "Your 2 API tokens were revoked" in page
    assert "revokes all your API tokens" in page  # said before the change, too
    # A token made afterwards works.
    assert _works(make_token(alice)) == 200


def test_resetting_the_password_revokes_the_api_tokens(alice, tokens, settings):
    settings.DEN_PUBLIC_URL = "https://den.example.com"
    client = PageClient()
    client.submit("/password-reset", {"email": alice.email})
    link = re.search(r"https?://[^/]+(/password-reset/\S+)", mail.outbox[-1].body).group(1)
    form = client.get(link, follow=True)
    assert "revokes all your API tokens" in text_of(form)
    done = client.submit(form.redirect_chain[-1][0],
                         {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done["Location"] == "/password-reset/done"
    _assert_revoked(tokens, "reset")
    alice.refresh_from_db()
    assert alice.check_password(NEW_PASSWORD)


def test_a_password_set_in_the_admin_revokes_the_api_tokens(alice, tokens, client):
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(root)
    response = client.post(f"/admin/registry/user/{alice.pk}/password/",
                           {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD,
                            "usable_password": "true"})
    assert response.status_code == 302, response.content[:500]
    _assert_revoked(tokens, "admin")
    assert AuditEvent.objects.filter(action="user.password").latest("id").actor == root


def test_a_failed_change_revokes_nothing(alice, tokens):
    client = PageClient()
    client.force_login(alice)
    response = client.submit("/settings/password", {
        "old_password": "wrong", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert response.status_code == 422
    assert all(_works(token) == 200 for token in tokens["own"])
    assert not ApiToken.objects.filter(revoked_at__isnull=False).exists()
