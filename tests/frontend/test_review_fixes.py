"""Regression tests for defects found in a security review of the web UI."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from rest_framework.throttling import ScopedRateThrottle

from tests.factories import PASSWORD
from tests.frontend.conftest import text_of

pytestmark = pytest.mark.django_db


def test_sign_in_page_shares_the_login_rate_limit(team, page_client, monkeypatch):
    """The API's login is rate-limited; the page must not be a way around it."""
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"login": "3/min"})
    cache.clear()
    try:
        client = page_client()
        statuses = [client.submit("/login", {"username": "alice", "password": "nope"}).status_code
                    for _ in range(3)]
        assert statuses == [200, 200, 200]
        refused = client.submit("/login", {"username": "alice", "password": PASSWORD})
        assert refused.status_code == 429
        assert "Too many sign-in attempts" in text_of(refused)
        assert client.get("/").status_code == 302  # not signed in, even with the right password
    finally:
        cache.clear()
