"""The diff's layout in real Chromium: a fixed-width line-number column that
never squeezes the text, lines that never wrap or break inside a token, and
sideways scrolling for long lines. Also the favicon den serves."""

from __future__ import annotations

import pytest

from registry import services
from tests.factories import PASSWORD, ResourceFactory, UserFactory
from tests.frontend.browser.conftest import sign_in

pytestmark = pytest.mark.browser

LONG_TOKEN = "sha256:" + "0123456789abcdef" * 8  # one word of 135 characters


@pytest.fixture
def config_history(live):
    alice = UserFactory(username="alice")
    items = [f"item-{i}" for i in range(120)]
    old = {"code": "sha256:1", "items": items}
    resource = ResourceFactory(owner=alice, name="train", type="resource", config=old)
    new_items = list(items)
    new_items[110] = "item-110-changed"
    services.resource_update_config(actor=alice, resource=resource,
                                    config={"code": LONG_TOKEN, "items": new_items})
    return alice


def test_diff_lines_keep_their_shape_and_scroll_sideways(config_history, open_browser, screenshot):
    page = open_browser(width=700)
    sign_in(page, "alice", PASSWORD)
    page.goto("/alice/train/-/versions/1?to=2")
    screenshot(page, "diff-narrow")
    layout = page.evaluate(
        """() => {
          const numbers = [...document.querySelectorAll('table.diff td.ln')]
            .filter(td => td.textContent.trim() !== '');
          const token = [...document.querySelectorAll('table.diff td.new code')]
            .find(code => code.textContent.includes('sha256:0123'));
          const wrap = document.querySelector('.diff-wrap');
          const lineHeight = parseFloat(getComputedStyle(token).lineHeight) ||
            token.getBoundingClientRect().height;
          return {
            widths: [...new Set(numbers.map(td => Math.round(td.getBoundingClientRect().width)))],
            digits: numbers.map(td => td.textContent.trim().length),
            tokenRects: token.getClientRects().length,
            tokenHeight: token.getBoundingClientRect().height,
            lineHeight: lineHeight,
            scrolls: wrap.scrollWidth > wrap.clientWidth,
          };
        }"""
    )
    assert max(layout["digits"]) >= 3 and min(layout["digits"]) == 1, layout
    assert len(layout["widths"]) == 1, layout  # one width for 1- and 3-digit numbers
    assert layout["widths"][0] >= 30, layout
    assert layout["tokenRects"] == 1, layout  # the long token is on one line, unbroken
    assert layout["tokenHeight"] < 1.5 * layout["lineHeight"], layout
    assert layout["scrolls"], layout


def test_pages_have_a_favicon_den_serves(config_history, open_browser):
    page = open_browser()
    sign_in(page, "alice", PASSWORD)
    href = page.locator("link[rel=icon]").get_attribute("href")
    assert href and href.endswith(".svg")
    response = page.request.get(href)
    assert response.status == 200
    assert response.headers["content-type"].startswith("image/svg+xml")
    assert b"<svg" in response.body()
