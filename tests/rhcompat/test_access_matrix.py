"""The access matrix over every ``/rh/`` route, on den's rules and with the
statuses of ``tests/registry/test_access_matrix.py``: every endpoint as owner,
writer, reader, stranger, anonymous, and with read-only, expired and revoked
tokens, on every visibility. Runhouse's success is always 200; a save into
someone else's folder is 403 for whoever may not write it, never 404."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import get_resolver
from django.utils import timezone

from compute import services as compute_services
from registry import services
from registry.models import AccessGrant, AccessLevel, ApiToken
from tests.factories import ResourceFactory, UserFactory, make_token
from tests.registry.test_access_matrix import (
    CALLERS,
    UNSAFE,
    VISIBILITIES,
    _token_id,
    check_endpoint,
    effective_level,
)

R, W, OWN = AccessLevel.READ, AccessLevel.WRITE, AccessLevel.OWNER
SECRET = "alice:box"  # a secret, as in den's own matrix
CLUSTER = "alice:gpu"
CHANGED = {"name": "/alice/box", "resource_type": "secret", "data": {"provider": "gcp"}}
STATUS = {"daemon_status": "running", "resource_type": "cluster", "resource_info": {},
          "processes": {}}
LOGS = {"file_name": "server.log", "logs": "started\n", "start_line": 0, "end_line": 1}

# name, method, path, body, level needed, status on success
RESOURCE_ENDPOINTS = [
    ("rh-resource-get", "get", f"/rh/resource/{SECRET}", None, R, 200),
    ("rh-resource-put", "put", f"/rh/resource/{SECRET}", CHANGED, W, 200),
    ("rh-resource-delete", "delete", f"/rh/resource/{SECRET}?delete_creds=false", None, OWN, 200),
    ("rh-resource-history", "get", f"/rh/resource/history/{SECRET}", None, R, 200),
    ("rh-resource-access", "put", f"/rh/resource/{SECRET}/users/access",
     {"users": ["carol"], "access_level": "read", "notify_users": False}, W, 200),
    ("rh-resource-access-denied", "put", f"/rh/resource/{SECRET}/users/access",
     {"users": ["rita"], "access_level": "denied"}, W, 200),
    ("rh-resource-user", "delete", f"/rh/resource/{SECRET}/user/rita", None, W, 200),
    # Readers get the secret without its values (checked below); values need write.
    ("rh-secret-get", "get", f"/rh/user/secret/{SECRET}?shared=true", None, R, 200),
    ("rh-secret-put", "put", f"/rh/user/secret/{SECRET}",
     {"name": "/alice/box", "data": {"values": {"KEY": "v2"}}}, W, 200),
    ("rh-secret-delete", "delete", f"/rh/user/secret/{SECRET}", None, W, 200),
    ("rh-cluster-status", "post", f"/rh/resource/{CLUSTER}/cluster/status", STATUS, W, 200),
    ("rh-cluster-logs", "post", f"/rh/resource/{CLUSTER}/logs", LOGS, W, 200),
]


@pytest.fixture
def world(db):
    alice = UserFactory(username="alice")
    people = {name: UserFactory(username=name) for name in ("wendy", "rita", "sam", "carol")}

    def build(visibility: str):
        box = ResourceFactory(owner=alice, name="box", type="secret", config={"provider": "aws"},
                              visibility=visibility)
        gpu = ResourceFactory(owner=alice, name="gpu", type="cluster",
                              config={"provider": "ssh", "ips": ["10.0.0.9"]},
                              visibility=visibility)
        for resource in (box, gpu):
            AccessGrant.objects.create(resource=resource, user=people["wendy"], level=W)
            AccessGrant.objects.create(resource=resource, user=people["rita"], level=R)
        services.secret_set_values(actor=alice, resource=box, values={"KEY": "v1"})
        compute_services.cluster_record_report(actor=alice, resource=gpu, status="up",
                                               daemon_status="running")
        expired, revoked = make_token(alice), make_token(alice)
        ApiToken.objects.filter(pk=_token_id(expired)).update(
            expires_at=timezone.now() - timedelta(minutes=1))
        ApiToken.objects.filter(pk=_token_id(revoked)).update(revoked_at=timezone.now())
        tokens = {
            "owner": make_token(alice),
            "writer": make_token(people["wendy"]),
            "reader": make_token(people["rita"]),
            "stranger": make_token(people["sam"]),
            "read_token": make_token(alice, scope="read"),
            "expired": expired,
            "revoked": revoked,
            "anonymous": None,
        }
        return box, tokens

    return build


@pytest.mark.parametrize("visibility", VISIBILITIES)
@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("endpoint", RESOURCE_ENDPOINTS, ids=[e[0] for e in RESOURCE_ENDPOINTS])
def test_resource_endpoint_status(world, api, endpoint, caller, visibility):
    _, tokens = world(visibility)
    check_endpoint(api, tokens[caller], endpoint, caller, visibility)


@pytest.mark.parametrize("visibility", VISIBILITIES)
@pytest.mark.parametrize("caller", CALLERS)
def test_secret_values_only_for_write_holders(world, api, caller, visibility):
    _, tokens = world(visibility)
    api.as_token(tokens[caller])
    response = api.get(f"/rh/user/secret/{SECRET}?shared=true")
    if response.status_code != 200:
        return  # the status itself is the matrix's business
    data = response.json()["data"]
    if effective_level(caller, visibility) >= W:
        assert data == {"/alice/box": {"name": "/alice/box", "data": {"values": {"KEY": "v1"}}}}
    else:
        assert data == {}


def post_expected(caller: str, visibility: str) -> int:
    """``POST /resource`` over alice's existing secret: a save for whoever may
    write it, 403 for everyone else (never 404, never 409)."""
    if caller in ("anonymous", "expired", "revoked"):
        return 401
    if caller == "read_token":
        return 403
    return 200 if effective_level(caller, visibility) >= W else 403


@pytest.mark.parametrize("visibility", VISIBILITIES)
@pytest.mark.parametrize("caller", CALLERS)
def test_post_into_alices_folder(world, api, caller, visibility):
    _, tokens = world(visibility)
    api.as_token(tokens[caller])
    response = api.post("/rh/resource", CHANGED, format="json")
    assert response.status_code == post_expected(caller, visibility), response.content[:300]
    fresh = api.post("/rh/resource", {**CHANGED, "name": "/alice/fresh"}, format="json")
    # A new name there: only alice creates it; everyone else, writer included, gets 403.
    assert fresh.status_code == (200 if caller == "owner" else
                                 401 if post_expected(caller, visibility) == 401 else 403)


# Endpoints about the caller: only the credential matters.
ACCOUNT_ENDPOINTS = [
    ("rh-user", "get", "/rh/user", None, 200),
    ("rh-user-config", "put", "/rh/user/config", {"default_autostop": 30}, 200),
    ("rh-secret-list", "get", "/rh/user/secret", None, 200),
    ("rh-resource-list", "get", "/rh/resource?resource_type=cluster&owned=True", None, 200),
    ("rh-resource-create", "post", "/rh/resource",
     {"name": "/{me}/new", "resource_type": "resource", "data": {"x": 1}}, 200),
    ("rh-cluster-token", "post", "/rh/auth/token/cluster",
     {"resource_address": "alice", "username": "{me}"}, 200),
    # A den token is not a cluster token, whoever holds it (sub-tokens: test_subtokens.py).
    ("rh-cluster-token-check", "get", f"/rh/auth/token/cluster/{CLUSTER}", None, 403),
    ("rh-not-found", "get", "/rh/no/such/thing", None, 404),
    ("rh-root", "get", "/rh", None, 404),
]


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("endpoint", ACCOUNT_ENDPOINTS, ids=[e[0] for e in ACCOUNT_ENDPOINTS])
def test_account_endpoint_status(world, api, endpoint, caller):
    name, method, path, body, success = endpoint
    _, tokens = world("private")
    me = {"owner": "alice", "read_token": "alice", "writer": "wendy", "reader": "rita",
          "stranger": "sam"}.get(caller, "nobody")
    if body:
        body = {k: (v.format(me=me) if isinstance(v, str) else v) for k, v in body.items()}
    api.as_token(tokens[caller])
    response = getattr(api, method)(path, body, format="json") if body else getattr(api, method)(path)
    if caller in ("anonymous", "expired", "revoked"):
        expected = 401
    elif caller == "read_token" and method in UNSAFE and name != "rh-cluster-token":
        expected = 403  # minting a sub-token changes nothing: a read token may (capped at read)
    else:
        expected = success
    assert response.status_code == expected, (name, caller, response.content[:300])
    assert response["Content-Type"].startswith("application/json")


def test_matrix_covers_every_rh_route():
    """A new /rh/ endpoint must be added to this matrix."""
    covered = {e[0] for e in ACCOUNT_ENDPOINTS} | {
        "rh-resource", "rh-resource-history", "rh-resource-access", "rh-resource-user",
        "rh-secret", "rh-cluster-status", "rh-cluster-logs",
    }
    names = set()
    for pattern in get_resolver().url_patterns:
        if str(pattern.pattern) in ("rh/", "rh"):
            names |= {p.name for p in pattern.url_patterns}
    assert names - covered == set(), sorted(names - covered)
