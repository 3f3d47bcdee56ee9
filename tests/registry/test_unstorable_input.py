"""Input PostgreSQL cannot store, or Python cannot parse safely, is a 400 that
names the field and changes nothing: NUL characters and lone surrogates in
configs, keys, query parameters and URL segments; numbers too large for JSON
(``1e400``); JSON nested too deeply (also on the anonymous login)."""

from __future__ import annotations

import pytest

from registry.models import AccessGrant, Resource, ResourceVersion
from registry.validation import MAX_JSON_DEPTH
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
URL = "/api/v1/resources/alice/train"


def snapshot():
    return (
        list(Resource.objects.order_by("id").values_list("name", "type", "config", "version",
                                                         "description")),
        ResourceVersion.objects.count(),
        AccessGrant.objects.count(),
    )


@pytest.fixture
def existing(alice_api):
    UserFactory(username="bob")
    assert alice_api.put(URL, {"type": "function", "config": {"code": "v1"}},
                         format="json").status_code == 201
    return alice_api


def _raw(client, method, path, text):
    return getattr(client, method)(path, text.encode("utf-8", "surrogatepass"),
                                   content_type="application/json")


DEEP = "[" * 100_000 + "]" * 100_000
NEARLY_DEEP = "[" * (MAX_JSON_DEPTH + 5) + "]" * (MAX_JSON_DEPTH + 5)

BODY_CASES = [
    # name, body text, code, field
    ("NUL in a config value", r'{"config": {"name": "a\u0000b"}}', "invalid_text", "config.name"),
    ("NUL in a nested list", r'{"config": {"a": {"b": ["ok", "x\u0000"]}}}', "invalid_text",
     "config.a.b.1"),
    ("NUL in a config key", r'{"config": {"a\u0000": 1}}', "invalid_text", "config"),
    ("lone surrogate in a value", r'{"config": {"x": "\ud800"}}', "invalid_text", "config.x"),
    ("lone low surrogate", r'{"config": {"x": "a\udc00"}}', "invalid_text", "config.x"),
    ("lone surrogate in a key", r'{"config": {"\udfff": 1}}', "invalid_text", "config"),
    ("1e400", '{"config": {"x": 1e400}}', "invalid_number", "config.x"),
    ("-1e400 in a list", '{"config": {"x": [1, -1e400]}}', "invalid_number", "config.x.1"),
    ("nesting that exhausts the parser", '{"config": {"x": ' + DEEP + "}}", "too_deep", "config"),
    ("nesting past the limit", '{"config": {"x": ' + NEARLY_DEEP + "}}", "too_deep", "config"),
    ("NUL in the description", r'{"config": {}, "description": "a\u0000"}', "invalid_text",
     "description"),
    ("surrogate in the type", r'{"type": "\ud800", "config": {}}', "invalid_text", "type"),
]


@pytest.mark.parametrize("case", BODY_CASES, ids=[case[0] for case in BODY_CASES])
def test_unstorable_bodies_are_refused_naming_the_field(existing, case):
    name, text, code, field = case
    before = snapshot()
    response = _raw(existing, "put", URL, text)
    assert response.status_code == 400, response.content[:300]
    error = response.json()["error"]
    assert (error["code"], error["field"]) == (code, field), error
    assert len(error["message"]) > 10
    assert snapshot() == before


def test_a_fine_config_with_unicode_and_escaped_pairs_is_kept(existing):
    text = (r'{"config": {"emoji": "\ud83d\ude00", "name": "Zoë", "n": 1e300, "deep": '
            + "[" * (MAX_JSON_DEPTH - 3) + "]" * (MAX_JSON_DEPTH - 3) + "}}")
    response = _raw(existing, "put", URL, text)
    assert response.status_code == 200, response.content[:300]
    assert Resource.objects.get(name="train").config["emoji"] == "\U0001f600"


@pytest.mark.parametrize(
    ("body", "field"),
    [(DEEP, None), ('{"username": ' + DEEP + ', "password": "x"}', "username"),
     (r'{"username": "a\u0000", "password": "x"}', "username"),
     (r'{"username": "alice", "password": "\ud800"}', "password")],
)
def test_the_anonymous_login_refuses_them_too(api, existing, body, field):
    response = _raw(api, "post", "/api/v1/auth/login", body)
    assert response.status_code == 400, response.content[:300]
    assert response.json()["error"]["field"] == field


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/resources?q=%00", "q"),
        ("/api/v1/resources?owner=a%00", "owner"),
        ("/api/v1/resources?visibility=%00", "visibility"),
        ("/api/v1/resources?%00=1", "query parameter"),
        ("/api/v1/audit?address=/alice/train%00", "address"),
        ("/api/v1/auth/check?address=/alice/tr%00ain", "address"),
    ],
)
def test_unstorable_query_parameters_are_refused(existing, path, field):
    response = existing.get(path)
    assert response.status_code == 400, response.content[:300]
    assert response.json()["error"]["field"] == field


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("delete", f"{URL}/-/access/b%00b", "who"),
        ("get", "/api/v1/resources/alice/tr%00ain", "address"),
        ("get", "/api/v1/invitations/abc%00", "token"),
        ("post", f"{URL}/-/versions/1%00/restore", "number"),
    ],
)
def test_unstorable_url_segments_are_refused(existing, method, path, field):
    before = snapshot()
    response = getattr(existing, method)(path)
    assert response.status_code == 400, response.content[:300]
    assert response.json()["error"]["field"] == field
    assert snapshot() == before


def test_pages_refuse_them_naming_the_field(existing, client):
    from registry.models import User

    client.force_login(User.objects.get(username="alice"))
    before = snapshot()
    response = client.get("/search?q=%00")
    assert response.status_code == 400
    assert b"<code>q</code>" in response.content
    for path, data, field in [
        ("/alice/train/-/access", {"users": "b\x00b", "level": "read"}, "users"),
        ("/alice/train/-/access/revoke", {"who": "b\x00b"}, "who"),
        ("/alice/train/-/description", {"description": "x\x00"}, "description"),
    ]:
        response = client.post(path, data)
        assert response.status_code == 400, path
        assert f"<code>{field}</code>".encode() in response.content
    assert snapshot() == before
