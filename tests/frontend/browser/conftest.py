"""Browser tests: Playwright drives Debian's Chromium (never a downloaded
browser) against a live den server on the test PostgreSQL database."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

# Playwright's sync API runs an event loop in this thread; the ORM calls the
# tests make beside it are still plain synchronous calls.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

try:
    from playwright import sync_api
except ImportError:  # pragma: no cover - the dev extra installs it
    if os.environ.get("CI"):
        raise
    sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = os.environ.get("DEN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-gpu",
]
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    path = Path(os.environ.get("DEN_TEST_ARTIFACTS") or ROOT / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


@pytest.fixture(scope="module")
def chromium():
    """Chromium under Playwright, for one test module.

    Playwright's sync API marks its event loop as running in this thread for
    as long as it is started, so any later ``asyncio.run()`` in the same
    worker fails. Starting and stopping it per module confines that loop to
    the browser tests, and the check after stopping makes sure none is left.
    """
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is missing: apt-get install -y chromium (scripts/test does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()
    left = _running_loop()
    if left is not None:
        asyncio._set_running_loop(None)  # so the tests after this one still run
        pytest.fail(f"Playwright left an event loop running after it stopped: {left!r}")


@pytest.fixture
def live(live_server, transactional_db, settings):
    """The live server, with invitation links pointing at it."""
    settings.DEN_PUBLIC_URL = live_server.url
    return live_server


@pytest.fixture
def open_browser(chromium, live):
    """``open_browser(width=1280)``: a fresh browser context (its own cookies)
    on the live server, with clipboard access; fails the test on any
    JavaScript error or console error."""
    contexts = []
    errors: list[str] = []

    def make(width: int = 1280, height: int = 900):
        context = chromium.new_context(
            base_url=live.url,
            viewport={"width": width, "height": height},
            permissions=["clipboard-read", "clipboard-write"],
        )
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
        page.on(
            "console",
            lambda msg: errors.append(f"console: {msg.text}")
            # statuses are asserted by the tests themselves
            if msg.type == "error" and not msg.text.startswith("Failed to load resource")
            else None,
        )
        return page

    yield make
    for context in contexts:
        context.close()
    assert not errors, "\n".join(errors)


@pytest.fixture
def screenshot(artifacts_dir):
    def take(page, name: str) -> Path:
        path = artifacts_dir / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


def sign_in(page, username: str, password: str) -> None:
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/login" not in url)
