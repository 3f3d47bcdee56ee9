"""Every API endpoint, as every kind of caller, on every visibility, gets
exactly the status DESIGN.md gives: 401 without a valid credential, 404 for
what the caller may not read, 403 for read-but-not-this, and success otherwise.

Each resource endpoint runs on a resource owned by a person (``/alice/box``)
and by an organisation (``/acme/box``, alice its admin), with the person
callers and the organisation's: an admin, a member, a non-member, a member of
a team with a write grant on the box, and service accounts (member role with
a read and a write token, admin role, deleted).
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
ORG_CALLERS = ["org_admin", "org_member", "non_member", "team_member", "sa_read", "sa_write",
               "sa_admin", "sa_deleted"]
OWNERS = ["alice", "acme"]
READ_SCOPED = {"read_token", "sa_read"}
VISIBILITIES = ["private", "unlisted", "public"]
UNSAFE = {"put", "patch", "post", "delete"}


def effective_level(caller: str, visibility: str, owner: str = "alice") -> int:
    stranger = R if visibility != "private" else 0
    if caller in ORG_CALLERS:
        if caller == "team_member":
            return W  # the team's write grant, above a member's read
        if owner == "alice":  # an org role reaches nothing of a person's
            return stranger
        return {"org_admin": OWN, "sa_admin": OWN, "org_member": R, "sa_read": R,
                "sa_write": R, "non_member": stranger}[caller]
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


def expected_status(caller: str, visibility: str, method: str, needed: int, success: int,
                    owner: str = "alice") -> int:
    if caller in ("anonymous", "expired", "revoked", "sa_deleted"):
        return 401
    if caller in READ_SCOPED and method in UNSAFE:
        return 403
    level = effective_level(caller, visibility, owner)
    if level == 0:
        return 404
    if level < needed:
        return 403
    return success


@pytest.fixture
def world(db):
    alice = UserFactory(username="alice")
    people = {name: UserFactory(username=name) for name in ("wendy", "rita", "sam", "carol")}

    def build(visibility: str, owner: str = "alice"):
        box_owner = alice
        if owner == "acme":
            box_owner = services.org_create(actor=alice, name="acme")
        box = ResourceFactory(owner=box_owner, name="box", type="secret",
                              config={"provider": "aws"}, visibility=visibility)
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


@pytest.fixture
def org_world(world):
    """``world`` for a box owned by alice or by acme, with acme's callers:
    olga admin, mia member, nora in no org, tom in team acme/ml (a write
    grant on the box), service accounts ci (member; read and write tokens),
    ops (admin) and gone (deleted after its token was made)."""
    from registry.models import User

    def build(visibility: str, owner: str):
        box, tokens = world(visibility, owner)
        alice = User.objects.get(username="alice")
        org = (User.objects.get(username="acme") if owner == "acme"
               else services.org_create(actor=alice, name="acme"))
        people = {name: UserFactory(username=name) for name in ("olga", "mia", "nora", "tom")}
        services.org_members_add(actor=alice, org=org, users=["olga"], role="admin")
        services.org_members_add(actor=alice, org=org, users=["mia", "tom"])
        team = services.team_create(actor=alice, org=org, name="ml")
        services.team_members_add(actor=alice, team=team, users=["tom"])
        labs = services.org_create(actor=alice, name="labs")  # where owners may transfer to
        services.org_members_add(actor=alice, org=labs, users=["olga"], role="admin")
        services.resource_share(actor=box.owner if owner == "alice" else alice, resource=box,
                                teams=["acme/ml"], level="write")
        accounts = {}
        for name, role in (("ci", "member"), ("ops", "admin"), ("gone", "member")):
            accounts[name] = services.service_account_create(actor=alice, org=org, name=name,
                                                             role=role)

        def sa_token(name, scope="write"):
            return services.service_account_token_create(
                actor=alice, account=accounts[name], name="t", scope=scope)[1]

        tokens.update({
            "org_admin": make_token(people["olga"]),
            "org_member": make_token(people["mia"]),
            "non_member": make_token(people["nora"]),
            "team_member": make_token(people["tom"]),
            "sa_read": sa_token("ci", "read"),
            "sa_write": sa_token("ci"),
            "sa_admin": sa_token("ops"),
            "sa_deleted": sa_token("gone"),
        })
        services.service_account_delete(actor=alice, account=accounts["gone"])
        return box, tokens

    return build


# Resource endpoints that need an organisation around: in the org matrix only.
ORG_RESOURCE_ENDPOINTS = [
    ("access-revoke-team", "delete", f"{BASE}/-/access/team/acme/ml", None, W, 204),
    ("transfer", "post", f"{BASE}/-/transfer", {"to": "labs"}, OWN, 200),
    ("access-share-team", "put", f"{BASE}/-/access", {"teams": ["acme/ml"], "level": "read"},
     W, 200),
]


def _on(endpoint, owner):
    name, method, path, body, needed, success = endpoint
    return name, method, path.replace("alice/box", f"{owner}/box"), body, needed, success


def _rolled_back(call):
    """Run one request in a savepoint that is rolled back, so many cases share
    one world (building it is most of a case's time). The access epoch is
    bumped afterwards: nothing cached inside may outlive the rollback."""
    from django.db import transaction

    from registry import authcache

    with transaction.atomic():
        result = call()
        transaction.set_rollback(True)
    authcache._new_epoch()
    return result


@pytest.mark.parametrize("owner", OWNERS)
@pytest.mark.parametrize("visibility", VISIBILITIES)
def test_org_resource_endpoint_status(org_world, api, visibility, owner):
    """Every resource endpoint, as every caller (person and organisation ones),
    on a box of alice's and of acme's. One world per owner and visibility;
    each request is rolled back (see ``_rolled_back``)."""
    _, tokens = org_world(visibility, owner)
    wrong = []
    for endpoint in RESOURCE_ENDPOINTS + ORG_RESOURCE_ENDPOINTS:
        for caller in CALLERS + ORG_CALLERS:
            if owner == "alice" and caller in CALLERS and endpoint in RESOURCE_ENDPOINTS:
                continue  # test_resource_endpoint_status runs these
            success = None
            if endpoint[0] == "transfer" and caller == "sa_admin":
                success = 403  # owner of the box, but only a person moves resources
            if endpoint[0] == "access-share-team" and caller == "writer":
                success = 400  # may share, but wendy is in no team of acme: unknown to her
            try:
                _rolled_back(lambda e=endpoint, c=caller, s=success: check_endpoint(
                    api, tokens[c], _on(e, owner), c, visibility, owner, success=s))
            except AssertionError as exc:
                wrong.append(str(exc)[:400])
    assert not wrong, "\n".join(wrong)


def check_endpoint(api, token, endpoint, caller, visibility, owner="alice", success=None):
    """Call ``endpoint`` as ``caller`` and assert the status (and error shape)
    the rules above give (``success``: what a caller with the level needed
    gets instead, where that differs). Other suites' matrices (compute's) use it too."""
    name, method, path, body, needed, success_status = endpoint
    success = success_status if success is None else success
    api.as_token(token)
    response = getattr(api, method)(path, body, format="json") if body else getattr(api, method)(path)
    expected = expected_status(caller, visibility, method, needed, success, owner)
    assert response.status_code == expected, (name, caller, visibility, response.content[:300])
    if expected >= 400:
        error = response.json()["error"]
        assert error["code"] and error["message"]


# Organisation endpoints, on acme: what each needs of the caller's role there.
ORG = "/api/v1/orgs/acme"
ORG_ENDPOINTS = [
    ("org-list", "get", "/api/v1/orgs", None, "anyone", 200),
    ("org-create", "post", "/api/v1/orgs", {"name": "neworg"}, "person", 201),
    ("org-detail", "get", ORG, None, "member", 200),
    ("org-members", "get", f"{ORG}/members", None, "member", 200),
    ("org-members-add", "put", f"{ORG}/members", {"users": ["carol"]}, "admin", 200),
    ("org-member-remove", "delete", f"{ORG}/members/mia", None, "admin", 204),
    ("org-teams", "get", f"{ORG}/teams", None, "member", 200),
    ("org-team-create", "post", f"{ORG}/teams", {"name": "new"}, "admin", 201),
    ("org-team", "get", f"{ORG}/teams/ml", None, "member", 200),
    ("org-team-delete", "delete", f"{ORG}/teams/ml", None, "admin", 204),
    ("org-team-members-add", "put", f"{ORG}/teams/ml/members", {"users": ["mia"]}, "admin", 200),
    ("org-team-member-remove", "delete", f"{ORG}/teams/ml/members/tom", None, "admin", 204),
    ("sa-list", "get", f"{ORG}/service-accounts", None, "admin", 200),
    ("sa-create", "post", f"{ORG}/service-accounts", {"name": "new"}, "admin", 201),
    ("sa-detail", "get", f"{ORG}/service-accounts/ci", None, "admin", 200),
    ("sa-delete", "delete", f"{ORG}/service-accounts/ci", None, "admin", 204),
    ("sa-tokens", "get", f"{ORG}/service-accounts/ci/tokens", None, "admin", 200),
    ("sa-token-create", "post", f"{ORG}/service-accounts/ci/tokens", {"name": "x"}, "admin", 201),
    ("sa-token-revoke", "delete", f"{ORG}/service-accounts/ci/tokens/{{ci_token}}", None,
     "admin", 204),
    ("org-audit", "get", "/api/v1/audit?org=acme", None, "admin", 200),
]
ORG_ROLES = {"owner": "admin", "read_token": "admin", "org_admin": "admin", "sa_admin": "admin",
             "org_member": "member", "team_member": "member", "sa_read": "member",
             "sa_write": "member"}
SERVICE_ACCOUNTS = {"sa_read", "sa_write", "sa_admin"}


def test_org_endpoint_status(org_world, api):
    """Every organisation endpoint as every caller; each request rolled back."""
    from registry.models import ServiceAccount

    _, tokens = org_world("private", "acme")
    ci = ServiceAccount.objects.get(name="ci")
    ci_token = ApiToken.objects.filter(user=ci.user).first().pk
    wrong = []
    for endpoint in ORG_ENDPOINTS:
        for caller in CALLERS + ORG_CALLERS:
            try:
                _rolled_back(lambda e=endpoint, c=caller: _check_org_endpoint(
                    api, tokens[c], e, c, ci_token))
            except AssertionError as exc:
                wrong.append(str(exc)[:400])
    assert not wrong, "\n".join(wrong)


def _check_org_endpoint(api, token, endpoint, caller, ci_token):
    name, method, path, body, needs, success = endpoint
    path = path.format(ci_token=ci_token)
    api.as_token(token)
    response = getattr(api, method)(path, body, format="json") if body else getattr(api, method)(path)
    role = ORG_ROLES.get(caller)
    if caller in ("anonymous", "expired", "revoked", "sa_deleted"):
        expected = 401
    elif caller in READ_SCOPED and method in UNSAFE:
        expected = 403
    elif needs == "anyone":
        expected = success
    elif needs == "person":
        expected = 400 if caller in SERVICE_ACCOUNTS else success
    elif role is None:
        expected = 404  # not a member: the org is not there for them
    elif needs == "admin" and role != "admin":
        expected = 403
    else:
        expected = success
    assert response.status_code == expected, (name, caller, response.content[:300])
    if expected >= 400:
        assert response.json()["error"]["message"]


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


def test_account_endpoint_status_for_org_callers(org_world, api):
    """The account endpoints as acme's people and service accounts. People
    fare as anyone does; a service account reads its own account and tokens
    and may revoke them, but never makes itself a token (its org's admins
    do), and creates in its org only with the admin role."""
    _, tokens = org_world("private", "acme")
    people = {"org_admin": "olga", "org_member": "mia", "non_member": "nora",
              "team_member": "tom"}
    wrong = []
    for endpoint in ACCOUNT_ENDPOINTS:
        name, method, path, body, success, unsafe = endpoint
        for caller in ORG_CALLERS:
            me = people.get(caller, "acme")
            own = "0" if caller == "sa_deleted" else str(_token_id(tokens[caller]))  # gone
            path_for = path.format(me=me, own_token=own)
            data = body and {k: (v.format(me=me) if isinstance(v, str) else v)
                             for k, v in body.items()}
            if caller == "sa_deleted":
                expected = 401
            elif (caller in READ_SCOPED and unsafe) or (
                    caller in SERVICE_ACCOUNTS and name == "token-create"):
                expected = 403
            elif name == "resource-create" and caller in ("sa_read", "sa_write"):
                expected = 403  # a member of acme: reads, never creates there
            else:
                expected = success

            def call(method=method, path_for=path_for, data=data, token=tokens[caller]):
                api.as_token(token)
                if data:
                    return getattr(api, method)(path_for, data, format="json")
                return getattr(api, method)(path_for)

            response = _rolled_back(call)
            if response.status_code != expected:
                wrong.append(f"{name} {caller}: {response.status_code} != {expected} "
                             f"{response.content[:200]!r}")
            elif expected >= 400:
                assert response.json()["error"]["message"]
    assert not wrong, "\n".join(wrong)


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
        # organisations: test_org_endpoint_status, test_org_resource_endpoint_status
        "org-list", "org-detail", "org-member-list", "org-member-detail", "org-team-list",
        "org-team-detail", "org-team-member-list", "org-team-member-detail",
        "org-service-account-list", "org-service-account-detail",
        "org-service-account-token-list", "org-service-account-token-detail",
        "resource-access-team", "resource-transfer",
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
