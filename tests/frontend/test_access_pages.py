"""Every resource page as owner, writer, reader and stranger: strangers get
404, readers see no control they may not use and get 403 when they force it,
and every form is refused without its CSRF token."""

from __future__ import annotations

import re

import pytest

from registry.models import AccessGrant, Resource, ResourceVersion
from tests.factories import ResourceFactory, UserFactory

pytestmark = pytest.mark.django_db

BASE = "/alice/train"
ROLES = ["owner", "writer", "reader", "stranger"]
# page, path, the least role that may open it
PAGES = [
    ("overview", BASE, "reader"),
    ("versions", f"{BASE}/-/versions", "reader"),
    ("version", f"{BASE}/-/versions/1", "reader"),
    ("access", f"{BASE}/-/access", "writer"),
    ("audit", f"{BASE}/-/audit", "writer"),
    ("settings", f"{BASE}/-/settings", "writer"),
    ("delete", f"{BASE}/-/delete", "owner"),
]
# action, path, form data, the least role that may do it
ACTIONS = [
    ("restore", f"{BASE}/-/versions/1/restore", {}, "writer"),
    ("share", f"{BASE}/-/access", {"users": "sam", "level": "read"}, "writer"),
    ("revoke", f"{BASE}/-/access/revoke", {"who": "rita"}, "writer"),
    ("describe", f"{BASE}/-/description", {"description": "new words"}, "writer"),
    ("visibility", f"{BASE}/-/visibility", {"visibility": "public"}, "owner"),
    ("delete", f"{BASE}/-/delete", {"confirm": "/alice/train"}, "owner"),
]
RANK = {"stranger": 0, "reader": 1, "writer": 2, "owner": 3}


def expected(role: str, needed: str, success: int) -> int:
    if role == "stranger":
        return 404
    return success if RANK[role] >= RANK[needed] else 403


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("page", "path", "needed"), PAGES, ids=[p[0] for p in PAGES])
def test_pages_by_role(team, page_client, role, page, path, needed):
    response = page_client(team.by_role[role]).get(path)
    assert response.status_code == expected(role, needed, 200)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("action", "path", "data", "needed"), ACTIONS, ids=[a[0] for a in ACTIONS])
def test_actions_by_role(team, page_client, role, action, path, data, needed):
    # version 2 exists, so restoring version 1 is a real change
    team.train.version = 2
    team.train.save()
    ResourceVersion.objects.create(resource=team.train, number=2, type="function",
                                   config={"code": "sha256:2", "pointers": {"module": "b", "qualname": "b"}}, author=team.alice)
    response = page_client(team.by_role[role]).submit(path, data)
    assert response.status_code == expected(role, needed, 302)
    still_there = Resource.objects.filter(pk=team.train.pk).exists()
    assert still_there == (response.status_code != 302 or action != "delete")


def test_missing_and_malformed_addresses_are_404(team, page_client):
    client = page_client(team.alice)
    for path in ["/alice/nothing", "/alice/train/-/nope", "/alice/x..y/-/versions/9",
                 "/alice/train/-/versions/9", "/nobody", "/nobody/thing", "/alice/a/../train"]:
        assert client.get(path).status_code == 404, path


def test_anonymous_is_asked_to_sign_in_for_every_address_alike(team, page_client):
    client = page_client()
    for path in ["/", "/search", "/settings/tokens", BASE, "/alice/missing", f"{BASE}/-/access"]:
        response = client.get(path)
        assert response.status_code == 302, path
        assert response["Location"].startswith("/login?next="), path


def test_reader_sees_no_controls(team, page_client):
    client = page_client(team.rita)
    overview = client.get(BASE).content.decode()
    assert "/-/access" not in overview and "/-/settings" not in overview and "/-/audit" not in overview
    assert "you: read" in overview
    diff = client.get(f"{BASE}/-/versions/1").content.decode()
    assert "/restore" not in diff and "<form method=\"post\"" not in diff.split("</header>")[1]


def test_writer_sees_no_owner_controls(team, page_client):
    settings_page = page_client(team.wendy).get(f"{BASE}/-/settings").content.decode()
    assert "/-/description" in settings_page
    assert "/-/visibility" not in settings_page and "/-/delete" not in settings_page
    owner_page = page_client(team.alice).get(f"{BASE}/-/settings").content.decode()
    assert "/-/visibility" in owner_page and "/-/delete" in owner_page


@pytest.mark.parametrize(
    "path",
    [f"{BASE}/-/access", f"{BASE}/-/access/revoke", f"{BASE}/-/description", f"{BASE}/-/visibility",
     f"{BASE}/-/delete", f"{BASE}/-/versions/1/restore", "/settings/tokens", "/settings/profile",
     "/settings/password", "/logout"],
)
def test_every_form_needs_its_csrf_token(team, page_client, path):
    client = page_client(team.alice)
    response = client.post(path, {"users": "sam", "level": "read", "who": "rita", "visibility": "public",
                                  "confirm": "/alice/train", "name": "t", "scope": "read"})
    assert response.status_code == 403
    assert Resource.objects.filter(pk=team.train.pk, visibility="private").exists()
    assert AccessGrant.objects.filter(resource=team.train).count() == 2


def test_sign_in_form_needs_its_csrf_token(team, page_client):
    client = page_client()
    response = client.post("/login", {"username": "alice", "password": "correct horse battery staple"})
    assert response.status_code == 403


def test_unlisted_is_readable_by_address_but_never_listed(team, page_client):
    secret_plan = ResourceFactory(owner=team.alice, name="plan", visibility="unlisted")
    client = page_client(team.sam)
    assert client.get(secret_plan.address).status_code == 200
    assert "/alice/plan" not in client.get("/search?q=plan").content.decode()
    assert "/alice/plan" not in client.get("/alice").content.decode()
    assert "/alice/plan" not in client.get("/").content.decode()
    # the owner finds it
    assert "/alice/plan" in page_client(team.alice).get("/search?q=plan").content.decode()


def test_names_with_folders(team, page_client):
    nested = ResourceFactory(owner=team.alice, name="team/models/train", visibility="public")
    client = page_client(team.sam)
    assert client.get("/alice/team/models/train").status_code == 200
    assert client.get("/alice/team/models/train/-/versions").status_code == 200
    assert client.get("/alice/team/models/train/-/access").status_code == 403
    assert nested.address in client.get("/search?q=models").content.decode()


def test_a_new_user_with_a_shared_name_gets_no_old_access(team, page_client):
    """Access hangs off the id: a deleted and re-created name starts empty."""
    page_client(team.alice).submit(f"{BASE}/-/delete", {"confirm": "/alice/train"})
    ResourceFactory(owner=team.alice, name="train")
    assert page_client(team.rita).get(BASE).status_code == 404


def test_stranger_page_for_someone_elses_private_matches_missing(team, page_client):
    client = page_client(UserFactory(username="eve"))
    hidden = client.get(BASE)
    missing = client.get("/alice/never-existed")
    assert hidden.status_code == missing.status_code == 404
    def page(response, path):
        html = re.sub(r"[A-Za-z0-9]{64}", "csrf", response.content.decode())  # masked per response
        return html.replace(path, "X")

    assert page(hidden, BASE) == page(missing, "/alice/never-existed")
