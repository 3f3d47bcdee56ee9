"""Shared fixtures. The suite runs against the PostgreSQL and Redis that
``scripts/test`` starts (DATABASE_URL, REDIS_URL)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from tests.factories import UserFactory, make_token

pytest_plugins = ["tests.celery_worker", "tests.sshhosts"]


def pytest_configure(config):
    """Each test process keeps its cache keys apart: the test databases of
    xdist workers reuse the same ids, and counters keyed by them (invitations
    per user) must not add up across processes sharing one Redis.
    Subprocesses (serve, Celery) inherit the prefix through the environment."""
    worker = getattr(config, "workerinput", {}).get("workerid", "main")
    prefix = f"test-{worker}-"
    os.environ["DEN_CACHE_KEY_PREFIX"] = prefix
    from django.conf import settings

    if settings.configured:
        from django.core.cache import caches

        for alias, options in settings.CACHES.items():
            if "KEY_PREFIX" in options:
                options["KEY_PREFIX"] = prefix + ("throttle" if alias == "throttle" else "")
        caches.__dict__.pop("settings", None)  # a cached_property of the old settings


@pytest.fixture(autouse=True)
def _test_settings(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    # Password hashing is deliberately slow; tests make many users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # The suite's users are not staff, and many tests bring up local clusters;
    # tests/compute/test_local_security.py checks the default ("admins").
    settings.DEN_LOCAL_CLUSTERS = "everyone"


class TokenClient(APIClient):
    """An API client; ``as_token(token)`` sets (or with None, clears) the bearer token."""

    def as_token(self, token: str | None) -> TokenClient:
        if token is None:
            self.credentials()
        else:
            self.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        return self


@pytest.fixture
def api():
    return TokenClient()


@pytest.fixture
def user(db):
    return UserFactory(username="alice")


@pytest.fixture
def token(user):
    return make_token(user)


@pytest.fixture
def alice_api(token):
    return TokenClient().as_token(token)


def pytest_report_header(config):
    return f"database: {os.environ.get('DATABASE_URL', 'sqlite (embedded default)')}"


@pytest.fixture
def shared_tmp():
    """A temporary folder a local daemon running as its own unprivileged user
    (den as root) can see into and write to, unlike pytest's (mode 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="den-test-"))
    folder.chmod(0o1777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
