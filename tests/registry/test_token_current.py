"""``DELETE /api/v1/tokens/current`` revokes the token the request is made
with (what ``den logout`` calls), with an audit row; a read-scoped token may
revoke itself; a session has no token to revoke."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from registry.models import AuditEvent
from tests.conftest import TokenClient
from tests.factories import make_token

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("scope", ["write", "read"])
def test_a_token_revokes_itself_and_only_itself(user, scope):
    token, other = make_token(user, scope=scope), make_token(user)
    client = TokenClient().as_token(token)
    assert client.delete("/api/v1/tokens/current").status_code == 204
    assert client.get("/api/v1/me").status_code == 401
    assert TokenClient().as_token(other).get("/api/v1/me").status_code == 200
    assert AuditEvent.objects.filter(action="token.revoke", actor=user).count() == 1


def test_a_session_has_no_token_to_revoke(user):
    client = APIClient()
    client.force_login(user)
    response = client.delete("/api/v1/tokens/current")
    assert response.status_code == 400
    assert "session" in response.json()["error"]["message"]
