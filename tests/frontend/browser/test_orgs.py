"""An organisation in the browser, end to end in real Chromium: create it, add
a member, make a team, share a resource with the team; the member finds it;
removed from the org, they get the 404 page."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.factories import PASSWORD, ResourceFactory, UserFactory
from tests.frontend.browser.conftest import sign_in

pytestmark = pytest.mark.browser


def test_org_member_team_share_and_removal(live, open_browser, screenshot):
    alice = UserFactory(username="alice")
    UserFactory(username="bob")
    ResourceFactory(owner=alice, name="notes", type="resource", description="Team notes.")

    admin = open_browser()
    sign_in(admin, "alice", PASSWORD)
    admin.get_by_role("link", name="Create one").click()
    admin.get_by_label("Name").fill("acme")
    admin.get_by_role("button", name="Create organisation").click()
    expect(admin).to_have_url(f"{live.url}/acme/-/settings")
    expect(admin.get_by_role("status")).to_contain_text("Created acme")

    admin.get_by_label("Add people (usernames or emails)").fill("bob")
    admin.get_by_role("button", name="Add", exact=True).click()
    expect(admin.get_by_role("status")).to_contain_text("Added bob as member")
    admin.get_by_label("New team").fill("ml")
    admin.get_by_role("button", name="Create team").click()
    admin.get_by_label("Add members of acme to ml").fill("bob")
    admin.get_by_role("button", name="Add to team").click()
    expect(admin.locator("#team-ml")).to_contain_text("bob")
    screenshot(admin, "org-settings")

    admin.goto("/alice/notes/-/access")
    admin.wait_for_load_state()
    admin.get_by_label("Share with (usernames or emails) or teams (org/team)").fill("acme/ml")
    admin.get_by_role("button", name="Share").click()
    expect(admin.locator("#access-panel")).to_contain_text("acme/ml (team)")
    screenshot(admin, "access-team")

    member = open_browser()
    sign_in(member, "bob", PASSWORD)
    expect(member.get_by_role("region", name="My organisations")).to_contain_text("acme")
    expect(member.get_by_role("region", name="Shared with you").get_by_role(
        "link", name="/alice/notes")).to_be_visible()
    member.get_by_role("link", name="/alice/notes").first.click()
    expect(member.get_by_role("heading", level=1)).to_contain_text("notes")
    member.goto("/acme")
    expect(member.get_by_role("region", name="Members")).to_contain_text("alice")

    admin.goto("/acme/-/settings")
    admin.get_by_role("button", name="Remove bob").first.click()
    expect(admin.get_by_role("status")).to_contain_text("Removed bob")

    response = member.goto("/alice/notes")
    assert response is not None and response.status == 404
    expect(member.get_by_role("heading", level=1)).to_have_text("Nothing here")
    screenshot(member, "org-removed-404")
