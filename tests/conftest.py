"""Shared fixtures. The suite runs against the PostgreSQL and Redis that
``scripts/test`` starts (DATABASE_URL, REDIS_URL)."""

from __future__ import annotations

import os

import pytest
from rest_framework.test import APIClient

from tests.factories import UserFactory, make_token


@pytest.fixture(autouse=True)
def _locmem_email(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


@pytest.fixture
def api():
    """An API client with no credentials; ``api.as_token(token)`` sets a bearer token."""

    class Client(APIClient):
        def as_token(self, token: str | None) -> Client:
            if token is None:
                self.credentials()
            else:
                self.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
            return self

    return Client()


@pytest.fixture
def user(db):
    return UserFactory(username="alice")


@pytest.fixture
def token(user):
    return make_token(user)


@pytest.fixture
def alice_api(api, token):
    return api.as_token(token)


def pytest_report_header(config):
    return f"database: {os.environ.get('DATABASE_URL', 'sqlite (embedded default)')}"
