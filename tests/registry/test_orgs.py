"""Organisations, teams and service accounts through the API, as their users
meet them: names, members, roles, teams, sharing with teams, service-account
tokens, transfers, the audit log, and changes seen by the very next request."""

from __future__ import annotations

import pytest

from registry.models import AccessGrant, AuditEvent, Resource, User
from tests.conftest import TokenClient
from tests.factories import ResourceFactory, UserFactory, make_token


@pytest.fixture
def people(db):
    return {name: UserFactory(username=name) for name in ("alice", "bob", "carol", "dave")}


@pytest.fixture
def as_(people):
    tokens = {name: make_token(user) for name, user in people.items()}

    def client(name):
        return TokenClient().as_token(tokens[name])

    return client


@pytest.fixture
def acme(as_):
    """acme: alice admin, bob member, team ml = {bob}; /acme/train private."""
    alice = as_("alice")
    assert alice.post("/api/v1/orgs", {"name": "acme"}, format="json").status_code == 201
    assert alice.put("/api/v1/orgs/acme/members", {"users": ["bob"]},
                     format="json").status_code == 200
    assert alice.post("/api/v1/orgs/acme/teams", {"name": "ml"}, format="json").status_code == 201
    assert alice.put("/api/v1/orgs/acme/teams/ml/members", {"users": ["bob"]},
                     format="json").status_code == 200
    response = alice.post("/api/v1/resources", {"address": "/acme/train", "type": "function",
                                                "config": {}}, format="json")
    assert response.status_code == 201, response.content
    return alice


def error(response):
    return response.json()["error"]


def test_create_an_org_and_see_it(acme, as_):
    body = acme.get("/api/v1/orgs").json()
    assert [(o["name"], o["role"]) for o in body] == [("acme", "admin")]
    assert as_("bob").get("/api/v1/orgs/acme").json()["role"] == "member"
    assert as_("carol").get("/api/v1/orgs/acme").status_code == 404
    members = acme.get("/api/v1/orgs/acme/members").json()
    assert [(m["username"], m["role"]) for m in members["members"]] == [
        ("alice", "admin"), ("bob", "member")]
    assert acme.get("/api/v1/resources/acme/train").json()["owner"] == "acme"


@pytest.mark.parametrize("name", ["alice", "ALICE", "acme", "Acme"])
def test_org_and_user_names_are_one_space(acme, name):
    response = acme.post("/api/v1/orgs", {"name": name}, format="json")
    assert response.status_code == 409
    assert error(response)["field"] == "name"


@pytest.mark.parametrize("name", ["admin", "API", "settings", "rh", "-", "a/b", "bad name", ""])
def test_reserved_and_invalid_org_names_are_refused(as_, name):
    before = User.objects.count()
    response = as_("alice").post("/api/v1/orgs", {"name": name}, format="json")
    assert response.status_code == 400, response.content
    assert error(response)["field"] == "name"
    assert User.objects.count() == before


def test_a_user_cannot_take_an_orgs_name_at_sign_up(acme):
    from registry import services
    from registry.errors import AlreadyExists

    invitation = services.invitation_send(actor=None, email="new@example.com")
    with pytest.raises(AlreadyExists):
        services.invitation_accept(token=invitation.plain_token, username="ACME",
                                   password="a long password 123")


def test_unknown_user_in_a_member_list_changes_nothing(acme):
    response = acme.put("/api/v1/orgs/acme/members", {"users": ["carol", "nobody"]},
                        format="json")
    assert response.status_code == 400
    assert error(response)["field"] == "users"
    assert "nobody" in error(response)["message"]
    names = [m["username"] for m in acme.get("/api/v1/orgs/acme/members").json()["members"]]
    assert names == ["alice", "bob"]


def test_an_email_without_an_account_is_invited_and_binds(acme, django_capture_on_commit_callbacks):
    from django.core import mail

    from registry import services

    with django_capture_on_commit_callbacks(execute=True):
        response = acme.put("/api/v1/orgs/acme/members", {"users": ["new@example.com"],
                                                          "role": "member"}, format="json")
    assert response.json() == {"added": [], "invited": ["new@example.com"]}
    pending = acme.get("/api/v1/orgs/acme/members").json()["pending"]
    assert [p["email"] for p in pending] == ["new@example.com"]
    assert any("acme" in message.body for message in mail.outbox)
    invitation = services.invitation_send(actor=None, email="new@example.com")
    user = services.invitation_accept(token=invitation.plain_token, username="newbie",
                                      password="a long password 123")
    newbie = TokenClient().as_token(make_token(user))
    assert newbie.get("/api/v1/resources/acme/train").status_code == 200


def test_the_last_admin_cannot_be_removed_or_demoted(acme, as_):
    response = acme.delete("/api/v1/orgs/acme/members/alice")
    assert response.status_code == 409
    response = acme.put("/api/v1/orgs/acme/members", {"users": ["alice"], "role": "member"},
                        format="json")
    assert response.status_code == 409
    assert acme.get("/api/v1/orgs/acme").json()["role"] == "admin"
    # With a second admin, the first may go.
    acme.put("/api/v1/orgs/acme/members", {"users": ["bob"], "role": "admin"}, format="json")
    assert as_("bob").delete("/api/v1/orgs/acme/members/alice").status_code == 204
    assert acme.get("/api/v1/orgs/acme").status_code == 404


def test_only_admins_manage_members_and_teams(acme, as_):
    bob = as_("bob")
    assert bob.put("/api/v1/orgs/acme/members", {"users": ["carol"]},
                   format="json").status_code == 403
    assert bob.post("/api/v1/orgs/acme/teams", {"name": "x"}, format="json").status_code == 403
    assert bob.get("/api/v1/orgs/acme/service-accounts").status_code == 403
    carol = as_("carol")
    assert carol.put("/api/v1/orgs/acme/members", {"users": ["carol"]},
                     format="json").status_code == 404
    assert carol.get("/api/v1/orgs/acme/members").status_code == 404


@pytest.mark.parametrize("name", ["ml/x", "a b", ""])
def test_bad_team_names_are_refused(acme, name):
    response = acme.post("/api/v1/orgs/acme/teams", {"name": name}, format="json")
    assert response.status_code == 400
    assert error(response)["field"] == "name"
    assert [t["name"] for t in acme.get("/api/v1/orgs/acme/teams").json()] == ["acme/ml"]


def test_levels_members_read_admins_own(acme, as_):
    bob, carol = as_("bob"), as_("carol")
    assert bob.get("/api/v1/resources/acme/train").json()["access_level"] == "read"
    assert bob.put("/api/v1/resources/acme/train", {"config": {"x": 1}},
                   format="json").status_code == 403
    assert carol.get("/api/v1/resources/acme/train").status_code == 404
    assert acme.get("/api/v1/resources/acme/train").json()["access_level"] == "owner"
    listed = [r["address"] for r in bob.get("/api/v1/resources?org=acme").json()["results"]]
    assert listed == ["/acme/train"]
    assert carol.get("/api/v1/resources?org=acme").json()["results"] == []


def test_share_with_a_team_and_revoke_it(acme, as_, people):
    ResourceFactory(owner=people["alice"], name="notes")
    alice, bob = acme, as_("bob")
    assert bob.get("/api/v1/resources/alice/notes").status_code == 404
    response = alice.put("/api/v1/resources/alice/notes/-/access",
                         {"teams": ["acme/ml"], "level": "write"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["teams"] == ["acme/ml"]
    assert bob.get("/api/v1/resources/alice/notes").json()["access_level"] == "write"
    check = bob.get("/api/v1/auth/check?address=/alice/notes&level=write")
    assert check.json()["level"] == "write"
    shared = [r["address"] for r in
              bob.get("/api/v1/resources?shared_with_me=true").json()["results"]]
    assert "/alice/notes" in shared
    access = alice.get("/api/v1/resources/alice/notes/-/access").json()
    assert [(t["team"], t["level"]) for t in access["teams"]] == [("acme/ml", "write")]
    assert alice.delete("/api/v1/resources/alice/notes/-/access/team/acme/ml").status_code == 204
    assert bob.get("/api/v1/resources/alice/notes").status_code == 404
    assert bob.get("/api/v1/auth/check?address=/alice/notes&level=read").status_code == 404


def test_a_team_of_an_org_you_are_not_in_is_unknown(acme, as_, people):
    ResourceFactory(owner=people["carol"], name="c")
    response = as_("carol").put("/api/v1/resources/carol/c/-/access", {"teams": ["acme/ml"]},
                                format="json")
    assert response.status_code == 400
    assert error(response)["field"] == "teams"
    assert not AccessGrant.objects.exists()


def test_removal_from_team_and_org_is_seen_by_the_very_next_request(acme, as_, people):
    ResourceFactory(owner=people["alice"], name="notes")
    acme.put("/api/v1/resources/alice/notes/-/access", {"teams": ["acme/ml"]}, format="json")
    bob = as_("bob")
    check = "/api/v1/auth/check?address=/alice/notes&level=read"
    assert bob.get(check).status_code == 200  # cached now
    assert bob.get(check).status_code == 200
    assert acme.delete("/api/v1/orgs/acme/teams/ml/members/bob").status_code == 204
    assert bob.get(check).status_code == 404
    assert bob.get("/api/v1/resources/alice/notes").status_code == 404
    org_check = "/api/v1/auth/check?address=/acme/train&level=read"
    assert bob.get(org_check).status_code == 200
    assert bob.get(org_check).status_code == 200
    assert acme.delete("/api/v1/orgs/acme/members/bob").status_code == 204
    assert bob.get(org_check).status_code == 404
    assert bob.get("/api/v1/resources/acme/train").status_code == 404


def test_role_change_is_seen_at_once(acme, as_):
    bob = as_("bob")
    check = "/api/v1/auth/check?address=/acme/train&level=write"
    assert bob.get(check).status_code == 403
    acme.put("/api/v1/orgs/acme/members", {"users": ["bob"], "role": "admin"}, format="json")
    assert bob.get(check).json()["level"] == "owner"
    acme.put("/api/v1/orgs/acme/members", {"users": ["bob"], "role": "member"}, format="json")
    assert bob.get(check).status_code == 403


def test_service_account_tokens_act_with_the_org_role(acme, as_, people):
    ResourceFactory(owner=people["alice"], name="private-notes")
    ResourceFactory(owner=people["alice"], name="open", visibility="public")
    response = acme.post("/api/v1/orgs/acme/service-accounts",
                         {"name": "airflow", "role": "member"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["username"] == "acme:airflow"
    response = acme.post("/api/v1/orgs/acme/service-accounts/airflow/tokens",
                         {"name": "prod", "scope": "read"}, format="json")
    assert response.status_code == 201
    plain = response.json()["token"]
    listed = acme.get("/api/v1/orgs/acme/service-accounts/airflow/tokens").json()
    assert "token" not in listed[0]  # shown once
    sa = TokenClient().as_token(plain)
    assert sa.get("/api/v1/resources/acme/train").json()["access_level"] == "read"
    assert sa.get("/api/v1/resources/alice/private-notes").status_code == 404
    assert sa.get("/api/v1/resources/alice/open").status_code == 200
    assert sa.get("/api/v1/auth/check?address=/acme/train").json() == {
        "username": "acme:airflow", "level": "read"}
    # It never signs in to the web UI, with any password.
    assert TokenClient().post("/api/v1/auth/login", {"username": "acme:airflow",
                                                     "password": ""},
                              format="json").status_code in (400, 401)
    # Deleted: the very next request is refused.
    assert acme.delete("/api/v1/orgs/acme/service-accounts/airflow").status_code == 204
    assert sa.get("/api/v1/auth/check?address=/acme/train").status_code == 401
    assert sa.get("/api/v1/resources/acme/train").status_code == 401


def test_a_service_account_cannot_be_shared_with_directly(acme, people):
    acme.post("/api/v1/orgs/acme/service-accounts", {"name": "ci"}, format="json")
    ResourceFactory(owner=people["alice"], name="notes")
    response = acme.put("/api/v1/resources/alice/notes/-/access", {"users": ["acme:ci"]},
                        format="json")
    assert response.status_code == 400
    response = acme.put("/api/v1/resources/alice/notes/-/access", {"users": ["acme"]},
                        format="json")
    assert response.status_code == 400


def test_admin_service_account_saves_into_the_org(acme):
    acme.post("/api/v1/orgs/acme/service-accounts", {"name": "ci", "role": "admin"},
              format="json")
    plain = acme.post("/api/v1/orgs/acme/service-accounts/ci/tokens", {"name": "ci"},
                      format="json").json()["token"]
    ci = TokenClient().as_token(plain)
    assert ci.put("/api/v1/resources/acme/job", {"config": {}},
                  format="json").status_code == 201
    assert ci.post("/api/v1/resources", {"address": "/acme:ci/x", "type": "env",
                                         "config": {}}, format="json").status_code == 400
    assert ci.post("/api/v1/orgs", {"name": "ciorg"}, format="json").status_code == 400


def test_members_cannot_create_in_the_org(acme, as_):
    response = as_("bob").put("/api/v1/resources/acme/mine", {"config": {}}, format="json")
    assert response.status_code == 404
    response = as_("bob").post("/api/v1/resources", {"address": "/acme/mine", "type": "env",
                                                     "config": {}}, format="json")
    assert response.status_code == 403


def test_transfer_keeps_grants_versions_and_audit(acme, as_, people):
    notes = ResourceFactory(owner=people["alice"], name="notes")
    acme.put("/api/v1/resources/alice/notes/-/access", {"users": ["carol"], "level": "write"},
             format="json")
    acme.put("/api/v1/resources/alice/notes", {"config": {"v": 2}}, format="json")
    response = acme.post("/api/v1/resources/alice/notes/-/transfer", {"to": "acme"},
                         format="json")
    assert response.status_code == 200, response.content
    assert response.json()["address"] == "/acme/notes"
    moved = Resource.objects.get(pk=notes.pk)
    assert moved.owner.username == "acme"
    assert as_("carol").get("/api/v1/resources/acme/notes").json()["access_level"] == "write"
    assert as_("bob").get("/api/v1/resources/acme/notes").json()["access_level"] == "read"
    versions = acme.get("/api/v1/resources/acme/notes/-/versions").json()["results"]
    assert [v["version"] for v in versions] == [2, 1]
    actions = [e["action"] for e in
               acme.get("/api/v1/audit?address=/acme/notes").json()["results"]]
    assert actions[0] == "resource.transfer" and "access.grant" in actions
    assert acme.get("/api/v1/resources/alice/notes").status_code == 404


def test_transfer_only_to_an_org_you_admin(acme, as_, people):
    ResourceFactory(owner=people["bob"], name="b")
    response = as_("bob").post("/api/v1/resources/bob/b/-/transfer", {"to": "acme"},
                               format="json")
    assert response.status_code == 400
    assert error(response)["field"] == "to"
    assert Resource.objects.get(name="b").owner.username == "bob"


def test_org_audit_for_admins(acme, as_):
    acme.post("/api/v1/orgs/acme/service-accounts", {"name": "ci"}, format="json")
    acme.delete("/api/v1/orgs/acme/teams/ml/members/bob")
    actions = {e["action"] for e in acme.get("/api/v1/audit?org=acme").json()["results"]}
    assert {"org.create", "org.member.add", "org.team.create", "org.team.member.add",
            "org.team.member.remove", "org.service_account.create",
            "resource.create"} <= actions
    assert as_("bob").get("/api/v1/audit?org=acme").status_code == 403
    assert as_("carol").get("/api/v1/audit?org=acme").status_code == 404
    assert AuditEvent.objects.filter(org__username="acme").count() >= len(actions)


def test_org_cluster_token_hangs_off_the_org(acme, people):
    """A cluster in an org: compute mints its daemon's token for the cluster's
    owner, which is the org; the token reaches that cluster and nothing else."""
    from compute.services import _mint_cluster_token  # noqa: F401  (the minting path exists)
    from registry import credentials
    from registry.models import ApiToken

    acme.put("/api/v1/resources/acme/gpu", {"type": "cluster", "config": {"provider": "local"}},
             format="json")
    cluster = Resource.objects.get(owner__username="acme", name="gpu")
    plain = credentials.new_token()
    ApiToken.objects.create(user=cluster.owner, name="cluster", token_hash=credentials.hash_token(
        plain), hint="x", cluster=cluster)
    daemon = TokenClient().as_token(plain)
    assert daemon.get("/api/v1/auth/check?address=/acme/gpu").json() == {
        "username": "acme", "level": "read"}
    assert daemon.get("/api/v1/auth/check?address=/acme/train").status_code == 404


def test_bulk_writes_outside_services_are_seen_at_once(acme, as_, people):
    """Invalidation is structural: a queryset ``update()``, ``delete()`` or
    ``bulk_create()`` on any table an access answer depends on starts a new
    access epoch by itself, so code that skips the services (a data
    migration, a shell session, the next feature) cannot leave a cached
    answer standing."""
    from registry.models import AccessLevel, Membership, Team, TeamGrant, TeamMember

    bob = as_("bob")
    write = "/api/v1/auth/check?address=/acme/train&level=write"
    read = "/api/v1/auth/check?address=/acme/train&level=read"
    assert bob.get(write).status_code == 403
    assert bob.get(write).status_code == 403  # answered from the cache now
    Membership.objects.filter(org__username="acme", user=people["bob"]).update(role="admin")
    assert bob.get(write).json()["level"] == "owner"
    Membership.objects.filter(org__username="acme", user=people["bob"]).delete()
    assert bob.get(read).status_code == 404
    assert bob.get("/api/v1/resources/acme/train").status_code == 404

    notes = ResourceFactory(owner=people["alice"], name="notes")
    team = Team.objects.get(org__username="acme", name="ml")
    carol = as_("carol")
    check = "/api/v1/auth/check?address=/alice/notes&level=read"
    assert carol.get(check).status_code == 404
    assert carol.get(check).status_code == 404
    assert carol.get(read).status_code == 404
    Membership.objects.bulk_create([Membership(org=team.org, user=people["carol"])])
    assert carol.get(read).json() == {"username": "carol", "level": "read"}
    assert carol.get(check).status_code == 404
    TeamMember.objects.bulk_create([TeamMember(team=team, user=people["carol"])])
    TeamGrant.objects.bulk_create([TeamGrant(team=team, resource=notes, level=AccessLevel.READ)])
    assert carol.get(check).json() == {"username": "carol", "level": "read"}
    TeamGrant.objects.filter(resource=notes).update(level=AccessLevel.WRITE)
    assert carol.get(check.replace("read", "write")).json()["level"] == "write"
    TeamMember.objects.filter(user=people["carol"]).delete()
    assert carol.get(check).status_code == 404
