"""Organisation pages as their visitors meet them: an org's page for a member
and for an outsider, its settings for admins only, a service-account token
shown once and revoked there, bad names refused with nothing changed, and
search filtered by organisation."""

from __future__ import annotations

import pytest

from registry import services
from registry.models import ApiToken, Membership, Team
from tests.conftest import TokenClient
from tests.factories import ResourceFactory, UserFactory
from tests.frontend.conftest import text_of


@pytest.fixture
def acme(db):
    """acme: alice admin, bob member; /acme/model private, /acme/open public;
    carol in no org; /alice/model of alice's own."""
    people = {name: UserFactory(username=name) for name in ("alice", "bob", "carol")}
    org = services.org_create(actor=people["alice"], name="acme")
    services.org_members_add(actor=people["alice"], org=org, users=["bob"])
    ResourceFactory(owner=org, name="model", description="acme's private model")
    ResourceFactory(owner=org, name="open", visibility="public", description="acme's open one")
    ResourceFactory(owner=people["alice"], name="model", visibility="public",
                    description="alice's own model")
    return org, people


def test_org_page_for_members_and_outsiders(acme, page_client):
    org, people = acme
    member = text_of(page_client(people["bob"]).get("/acme"))
    assert "/acme/model" in member and "/acme/open" in member
    assert "alice admin" in member and "bob member" in member
    assert "Settings: members, teams, service accounts" not in member  # bob is no admin
    outsider = page_client(people["carol"]).get("/acme")
    assert outsider.status_code == 200
    seen = text_of(outsider)
    assert "/acme/open" in seen and "/acme/model" not in seen and "bob" not in seen
    assert page_client(people["carol"]).get("/acme/model").status_code == 404


def test_org_settings_are_for_admins(acme, page_client):
    _, people = acme
    assert page_client(people["alice"]).get("/acme/-/settings").status_code == 200
    assert page_client(people["bob"]).get("/acme/-/settings").status_code == 403
    assert page_client(people["carol"]).get("/acme/-/settings").status_code == 404
    refused = page_client(people["bob"]).submit(
        "/acme/-/settings", {"action": "add_members", "users": "carol"})
    assert refused.status_code == 403
    assert not Membership.objects.filter(user=people["carol"]).exists()


def test_service_account_token_shown_once_then_revoked(acme, page_client):
    org, people = acme
    alice = page_client(people["alice"])
    made = alice.submit("/acme/-/settings", {"action": "create_sa", "name": "airflow",
                                             "role": "member"})
    assert made.status_code == 302
    shown = alice.submit("/acme/-/settings", {"action": "create_sa_token", "account": "airflow",
                                              "name": "prod", "scope": "read"})
    assert shown.status_code == 200 and shown["Cache-Control"] == "no-store"
    page = shown.content.decode()
    plain = page.split('id="new-token">')[1].split("<")[0]
    assert plain.startswith("den_")
    again = alice.get("/acme/-/settings").content.decode()
    assert plain not in again and "prod (read" in text_of(alice.get("/acme/-/settings"))
    sa = TokenClient().as_token(plain)
    assert sa.get("/api/v1/resources/acme/model").status_code == 200
    assert sa.get("/api/v1/resources/alice/model").status_code == 200  # public
    token = ApiToken.objects.get(user__username="acme:airflow")
    revoked = alice.submit("/acme/-/settings", {"action": "revoke_sa_token",
                                                "account": "airflow", "token": str(token.pk)})
    assert revoked.status_code == 302
    assert sa.get("/api/v1/resources/acme/model").status_code == 401
    assert "prod (read" not in text_of(alice.get("/acme/-/settings"))


@pytest.mark.parametrize("form, field_text", [
    ({"action": "create_team", "name": "ml/gpu"}, "no '/'"),
    ({"action": "add_members", "users": "nobody-here"}, "nobody-here"),
    ({"action": "remove_member", "who": "alice"}, "last admin"),
    ({"action": "create_sa", "name": "a b"}, "name"),
])
def test_bad_org_settings_forms_change_nothing(acme, page_client, form, field_text):
    org, people = acme
    before = (Membership.objects.count(), Team.objects.count())
    response = page_client(people["alice"]).submit("/acme/-/settings", form)
    assert response.status_code in (409, 422), response.status_code
    assert field_text in text_of(response)
    assert (Membership.objects.count(), Team.objects.count()) == before


def test_an_org_name_taken_by_a_user_is_refused_on_the_page(acme, page_client):
    _, people = acme
    response = page_client(people["bob"]).submit("/settings/orgs", {"name": "Carol"})
    assert response.status_code == 422
    assert "taken" in text_of(response).lower() or "exists" in text_of(response).lower()


def test_search_filtered_by_org(acme, page_client):
    _, people = acme
    found = text_of(page_client(people["bob"]).get("/search?q=model&org=acme"))
    assert "/acme/model" in found and "/alice/model" not in found
    everywhere = text_of(page_client(people["bob"]).get("/search?q=model"))
    assert "/acme/model" in everywhere and "/alice/model" in everywhere
