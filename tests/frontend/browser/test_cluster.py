"""A cluster's page in real Chromium: bring a local cluster up with a real
Celery worker and watch the panel follow it, tear it down behind a
confirmation; and a reader's page refreshing itself as the state changes."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from compute import services as compute_services
from compute.models import ClusterEvent, ClusterState
from registry.models import AccessGrant, AccessLevel
from tests.compute.conftest import state_of, wait_status
from tests.factories import PASSWORD, ResourceFactory, UserFactory
from tests.frontend.browser.conftest import sign_in

pytestmark = pytest.mark.browser


@pytest.fixture
def cluster(live):
    alice = UserFactory(username="alice")
    rita = UserFactory(username="rita")
    cpu = ResourceFactory(owner=alice, name="cpu", type="cluster",
                          config={"provider": "local", "autostop_mins": 30},
                          description="Development cluster on the den host.")
    AccessGrant.objects.create(resource=cpu, user=rita, level=AccessLevel.READ, granted_by=alice)
    return {"alice": alice, "rita": rita, "cpu": cpu}


@pytest.fixture
def worker(celery_worker):
    """The session's real Celery worker (tests/celery_worker.py)."""
    return celery_worker


def status_badge(page):
    return page.locator("#cluster-live .status")


def test_bring_a_cluster_up_and_tear_it_down(cluster, worker, open_browser, screenshot):
    cpu, alice = cluster["cpu"], cluster["alice"]
    page = open_browser()
    sign_in(page, "alice", PASSWORD)
    page.goto("/alice/cpu")
    expect(status_badge(page)).to_have_text("down")
    expect(page.get_by_text("No events yet.")).to_be_visible()
    try:
        page.get_by_role("button", name="Bring up").click()
        expect(page.get_by_role("status")).to_contain_text("Asked for /alice/cpu to come up.")
        assert state_of(cpu).status in ("provisioning", "starting", "up")
        # The panel polls itself: the worker's progress shows without a reload.
        expect(status_badge(page)).to_have_text("up", timeout=45_000)
        state = state_of(cpu)
        live = page.locator("#cluster-live")
        expect(live).to_contain_text(state.daemon_url)
        expect(live.locator(".event-kind").first).to_have_text("up")
        expect(live).to_contain_text("alice asked for the cluster to come up.")
        expect(live).to_contain_text("daemon.started")
        expect(page.get_by_role("button", name="Stop", exact=True)).to_be_visible()
        expect(page.get_by_role("button", name="Bring up")).to_have_count(0)
        # heartbeats from the daemon arrive (every 0.5 s here) and the panel shows them
        expect(live.locator("dt:has-text('Last heartbeat') + dd")).to_have_text("just now",
                                                                                 timeout=15_000)
        screenshot(page, "cluster-up")

        page.get_by_role("link", name="Tear down…").click()
        expect(page.get_by_role("heading", name="Tear down /alice/cpu?")).to_be_visible()
        screenshot(page, "cluster-teardown")
        page.get_by_role("button", name="Tear down /alice/cpu").click()
        expect(page.get_by_text("Asked for /alice/cpu to be torn down.")).to_be_visible()
        expect(status_badge(page)).to_have_text("terminated", timeout=30_000)
        expect(page.get_by_role("button", name="Bring up")).to_be_visible()
        # settled: the panel stops polling until someone acts again
        assert page.locator("#cluster-live").get_attribute("hx-trigger") is None
    finally:
        if state_of(cpu).status not in ("terminated", "down"):
            compute_services.cluster_request_teardown(actor=alice, resource=cpu)
            with contextlib.suppress(AssertionError):
                wait_status(cpu, "terminated", timeout=30)


def test_a_reader_watches_the_state_change(cluster, open_browser, screenshot):
    """No worker here: the test moves the state in the database, as a worker
    or a heartbeat would, and the reader's page follows on its own."""
    cpu = cluster["cpu"]
    now = timezone.now()
    state = ClusterState.objects.create(
        resource=cpu, status="up", backend="local", daemon_url="http://127.0.0.1:41234",
        last_heartbeat_at=now, last_activity_at=now - timedelta(minutes=3), calls_in_flight=1,
    )
    ClusterEvent.objects.create(cluster=state, kind="daemon.started",
                                message="Started the node daemon (PID 4242) on port 41234.",
                                data={"pid": 4242, "port": 41234})
    ClusterEvent.objects.create(cluster=state, kind="daemon.log", message="The daemon's log:",
                                data={"lines": ["INFO den.node listening on 127.0.0.1:41234",
                                                "INFO heartbeat to den every 5 s"]})
    ClusterEvent.objects.create(cluster=state, kind="up",
                                message="The cluster is up at http://127.0.0.1:41234.")

    page = open_browser()
    sign_in(page, "rita", PASSWORD)
    page.goto("/alice/cpu")
    expect(status_badge(page)).to_have_text("up")
    panel = page.locator("#cluster-runtime")
    # A reader sees what happened, never an event's data (the daemon's log, its PID).
    expect(panel).to_contain_text("The daemon's log:")
    expect(panel).not_to_contain_text("INFO den.node listening on 127.0.0.1:41234")
    expect(panel).not_to_contain_text("pid: 4242")
    expect(panel.get_by_role("button")).to_have_count(0)  # a reader gets no controls
    expect(panel.locator("form")).to_have_count(0)
    expect(panel).to_contain_text("needs write access")

    ClusterState.objects.filter(pk=state.pk).update(status="unreachable", status_changed_at=now)
    ClusterEvent.objects.create(cluster=state, kind="unreachable",
                                message="No heartbeat for 30 s; the daemon may be down.")
    expect(status_badge(page)).to_have_text("unreachable", timeout=15_000)
    expect(panel.locator(".event").first).to_contain_text("No heartbeat for 30 s")
    screenshot(page, "cluster-reader")

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the cluster page scrolls sideways by {overflow}px"
    screenshot(page, "cluster-reader-narrow")


def test_an_owner_sets_autostop_on_a_narrow_screen(cluster, open_browser, screenshot):
    cpu = cluster["cpu"]
    ClusterState.objects.create(resource=cpu, status="failed", backend="local",
                                message="The node daemon exited before it answered:\n"
                                        "Traceback (most recent call last):\n"
                                        "  File \"den/node/__main__.py\", line 12\n"
                                        "OSError: [Errno 98] Address already in use")
    page = open_browser(width=390, height=844)
    sign_in(page, "alice", PASSWORD)
    page.goto("/alice/cpu")
    expect(status_badge(page)).to_have_text("failed")
    expect(page.get_by_role("heading", name="Why it failed")).to_be_visible()
    field = page.get_by_label("Autostop after (idle minutes, -1 for never)")
    expect(field).to_have_value("30")
    field.fill("45")
    page.get_by_role("button", name="Set autostop").click()
    expect(page.get_by_role("status")).to_contain_text("/alice/cpu now stops after 45 idle minutes")
    expect(page.locator("#cluster-live")).to_contain_text("alice set autostop to 45 minutes.")
    assert state_of(cpu).autostop_mins == 45
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the cluster page scrolls sideways by {overflow}px"
    screenshot(page, "cluster-owner-narrow")
