"""What a team does in the browser, end to end in real Chromium."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from django.core import mail
from playwright.sync_api import expect

from registry import services
from registry.models import AccessGrant, AccessLevel, ApiToken, PendingGrant, Resource
from tests.factories import PASSWORD, ResourceFactory, UserFactory
from tests.frontend.browser.conftest import sign_in

pytestmark = pytest.mark.browser


@pytest.fixture
def team(live):
    alice = UserFactory(username="alice", first_name="Alice")
    rita = UserFactory(username="rita")
    train = ResourceFactory(
        owner=alice, name="train", type="function",
        config={"code": "sha256:1f2e", "pointers": {"module": "train", "qualname": "train"},
                "system": "/alice/cpu", "signature": {"params": ["data", "epochs"]}},
        description="Trains the churn model on the nightly data.",
    )
    ResourceFactory(owner=alice, name="cpu", type="cluster", config={"provider": "local"},
                    description="Development cluster on the den host.")
    ResourceFactory(owner=alice, name="sk", type="env", config={"reqs": ["scikit-learn"]},
                    visibility="public")
    ResourceFactory(owner=rita, name="notebooks/eda", type="function", visibility="public",
                    description="Exploratory analysis helpers.")
    AccessGrant.objects.create(resource=train, user=rita, level=AccessLevel.READ, granted_by=alice)
    return {"alice": alice, "rita": rita, "train": train}


def wait_for_mail(to: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in mail.outbox:
            if to in message.to:
                return message
        time.sleep(0.05)
    raise AssertionError(f"no mail to {to}")


def test_find_a_shared_resource_and_copy_its_snippet(team, open_browser, screenshot):
    page = open_browser()
    sign_in(page, "rita", PASSWORD)
    shared = page.get_by_role("region", name="Shared with you")
    expect(shared.get_by_role("link", name="/alice/train")).to_be_visible()
    screenshot(page, "dashboard")

    page.get_by_role("link", name="All shared").click()
    page.wait_for_load_state()  # htmx is ready once the page has loaded
    page.get_by_label("Text in name or description").fill("churn")
    expect(page).to_have_url(re.compile(r"/search\?q=churn"))  # htmx searched as I typed
    expect(page.locator("#results .resource-link")).to_have_count(1)
    page.get_by_label("Text in name or description").fill("")
    page.get_by_label("Only shared with me").uncheck()
    page.get_by_label("Type").select_option("function")
    expect(page.locator("#results .resource-link")).to_have_count(2)
    screenshot(page, "search")

    page.get_by_role("link", name="/alice/train").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("train")
    expect(page.get_by_role("link", name="Access")).to_have_count(0)  # a reader gets no controls
    page.get_by_role("button", name="Copy").first.click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == page.locator("#snippet-python").inner_text()
    assert 'den.function(name="/alice/train")' in copied
    screenshot(page, "resource")


def test_share_by_email_accept_and_revoke(team, open_browser, screenshot):
    owner = open_browser()
    sign_in(owner, "alice", PASSWORD)
    owner.goto("/alice/train/-/access")  # goto waits for the load event, so htmx is ready
    owner.get_by_label("Share with (usernames or emails)").fill("newbie@example.com")
    owner.get_by_label("Access", exact=True).select_option("read")
    owner.get_by_role("button", name="Share").click()
    expect(owner.get_by_role("status")).to_contain_text("Invited newbie@example.com")
    expect(owner.get_by_role("row", name=re.compile("newbie@example.com"))).to_be_visible()
    screenshot(owner, "access")

    link = re.search(r"https?://\S+/invite/\S+", wait_for_mail("newbie@example.com").body).group(0)
    teammate = open_browser()
    teammate.goto(link)
    screenshot(teammate, "invitation")
    teammate.get_by_label("Username").fill("newbie")
    teammate.get_by_label("Password", exact=True).fill("a long new passphrase")
    teammate.get_by_label("Password again").fill("a long new passphrase")
    teammate.get_by_role("button", name="Join den").click()
    expect(teammate.get_by_text("Welcome to den, newbie.")).to_be_visible()
    teammate.get_by_role("region", name="Shared with you").get_by_role("link", name="/alice/train").click()
    expect(teammate.get_by_role("heading", level=1)).to_contain_text("train")
    assert not PendingGrant.objects.exists()

    owner.reload()
    owner.get_by_role("button", name="Revoke newbie's access").click()
    expect(owner.get_by_role("status")).to_contain_text("Revoked newbie's access")
    response = teammate.goto("/alice/train")
    assert response.status == 404
    expect(teammate.get_by_role("heading", name="Nothing here")).to_be_visible()
    screenshot(teammate, "not-found")


def test_restore_an_old_version_from_the_diff(team, open_browser, screenshot):
    train = team["train"]
    for code in ("sha256:aaaa", "sha256:bbbb"):
        train = services.resource_update_config(
            actor=team["alice"], resource=train, config={**train.config, "code": code}
        )
    page = open_browser()
    sign_in(page, "alice", PASSWORD)
    page.goto("/alice/train/-/versions")
    screenshot(page, "versions")
    page.get_by_role("link", name="v1", exact=True).click()
    expect(page.get_by_role("heading", name=re.compile("Version 1 compared with version 3"))).to_be_visible()
    expect(page.locator("tr.diff-changed")).to_have_count(1)
    screenshot(page, "diff")
    page.get_by_role("button", name="Restore version 1").click()
    expect(page.get_by_text("Restored version 1: its config is now version 4.")).to_be_visible()
    expect(page.get_by_role("row", name=re.compile("v4"))).to_contain_text("restored from v1")
    train.refresh_from_db()
    assert train.version == 4 and train.config["code"] == "sha256:1f2e"


def test_create_use_and_revoke_a_token(team, open_browser, screenshot, live):
    page = open_browser()
    sign_in(page, "alice", PASSWORD)
    page.get_by_role("link", name="Settings").click()
    page.wait_for_load_state()
    page.get_by_label("Name").fill("airflow")
    page.get_by_label("Scope").select_option("read")
    page.get_by_label("Expires in").select_option("30")
    page.get_by_role("button", name="Create token").click()
    token_field = page.get_by_role("textbox", name="New token")
    expect(token_field).to_have_value(re.compile(r"^den_"))
    page.get_by_role("button", name="Copy", exact=True).click()
    plain = page.evaluate("navigator.clipboard.readText()")
    assert plain == token_field.input_value()
    screenshot(page, "tokens")

    headers = {"Authorization": f"Bearer {plain}"}
    me = httpx.get(f"{live.url}/api/v1/me", headers=headers)
    assert me.status_code == 200 and me.json()["username"] == "alice"
    assert httpx.get(f"{live.url}/api/v1/resources/alice/train", headers=headers).status_code == 200

    page.reload()  # the token is not shown again
    expect(page.get_by_role("textbox", name="New token")).to_have_count(0)
    expect(page.get_by_role("row", name=re.compile("airflow"))).to_contain_text("just now")
    page.get_by_role("button", name="Revoke token airflow").click()
    expect(page.get_by_text("Revoked the token")).to_be_visible()
    assert httpx.get(f"{live.url}/api/v1/me", headers=headers).status_code == 401
    assert ApiToken.objects.get(name="airflow").revoked_at is not None


def test_narrow_screen_and_keyboard(team, open_browser, screenshot):
    page = open_browser(width=390, height=844)
    sign_in(page, "alice", PASSWORD)
    for path, name in [("/", "dashboard-narrow"), ("/alice/train", "resource-narrow"),
                       ("/alice/train/-/access", "access-narrow"), ("/search", "search-narrow")]:
        page.goto(path)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} scrolls sideways by {overflow}px"
        screenshot(page, name)

    page.goto("/alice/train")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.closest('main') !== null")
    assert focused, "after the skip link, Tab lands inside the page's content"


def test_delete_with_confirmation(team, open_browser):
    page = open_browser()
    sign_in(page, "alice", PASSWORD)
    page.goto("/alice/cpu/-/settings")
    page.get_by_role("link", name="Delete /alice/cpu…").click()
    page.get_by_label("Type /alice/cpu to confirm").fill("cpu")
    page.get_by_role("button", name="Delete forever").click()
    expect(page.get_by_role("alert")).to_contain_text("nothing was deleted")
    page.get_by_label("Type /alice/cpu to confirm").fill("/alice/cpu")
    page.get_by_role("button", name="Delete forever").click()
    expect(page.get_by_text("Deleted /alice/cpu.")).to_be_visible()
    assert not Resource.objects.filter(name="cpu").exists()
