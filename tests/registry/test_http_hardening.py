"""Responses no shared cache may keep, and API docs served from den alone."""

from __future__ import annotations

import re

import pytest

from tests.factories import PASSWORD, ResourceFactory

pytestmark = pytest.mark.django_db


def _directives(response) -> set[str]:
    return {part.strip() for part in response.get("Cache-Control", "").split(",")}


def test_api_bodies_and_token_responses_are_private_and_not_stored(api, alice_api, user):
    ResourceFactory(owner=user, name="box")
    responses = [
        alice_api.get("/api/v1/resources/alice/box"),
        alice_api.get("/api/v1/resources"),
        alice_api.get("/api/v1/me"),
        alice_api.post("/api/v1/tokens", {"name": "laptop", "scope": "read"}, format="json"),
        api.post("/api/v1/auth/login", {"username": "alice", "password": PASSWORD},
                 format="json"),
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 201, 201]
    for response in responses:
        assert {"private", "no-store"} <= _directives(response), response.wsgi_request.path


def test_signed_in_pages_are_private_and_not_stored(client, user):
    ResourceFactory(owner=user, name="box")
    client.force_login(user)
    for path in ("/", "/alice/box", "/settings/tokens"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert {"private", "no-store"} <= _directives(response), path


def test_api_docs_load_nothing_from_another_origin(client):
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    references = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    references += re.findall(r"""["'](https?://[^"']+|//[^"']+)["']""", html)
    assert references, html[:500]
    for ref in references:
        assert ref.startswith("/") and not ref.startswith("//"), ref
    for ref in {r for r in references if r.startswith("/static/")}:
        assert client.get(ref).status_code == 200, ref
