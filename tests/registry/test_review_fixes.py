"""Regression tests for defects found in a security review of the registry."""

from __future__ import annotations

import pytest

from registry.models import User
from tests.factories import ResourceFactory

pytestmark = pytest.mark.django_db


def test_anonymous_shared_with_me_lists_nothing_rather_than_failing(api, settings):
    settings.DEN_ANONYMOUS_READ_PUBLIC = True
    ResourceFactory(owner=User.objects.create_user(username="alice"), name="pub",
                    visibility="public")
    response = api.get("/api/v1/resources?shared_with_me=1")
    assert response.status_code == 200
    assert response.json()["results"] == []
    assert len(api.get("/api/v1/resources").json()["results"]) == 1
