"""den's pages under its Content-Security-Policy, in real Chromium: every
page works with scripts and styles from den alone, and the browser reports
no violation (inline scripts, styles, handlers or javascript: URLs would)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.factories import PASSWORD, ResourceFactory, UserFactory
from tests.frontend.browser.conftest import sign_in

pytestmark = pytest.mark.browser

#: Collects what the browser refused, page by page (injected by the browser
#: itself, so the policy does not apply to this script).
WATCH = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__violations.push(e.violatedDirective + " " + (e.blockedURI || "inline") +
                           " at " + e.sourceFile + ":" + e.lineNumber);
});
"""


def violations(page) -> list[str]:
    return page.evaluate("window.__violations || []")


def test_pages_run_under_the_policy_without_violations(live, open_browser):
    alice = UserFactory(username="alice")
    ResourceFactory(owner=alice, name="sk", type="env", config={"reqs": ["numpy"]})
    page = open_browser()
    page.add_init_script(WATCH)
    page.goto("/login")
    response = page.request.get(f"{live.url}/login")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    sign_in(page, "alice", PASSWORD)
    for path in ("/", "/alice/sk", "/alice/sk/-/versions", "/alice/sk/-/access",
                 "/settings/tokens", "/search?q=sk", "/nobody/missing"):
        page.goto(path)
        page.wait_for_load_state("networkidle")
        assert violations(page) == [], path
    # The "Go back" link of an error page is a script now, not a javascript: URL.
    page.goto("/alice/sk")
    bad = page.goto("/search?q=%00")
    assert bad is not None and bad.status == 400
    page.get_by_role("link", name="Go back").click()
    page.wait_for_url(lambda url: url.endswith("/alice/sk"))
    assert violations(page) == []


def test_swagger_ui_renders_under_the_policy(live, open_browser):
    page = open_browser()
    page.add_init_script(WATCH)
    page.goto("/api/docs/")
    expect(page.locator(".swagger-ui .opblock").first).to_be_visible(timeout=20_000)
    assert violations(page) == []
    assert "script-src 'self'" in page.request.get(
        f"{live.url}/api/docs/").headers["content-security-policy"]
