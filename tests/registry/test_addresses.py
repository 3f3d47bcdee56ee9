"""Addresses and usernames are matched whole: a trailing newline in a segment
(which ``$`` would let through) is refused, so no resource is ever saved under
a name that can then never be opened or deleted."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from registry.errors import InvalidInput
from registry.models import Resource
from registry.models.users import validate_username
from registry.validation import parse_address

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "address",
    ["/alice/a\n/b", "/alice/train\n/x", "/alice\n/train", "/alice/dir\n/sub/leaf"],
)
def test_a_newline_inside_an_address_is_refused(address):
    with pytest.raises(InvalidInput) as raised:
        parse_address(address)
    assert raised.value.field == "address"


def test_an_address_with_a_newline_is_refused_by_the_api_and_nothing_is_saved(alice_api):
    response = alice_api.post(
        "/api/v1/resources",
        {"address": "/alice/a\n/b", "type": "resource", "config": {}},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid_address"
    assert response.json()["error"]["field"] == "address"
    assert not Resource.objects.exists()


@pytest.mark.parametrize("username", ["bob\n", "bob\n\n", "\nbob"])
def test_a_username_with_a_newline_is_refused(username):
    with pytest.raises(ValidationError):
        validate_username(username)


def test_every_saved_resource_can_be_opened_and_deleted_again(alice_api):
    """What the API accepts, it can address again."""
    for address in ("/alice/plain", "/alice/dir/sub/leaf", "/alice/a.b_c-d"):
        created = alice_api.post(
            "/api/v1/resources", {"address": address, "type": "resource", "config": {}},
            format="json",
        )
        assert created.status_code == 201
        assert alice_api.get(f"/api/v1/resources{address}").status_code == 200
        assert alice_api.delete(f"/api/v1/resources{address}").status_code == 204
