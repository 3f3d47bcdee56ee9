"""Bad input gets a clear 4xx error that names what is wrong, and changes nothing."""

from __future__ import annotations

import json

import pytest

from registry.models import (
    AccessGrant,
    ApiToken,
    AuditEvent,
    PendingGrant,
    Resource,
    ResourceVersion,
    SecretValue,
)
from tests.factories import make_token

pytestmark = pytest.mark.django_db
URL = "/api/v1/resources/alice/train"


def snapshot():
    return {
        "resources": list(Resource.objects.order_by("id").values("id", "name", "config", "version",
                                                                  "visibility", "description", "type")),
        "versions": ResourceVersion.objects.count(),
        "grants": list(AccessGrant.objects.values_list("user_id", "level")),
        "pending": PendingGrant.objects.count(),
        "tokens": ApiToken.objects.count(),
        "secrets": list(SecretValue.objects.values_list("ciphertext", flat=True)),
        "audit": AuditEvent.objects.count(),
    }


@pytest.fixture
def existing(alice_api):
    assert alice_api.put(URL, {"type": "function", "config": {"code": "v1"}}, format="json").status_code == 201
    alice_api.put(URL, {"config": {"code": "v2"}}, format="json")
    return alice_api


LONG_NAME = "/alice/" + "x" * 200
DEEP = "/alice/" + "/".join("abcdefgh")
BIG_CONFIG = {"blob": "x" * (1024 * 1024 + 10)}

CASES = [
    # name, method, path, raw body or JSON, extra headers, status, code, field
    ("malformed json", "post", "/api/v1/resources", b'{"address": "/alice/x", "type":', {}, 400,
     "malformed_json", None),
    ("body not an object", "post", "/api/v1/resources", b"[1, 2]", {}, 400, "invalid", None),
    ("invalid name", "post", "/api/v1/resources",
     {"address": "/alice/bad name!", "type": "env", "config": {}}, {}, 400, "invalid_address", "address"),
    ("dot-dot segment", "post", "/api/v1/resources",
     {"address": "/alice/../etc", "type": "env", "config": {}}, {}, 400, "invalid_address", "address"),
    ("address too long", "post", "/api/v1/resources",
     {"address": LONG_NAME, "type": "env", "config": {}}, {}, 400, "invalid_address", "address"),
    ("too many segments", "post", "/api/v1/resources",
     {"address": DEEP, "type": "env", "config": {}}, {}, 400, "invalid_address", "address"),
    ("address too long in URL", "put", "/api/v1/resources" + LONG_NAME,
     {"config": {}}, {}, 400, "invalid_address", "address"),
    ("unknown type", "post", "/api/v1/resources",
     {"address": "/alice/x", "type": "dataset", "config": {}}, {}, 400, "invalid_type", "type"),
    ("config not an object", "put", URL, {"config": [1]}, {}, 400, "invalid_config", "config"),
    ("config over 1 MiB", "put", URL, {"config": BIG_CONFIG}, {}, 413, "too_large", "config"),
    ("body over the limit", "put", URL, b'{"config": {"blob": "' + b"x" * (3 * 1024 * 1024 + 1) + b'"}}',
     {}, 413, "too_large", None),
    ("cluster field of the wrong type", "put", "/api/v1/resources/alice/cpu",
     {"type": "cluster", "config": {"provider": "local", "ssh_port": "22"}}, {}, 400,
     "invalid_config", "config.ssh_port"),
    ("unknown provider", "put", "/api/v1/resources/alice/cpu",
     {"type": "cluster", "config": {"provider": "moon"}}, {}, 400, "invalid_config", "config.provider"),
    ("env reqs not strings", "put", "/api/v1/resources/alice/env",
     {"type": "env", "config": {"reqs": [1]}}, {}, 400, "invalid_config", "config.reqs"),
    ("inline env vars not strings", "put", URL,
     {"config": {"env": {"env_vars": {"A": 1}}}}, {}, 400, "invalid_config", "config.env.env_vars"),
    ("pickle_allow with a wildcard", "put", URL, {"config": {"pickle_allow": ["pandas.*"]}}, {},
     400, "invalid_config", "config.pickle_allow"),
    ("pickle_allow naming a bare module", "put", URL, {"config": {"pickle_allow": ["os"]}}, {},
     400, "invalid_config", "config.pickle_allow"),
    ("pickle_allow not a list", "put", URL, {"config": {"pickle_allow": "mypkg.Point"}}, {}, 400,
     "invalid_config", "config.pickle_allow"),
    ("secret values in config", "put", "/api/v1/resources/alice/s",
     {"type": "secret", "config": {"values": {"a": "b"}}}, {}, 400, "invalid_config", "config.values"),
    ("stale version", "put", URL, {"config": {"code": "v3"}}, {"HTTP_IF_MATCH": '"1"'}, 412,
     "version_conflict", None),
    ("garbage If-Match", "put", URL, {"config": {"code": "v3"}}, {"HTTP_IF_MATCH": "yesterday"}, 400,
     "invalid", "If-Match"),
    ("create existing", "post", "/api/v1/resources",
     {"address": "/alice/train", "type": "function", "config": {}}, {}, 409, "already_exists", "address"),
    ("share with unknown user", "put", f"{URL}/-/access",
     {"users": ["bob", "nobody-here"], "level": "read"}, {}, 400, "invalid", "users"),
    ("share with bad level", "put", f"{URL}/-/access", {"users": ["bob"], "level": "admin"}, {}, 400,
     "invalid", "level"),
    ("share with the owner", "put", f"{URL}/-/access", {"users": ["alice"]}, {}, 400, "invalid", "users"),
    ("revoke someone without access", "delete", f"{URL}/-/access/nobody", None, {}, 404, "not_found",
     None),
    ("restore a missing version", "post", f"{URL}/-/versions/99/restore", None, {}, 404, "not_found",
     None),
    ("restore a non-number", "post", f"{URL}/-/versions/two/restore", None, {}, 400, "invalid",
     "version"),
    ("bad visibility", "patch", URL, {"visibility": "secret"}, {}, 400, "invalid", "visibility"),
    ("empty patch", "patch", URL, {}, {}, 400, "invalid", None),
    ("secret values on a function", "put", f"{URL}/-/secret", {"values": {"a": "b"}}, {}, 400,
     "not_a_secret", None),
    ("token with a bad expiry", "post", "/api/v1/tokens", {"name": "x", "expires_in_days": 0}, {}, 400,
     "invalid", "expires_in_days"),
    ("token with a bad scope", "post", "/api/v1/tokens", {"name": "x", "scope": "admin"}, {}, 400,
     "invalid", "scope"),
    ("bad level in auth check", "get", "/api/v1/auth/check?address=/alice/train&level=god", None, {},
     400, "invalid", "level"),
    ("search too long", "get", "/api/v1/resources?q=" + "a" * 300, None, {}, 400, "invalid", "q"),
    ("unknown type filter", "get", "/api/v1/resources?type=dataset", None, {}, 400, "invalid", "type"),
    ("unknown endpoint", "get", f"{URL}/-/nothing", None, {}, 404, "not_found", None),
]


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_bad_input_is_refused_and_changes_nothing(existing, case):
    from tests.factories import UserFactory

    UserFactory(username="bob")
    name, method, path, body, headers, status, code, field = case
    before = snapshot()
    if isinstance(body, bytes):
        response = getattr(existing, method)(path, body, content_type="application/json", **headers)
    elif body is None:
        response = getattr(existing, method)(path, **headers)
    else:
        response = getattr(existing, method)(path, json.dumps(body), content_type="application/json",
                                             **headers)
    assert response.status_code == status, response.content[:400]
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["field"] == field, error
    assert len(error["message"]) > 10
    assert snapshot() == before


@pytest.mark.parametrize(
    "header",
    [
        "Bearer den_" + "A" * 36,  # right shape, wrong checksum
        "Bearer den_short",
        "Bearer " + "x" * 5000,
        "Token den_abc",
        "Basic YWxpY2U6cGFzcw==",
    ],
)
def test_bad_tokens_get_401(api, existing, header):
    before = snapshot()
    response = api.get(URL, HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert snapshot() == before


def test_reserved_and_malformed_usernames_are_refused(api, existing, django_capture_on_commit_callbacks):
    from django.core import mail
    from django.core.exceptions import ValidationError

    from registry.models import User

    with pytest.raises(ValidationError):
        User(username="admin", email="a@example.com").full_clean()
    with django_capture_on_commit_callbacks(execute=True):
        existing.put(f"{URL}/-/access", {"users": ["zed@example.com"]}, format="json")
    token = mail.outbox[-1].body.split("/invite/")[1].split()[0]
    before = snapshot()
    for username, code in (("api", "invalid"), ("settings", "invalid"), ("-x", "invalid"),
                           ("Alice", "already_exists")):
        response = api.post("/api/v1/invitations/accept",
                            {"token": token, "username": username, "password": "a long password 123"},
                            format="json")
        assert response.status_code in (400, 409), response.json()
        assert response.json()["error"]["field"] == "username"
        assert response.json()["error"]["code"] == code
    assert snapshot() == before


def test_unknown_user_and_expired_token(api, existing):
    from datetime import timedelta

    from django.utils import timezone

    from registry.credentials import hash_token
    from registry.models import User

    plain = make_token(User.objects.get(username="alice"))
    ApiToken.objects.filter(token_hash=hash_token(plain)).update(expires_at=timezone.now() - timedelta(days=1))
    response = api.as_token(plain).get(URL)
    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]
    login = api.as_token(None).post("/api/v1/auth/login", {"username": "ghost", "password": "x"},
                                    format="json")
    assert login.status_code == 401
    assert login.json()["error"]["code"] == "invalid_credentials"


def test_a_valid_pickle_allow_is_kept(existing):
    names = ["mypkg.types.Point", "numpy.random._pickle.__bit_generator_ctor"]
    response = existing.put(URL, {"config": {"code": "v3", "pickle_allow": names}}, format="json")
    assert response.status_code == 200, response.content[:400]
    assert existing.get(URL).json()["config"]["pickle_allow"] == names
