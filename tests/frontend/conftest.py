"""Fixtures for page tests: a small team around one resource, and clients
that enforce CSRF the way a browser's requests meet it."""

from __future__ import annotations

import html
import re

import pytest
from django.test import Client

from registry.models import AccessGrant, AccessLevel
from tests.factories import ResourceFactory, UserFactory


class PageClient(Client):
    """A test client with CSRF checks on; ``submit`` posts a form the way the
    page would, with the CSRF token from the cookie a page handed out."""

    def __init__(self, **kwargs):
        super().__init__(enforce_csrf_checks=True, **kwargs)

    def csrf_token(self) -> str:
        if "csrftoken" not in self.cookies:
            self.get("/password-reset")  # any page with a form sets the cookie
        return self.cookies["csrftoken"].value

    def submit(self, path: str, data: dict | None = None, **extra):
        return self.post(path, {**(data or {}), "csrfmiddlewaretoken": self.csrf_token()}, **extra)


@pytest.fixture
def page_client():
    """``page_client(user)``: a CSRF-enforcing client signed in as ``user`` (or anonymous)."""

    def make(user=None) -> PageClient:
        client = PageClient()
        if user is not None:
            client.force_login(user)
        return client

    return make


@pytest.fixture
def team(db):
    """alice owns /alice/train; wendy may write it, rita read it; sam is a stranger."""
    alice = UserFactory(username="alice")
    wendy = UserFactory(username="wendy")
    rita = UserFactory(username="rita")
    sam = UserFactory(username="sam")
    train = ResourceFactory(owner=alice, name="train", type="function",
                            config={"code": "sha256:1", "pointers": {"module": "train", "qualname": "train"}},
                            description="Trains the model")
    AccessGrant.objects.create(resource=train, user=wendy, level=AccessLevel.WRITE, granted_by=alice)
    AccessGrant.objects.create(resource=train, user=rita, level=AccessLevel.READ, granted_by=alice)

    class Team:
        pass

    team = Team()
    team.alice, team.wendy, team.rita, team.sam, team.train = alice, wendy, rita, sam, train
    team.by_role = {"owner": alice, "writer": wendy, "reader": rita, "stranger": sam}
    return team


def text_of(response) -> str:
    """The response's HTML with tags and extra space removed, for phrase checks."""
    page = response.content.decode()
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))
