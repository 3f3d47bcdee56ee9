"""Every API endpoint, as every kind of caller, on every visibility, gets
exactly the status DESIGN.md gives: 401 without a valid credential, 404 for
what the caller may not read, 403 for read-but-not-this, and success otherwise.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import get_resolver
from django.utils import timezone

from registry import services
from registry.models import AccessGrant, AccessLevel, ApiToken
from tests.factories import ResourceFactory, UserFactory, make_token

R, W, OWN = AccessLevel.READ, AccessLevel.WRITE, AccessLevel.OWNER
BASE = "/api/v1/resources/alice/box"

# name, method, path, body, level needed, status on success
RESOURCE_ENDPOINTS = [
    ("get", "get", BASE, None, R, 200),
    ("put", "put", BASE, {"config": {"provider": "gcp"}}, W, 200),
    ("patch-description", "patch", BASE, {"description": "new words"}, W, 200),
    ("patch-visibility", "patch", BASE, {"visibility": "public"}, OWN, 200),
    ("delete", "delete", BASE, None, OWN, 204),
    ("versions", "get", f"{BASE}/-/versions", None, R, 200),
    ("version", "get", f"{BASE}/-/versions/1", None, R, 200),
    ("restore", "post", f"{BASE}/-/versions/1/restore", None, W, 201),
    ("access-list", "get", f"{BASE}/-/access", None, W, 200),
    ("access-share", "put", f"{BASE}/-/access", {"users": ["carol"], "level": "read"}, W, 200),
    ("access-revoke", "delete", f"{BASE}/-/access/rita", None, W, 204),
    ("secret-get", "get", f"{BASE}/-/secret", None, W, 200),
    ("secret-put", "put", f"{BASE}/-/secret", {"values": {"KEY": "v2"}}, W, 204),
    ("audit", "get", "/api/v1/audit?address=/alice/box", None, W, 200),
    ("check-read", "get", "/api/v1/auth/check?address=/alice/box&level=read", None, R, 200),
    ("check-write", "get", "/api/v1/auth/check?address=/alice/box&level=write", None, W, 200),
]
CALLERS = ["owner", "writer", "reader", "stranger", "anonymous", "read_token", "expired", "revoked"]
VISIBILITIES = ["private", "unlisted", "public"]
UNSAFE = {"put", "patch", "post", "delete"}


def effective_level(caller: str, visibility: str) -> int:
    if caller in ("owner",):
        return OWN
    if caller == "read_token":
        return R
    if caller == "writer":
        return W
    if caller == "reader":
        return R
    if caller == "stranger":
        return R if visibility != "private" else 0
    raise AssertionError(caller)


def expected_status(caller: str, visibility: str, method: str, needed: int, success: int) -> int:
    if caller in ("anonymous", "expired", "revoked"):
        return 401
    if caller == "read_token" and method in UNSAFE:
        return 403
    level = effective_level(caller, visibility)
    if level == 0:
        return 404
    if level < needed:
        return 403
    return success


@pytest.fixture
def world(db):
    alice = UserFactory(username="alice")
    people = {name: UserFactory(username=name) for name in ("wendy", "rita", "sam", "carol")}

    def build(visibility: str):
        box = ResourceFactory(owner=alice, name="box", type="secret", config={"provider": "aws"},
                              visibility=visibility)
        AccessGrant.objects.create(resource=box, user=people["wendy"], level=W)
        AccessGrant.objects.create(resource=box, user=people["rita"], level=R)
        services.secret_set_values(actor=alice, resource=box, values={"KEY": "v1"})
        expired = ApiToken.objects.get(pk=_token_id(make_token(alice)))
        expired_plain = _last_plain
        revoked_plain = make_token(alice)
        services.token_revoke(user=alice, token_id=_token_id(revoked_plain))
        tokens = {
            "owner": make_token(alice),
            "writer": make_token(people["wendy"]),
            "reader": make_token(people["rita"]),
            "stranger": make_token(people["sam"]),
            "read_token": make_token(alice, scope="read"),
            "expired": expired_plain,
            "revoked": revoked_plain,
            "anonymous": None,
        }
        expired.expires_at = timezone.now() - timedelta(minutes=1)
        expired.save()
        return box, tokens

    return build


_last_plain = None


def _token_id(plain: str) -> int:
    global _last_plain
    from registry.credentials import hash_token

    _last_plain = plain
    return ApiToken.objects.get(token_hash=hash_token(plain)).pk


@pytest.mark.parametrize("visibility", VISIBILITIES)
@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(
    "endpoint", RESOURCE_ENDPOINTS, ids=[endpoint[0] for endpoint in RESOURCE_ENDPOINTS]
)
def test_resource_endpoint_status(world, api, endpoint, caller, visibility):
    _, tokens = world(visibility)
    check_endpoint(api, tokens[caller], endpoint, caller, visibility)


def check_endpoint(api, token, endpoint, caller, visibility):
    """Call ``endpoint`` as ``caller`` and assert the status (and error shape)
    the rules above give. Other suites' matrices (compute's) use it too."""
    name, method, path, body, needed, success = endpoint
    api.as_token(token)
    response = getattr(api, method)(path, body, format="json") if body else getattr(api, method)(path)
    expected = expected_status(caller, visibility, method, needed, success)
    assert response.status_code == expected, (name, caller, visibility, response.content[:300])
    if expected >= 400:
        error = response.json()["error"]
        assert error["code"] and error["message"]


# Endpoints that are not about one resource: only the credential matters.
ACCOUNT_ENDPOINTS = [
    ("me", "get", "/api/v1/me", None, 200, False),
    ("tokens", "get", "/api/v1/tokens", None, 200, False),
    ("token-create", "post", "/api/v1/tokens", {"name": "ci", "scope": "read"}, 201, True),
    ("token-revoke", "delete", "/api/v1/tokens/{own_token}", None, 204, True),
    # Revoking the token in use (den logout): a read token may revoke itself.
    ("token-revoke-current", "delete", "/api/v1/tokens/current", None, 204, False),
    ("resources", "get", "/api/v1/resources", None, 200, False),
    ("resource-create", "post", "/api/v1/resources",
     {"address": "/{me}/new", "type": "env", "config": {"reqs": ["numpy"]}}, 201, True),
    ("resource-create-elsewhere", "post", "/api/v1/resources",
     {"address": "/alice/elsewhere", "type": "env", "config": {}}, 403, True),
    ("my-audit", "get", "/api/v1/audit", None, 200, False),
    ("check-token", "get", "/api/v1/auth/check", None, 200, False),
    ("invite", "post", "/api/v1/invitations", {"email": "new@example.com"}, 403, True),
]


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("endpoint", ACCOUNT_ENDPOINTS, ids=[e[0] for e in ACCOUNT_ENDPOINTS])
def test_account_endpoint_status(world, api, endpoint, caller):
    name, method, path, body, success, unsafe = endpoint
    box, tokens = world("private")
    token = tokens[caller]
    me = {"owner": "alice", "read_token": "alice", "writer": "wendy", "reader": "rita",
          "stranger": "sam"}.get(caller, "nobody")
    own_token = "0"
    if token:
        own_token = str(_token_id(token))
    path = path.format(me=me, own_token=own_token)
    if body:
        body = {k: (v.format(me=me) if isinstance(v, str) else v) for k, v in body.items()}
    api.as_token(token)
    response = getattr(api, method)(path, body, format="json") if body else getattr(api, method)(path)
    if caller in ("anonymous", "expired", "revoked"):
        expected = 401
    elif caller == "read_token" and unsafe:
        expected = 403
    elif name == "resource-create-elsewhere" and caller in ("owner",):
        expected = 201  # alice creating under /alice is allowed
    else:
        expected = success
    assert response.status_code == expected, (name, caller, response.content[:300])


def test_login_is_open_and_invitation_accept_needs_no_user(api, world):
    world("private")
    response = api.post("/api/v1/auth/login", {"username": "alice", "password": "wrong"}, format="json")
    assert response.status_code == 401
    response = api.post("/api/v1/invitations/accept", {"token": "den_x", "username": "zed",
                                                       "password": "a long password 123"}, format="json")
    assert response.status_code == 404


def test_matrix_covers_every_api_route():
    """A new endpoint must be added to this matrix: every API route is named here."""
    from tests.compute.test_cluster_access import CLUSTER_ROUTE_NAMES

    covered = {
        "resource-detail", "resource-version-list", "resource-version-detail",
        "resource-version-restore", "resource-access", "resource-access-detail",
        "resource-secret", "audit-list", "auth-check", "me", "token-list", "token-detail",
        "token-current",
        "resource-list", "invitation-list", "auth-login", "invitation-accept",
        "invitation-detail",
    } | CLUSTER_ROUTE_NAMES  # the cluster endpoints' matrix: tests/compute/test_cluster_access.py
    api_names = set()
    for pattern in get_resolver().url_patterns:
        # Every include under api/v1/ (compute's comes before the registry's).
        if str(pattern.pattern) == "api/v1/":
            api_names |= {p.name for p in pattern.url_patterns}
    missing = api_names - covered
    assert not missing, f"API routes without access-matrix cases: {sorted(missing)}"


def test_anonymous_reads_public_only_when_server_opts_in(world, api, settings):
    box, _ = world("public")
    assert api.get(BASE).status_code == 401
    settings.DEN_ANONYMOUS_READ_PUBLIC = True
    assert api.get(BASE).status_code == 200
    assert api.put(BASE, {"config": {}}, format="json").status_code == 401
    box.visibility = "unlisted"
    box.save()
    assert api.get(BASE).status_code == 401
    listed = api.get("/api/v1/resources").json()["results"]
    assert listed == []
