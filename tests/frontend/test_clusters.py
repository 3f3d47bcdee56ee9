"""A cluster's page: its live state and event log for everyone who may read
it, the controls (up, stop, teardown, autostop) only for writers, 403 for
readers who force them and 404 for strangers; and a bounded number of queries
however long the event log grows.

These tests run in a transaction that never commits, so the services'
``delay_on_commit`` never sends a task: the state moves to the requested
status and stays there, which is what the page should show.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from compute.models import ClusterEvent, ClusterState
from registry.models import AccessGrant, AccessLevel, AuditEvent
from tests.factories import ResourceFactory
from tests.frontend.conftest import text_of
from tests.frontend.test_access_pages import ROLES, expected

pytestmark = pytest.mark.django_db

CPU = "/alice/cpu"
HTMX = {"HTTP_HX_REQUEST": "true"}
# action, path, form data, the status it asks for
ACTIONS = [
    ("up", f"{CPU}/-/cluster/up", {}, "provisioning"),
    ("stop", f"{CPU}/-/cluster/stop", {}, "stopping"),
    ("teardown", f"{CPU}/-/cluster/teardown", {}, "terminating"),
    ("autostop", f"{CPU}/-/cluster/autostop", {"autostop_mins": "45"}, None),
]
CONTROLS = ["/-/cluster/up", "/-/cluster/stop", "/-/cluster/teardown", "/-/cluster/autostop"]


@pytest.fixture
def cpu(team):
    """/alice/cpu, a local cluster shared like /alice/train: wendy writes, rita reads."""
    cpu = ResourceFactory(owner=team.alice, name="cpu", type="cluster",
                          config={"provider": "local", "autostop_mins": 30})
    AccessGrant.objects.create(resource=cpu, user=team.wendy, level=AccessLevel.WRITE)
    AccessGrant.objects.create(resource=cpu, user=team.rita, level=AccessLevel.READ)
    return cpu


def make_state(cpu, status="up", events=3, **fields) -> ClusterState:
    now = timezone.now()
    values = {
        "backend": "local", "daemon_url": "http://127.0.0.1:41234",
        "last_heartbeat_at": now - timedelta(seconds=5),
        "last_activity_at": now - timedelta(minutes=7), "calls_in_flight": 2, "objects_count": 4,
        **fields,
    }
    state = ClusterState.objects.create(resource=cpu, status=status, **values)
    ClusterEvent.objects.bulk_create(
        ClusterEvent(cluster=state, kind="daemon.started", message=f"Started the daemon ({n}).",
                     data={"pid": 4000 + n, "port": 41234})
        for n in range(events)
    )
    return state


def panel_of(response) -> str:
    html = response.content.decode()
    return html.split('id="cluster-runtime"')[1].split("</section>")[0]


# What the page shows ------------------------------------------------------------


def test_the_page_shows_the_live_state(cpu, team, page_client):
    state = make_state(cpu)
    ClusterEvent.objects.create(cluster=state, kind="daemon.log", message="The daemon said:",
                                data={"lines": ["INFO listening on :41234", "INFO ready"]})
    response = page_client(team.rita).get(CPU)
    assert response.status_code == 200
    panel = panel_of(response)
    text = text_of(response)
    assert 'class="status status-ok"' in panel and ">up</span>" in panel
    assert "http://127.0.0.1:41234" in text and "Backend local" in text
    assert "Last heartbeat just now" in text and "Last activity 7 minutes ago" in text
    assert "Calls in flight 2" in text and "Objects held 4" in text
    assert "Autostop after 30 idle minutes" in text  # from the config
    # events, newest first; a reader sees their messages only
    assert text.index("The daemon said:") < text.index("Started the daemon (2).")
    assert "INFO listening" not in panel and "pid" not in text and "41234, " not in text
    # up: the panel keeps itself fresh
    assert 'hx-get="/alice/cpu/-/cluster"' in panel and "every 5s" in panel
    # a writer also sees their data and log lines
    writer = page_client(team.wendy).get(CPU)
    assert "INFO listening on :41234\nINFO ready" in panel_of(writer)
    assert "pid: 4002" in text_of(writer)


def test_readers_never_see_event_data_in_the_live_fragment(cpu, team, page_client):
    state = make_state(cpu)
    ClusterEvent.objects.create(cluster=state, kind="failed", message="It failed.",
                                data={"log": "Traceback: /var/lib/den/clusters/7/daemon.py",
                                      "pid": 31337})
    live = page_client(team.rita).get(f"{CPU}/-/cluster", **HTMX).content.decode()
    assert "It failed." in live
    assert "/var/lib/den" not in live and "31337" not in live


def test_a_failure_says_why(cpu, team, page_client):
    make_state(cpu, status="failed", daemon_url="", message="The daemon exited before it answered:\nboom")
    panel = panel_of(page_client(team.alice).get(CPU))
    assert "status-bad" in panel and "Why it failed" in panel and "answered:\nboom" in panel
    assert "hx-trigger" not in panel  # settled: nothing polls until someone acts
    assert "/-/cluster/up" in panel  # and it can be brought up again


def test_a_cluster_never_brought_up_is_down_and_reading_writes_nothing(cpu, team, page_client):
    response = page_client(team.alice).get(CPU)
    text = text_of(response)
    assert "DOWN" in text.upper() and "never brought up" in text and "No events yet." in text
    assert not ClusterState.objects.exists()


def test_log_output_shows_its_last_lines_only(cpu, team, page_client):
    state = make_state(cpu, events=0)
    ClusterEvent.objects.create(cluster=state, kind="daemon.log",
                                data={"log": "\n".join(f"line {n}" for n in range(80))})
    panel = panel_of(page_client(team.alice).get(CPU))
    assert "… 30 earlier lines\nline 30\n" in panel and "line 79" in panel and "line 29\n" not in panel


def test_other_types_have_no_cluster_panel_nor_cluster_pages(cpu, team, page_client):
    client = page_client(team.alice)
    assert 'id="cluster-runtime"' not in client.get("/alice/train").content.decode()
    assert client.get("/alice/train/-/cluster", **HTMX).status_code == 404
    assert client.submit("/alice/train/-/cluster/up").status_code == 404


# Who gets which control -----------------------------------------------------------


@pytest.mark.parametrize(("status", "shown"), [
    ("down", {"up"}),
    ("up", {"stop", "teardown"}),
    ("provisioning", {"stop", "teardown"}),
    ("stopped", {"up", "teardown"}),
    ("failed", {"up", "teardown"}),
    ("unreachable", {"up", "stop", "teardown"}),
    ("terminating", set()),
    ("terminated", {"up"}),
])
def test_writers_get_the_controls_that_fit_the_state(cpu, team, page_client, status, shown):
    if status != "down":
        make_state(cpu, status=status)
    for role in ("owner", "writer"):
        panel = panel_of(page_client(team.by_role[role]).get(CPU))
        offered = {name for name in ("up", "stop", "teardown") if f"/-/cluster/{name}" in panel}
        assert offered == shown, role
        assert "/-/cluster/autostop" in panel and 'name="csrfmiddlewaretoken"' in panel


def test_readers_see_the_state_but_no_control(cpu, team, page_client):
    make_state(cpu, status="stopped")
    response = page_client(team.rita).get(CPU)
    panel = panel_of(response)
    assert "status-idle" in panel and "Started the daemon" in panel
    assert not any(control in panel for control in CONTROLS)
    assert "<form" not in panel and "needs write access" in text_of(response)


@pytest.mark.parametrize("role", ROLES)
def test_live_fragment_by_role(cpu, team, page_client, role):
    make_state(cpu, status="starting")
    response = page_client(team.by_role[role]).get(f"{CPU}/-/cluster", **HTMX)
    assert response.status_code == expected(role, "reader", 200)
    if response.status_code == 200:
        html = response.content.decode()
        assert html.startswith('<div id="cluster-live"') and "every 2s" in html
        assert ("/-/cluster/stop" in html) == (role in ("owner", "writer"))


def test_live_fragment_without_htmx_goes_to_the_page(cpu, team, page_client):
    response = page_client(team.rita).get(f"{CPU}/-/cluster")
    assert response.status_code == 302 and response["Location"] == CPU


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("action", "path", "data", "becomes"), ACTIONS, ids=[a[0] for a in ACTIONS])
def test_actions_by_role(cpu, team, page_client, role, action, path, data, becomes):
    make_state(cpu, status="stopped" if action == "up" else "up")
    response = page_client(team.by_role[role]).submit(path, data)
    assert response.status_code == expected(role, "writer", 302)
    state = ClusterState.objects.get(resource=cpu)
    if response.status_code == 302:
        assert response["Location"] == CPU
        if becomes:
            assert state.status == becomes
        else:
            assert state.autostop_mins == 45
        actor = team.by_role[role].username
        assert AuditEvent.objects.filter(action=f"cluster.{action}", actor_username=actor).exists()
    else:
        assert state.status == ("stopped" if action == "up" else "up")
        assert state.autostop_mins is None
        assert not AuditEvent.objects.filter(action__startswith="cluster.").exists()


@pytest.mark.parametrize("path", [a[1] for a in ACTIONS])
def test_every_cluster_form_needs_its_csrf_token(cpu, team, page_client, path):
    make_state(cpu, status="up")
    response = page_client(team.alice).post(path, {"autostop_mins": "5"})
    assert response.status_code == 403
    state = ClusterState.objects.get(resource=cpu)
    assert state.status == "up" and state.autostop_mins is None


# Doing things, with htmx ------------------------------------------------------------


def test_up_with_htmx_returns_the_refreshed_panel(cpu, team, page_client):
    response = page_client(team.wendy).submit(f"{CPU}/-/cluster/up", **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert html.startswith('<section id="cluster-runtime"')
    assert "Asked for /alice/cpu to come up." in html and 'role="status"' in html
    assert "status-busy" in html and ">provisioning</span>" in html and "every 2s" in html
    assert "wendy asked for the cluster to come up." in html  # the event, at once
    assert ClusterState.objects.get(resource=cpu).status == "provisioning"


def test_up_while_stopping_says_why_not(cpu, team, page_client):
    make_state(cpu, status="stopping")
    client = page_client(team.alice)
    response = client.submit(f"{CPU}/-/cluster/up", **HTMX)
    assert response.status_code == 422
    assert 'role="alert"' in response.content.decode()
    assert "is stopping; bring it up again once that has finished" in text_of(response)
    without_htmx = client.submit(f"{CPU}/-/cluster/up", follow=True)
    assert "is stopping; bring it up again" in text_of(without_htmx)
    assert ClusterState.objects.get(resource=cpu).status == "stopping"


@pytest.mark.parametrize(("typed", "stored", "said"), [
    ("45", 45, "now stops after 45 idle minutes"),
    ("1", 1, "now stops after 1 idle minute"),
    ("-1", -1, "no longer stops when idle"),
])
def test_set_autostop(cpu, team, page_client, typed, stored, said):
    response = page_client(team.alice).submit(f"{CPU}/-/cluster/autostop",
                                              {"autostop_mins": typed}, **HTMX)
    assert response.status_code == 200 and said in text_of(response)
    assert ClusterState.objects.get(resource=cpu).autostop_mins == stored


@pytest.mark.parametrize("typed", ["", "soon", "-5", "2.5", "99999999", "600000"])
def test_bad_autostop_is_refused_where_it_was_typed(cpu, team, page_client, typed):
    make_state(cpu)
    response = page_client(team.alice).submit(f"{CPU}/-/cluster/autostop",
                                              {"autostop_mins": typed}, **HTMX)
    assert response.status_code == 422
    html = response.content.decode()
    assert 'aria-invalid="true"' in html and 'id="autostop-error"' in html
    assert f'value="{typed}"' in html and "or -1 for never" in text_of(response)
    assert ClusterState.objects.get(resource=cpu).autostop_mins is None


def test_teardown_asks_first(cpu, team, page_client):
    make_state(cpu, status="up")
    client = page_client(team.wendy)
    page = client.get(f"{CPU}/-/cluster/teardown")
    assert page.status_code == 200
    text = text_of(page)
    assert "Tear down /alice/cpu?" in text and "its 2 calls in flight fail" in text
    assert ClusterState.objects.get(resource=cpu).status == "up"  # looking changes nothing
    done = client.submit(f"{CPU}/-/cluster/teardown", follow=True)
    assert "Asked for /alice/cpu to be torn down." in text_of(done)
    assert ClusterState.objects.get(resource=cpu).status == "terminating"
    assert page_client(team.rita).get(f"{CPU}/-/cluster/teardown").status_code == 403
    assert page_client(team.sam).get(f"{CPU}/-/cluster/teardown").status_code == 404


# Queries ------------------------------------------------------------------------------


def _queries(client, path: str, **extra) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path, **extra)
    assert response.status_code == 200, path
    return len(queries)


@pytest.mark.parametrize(("path", "extra", "most"), [
    (CPU, {}, 6),
    (f"{CPU}/-/cluster", HTMX, 5),
    (f"{CPU}/-/cluster/teardown", {}, 5),
])
def test_queries_do_not_grow_with_the_event_log(cpu, team, page_client, path, extra, most):
    client = page_client(team.rita if "teardown" not in path else team.wendy)
    state = make_state(cpu, events=2)
    few = _queries(client, path, **extra)
    ClusterEvent.objects.bulk_create(
        ClusterEvent(cluster=state, kind="daemon.log", data={"lines": [f"line {n}"] * 5, "n": n})
        for n in range(300)
    )
    many = _queries(client, path, **extra)
    assert few == many <= most


# Cloud clusters (the skypilot backend) ----------------------------------------------


def test_a_cloud_cluster_shows_what_it_costs(team, page_client):
    gpu = ResourceFactory(owner=team.alice, name="gpu", type="cluster",
                          config={"provider": "aws", "instance_type": "A10G:1"})
    make_state(gpu, backend="skypilot", status_changed_at=timezone.now(), handles={"cost": {
        "cloud": "aws", "region": "us-east-1", "zone": "us-east-1a",
        "instance_type": "g5.xlarge", "use_spot": True, "hourly_price": 0.3021,
        "num_nodes": 2}})
    text = text_of(page_client(team.alice).get("/alice/gpu"))
    assert "Instance type g5.xlarge, 2 nodes" in text
    assert "Where aws / us-east-1 / us-east-1a" in text
    assert "Spot yes" in text and "Hourly price $0.30 per hour" in text
    assert "Uptime 0 min" in text
    assert "tears it down" not in text  # aws can stop and keep machines
    # A price SkyPilot does not know says so; a stopped cluster has no uptime.
    ClusterState.objects.filter(resource=gpu).update(status="stopped", handles={"cost": {
        "cloud": "aws", "instance_type": "g5.xlarge", "hourly_price": None}})
    text = text_of(page_client(team.alice).get("/alice/gpu"))
    assert "Hourly price unknown" in text and "Uptime not running" in text


def test_a_kubernetes_cluster_says_stop_tears_it_down(team, page_client):
    k8s = ResourceFactory(owner=team.alice, name="k8s", type="cluster",
                          config={"provider": "kubernetes"})
    make_state(k8s, backend="skypilot")
    text = text_of(page_client(team.alice).get("/alice/k8s"))
    assert "Stop (tears down)" in text
    assert "Stopping this cluster tears it down" in text
    # A local cluster says nothing of the kind, nor any cost.
    cpu = ResourceFactory(owner=team.alice, name="cpu2", type="cluster",
                          config={"provider": "local"})
    make_state(cpu)
    text = text_of(page_client(team.alice).get("/alice/cpu2"))
    assert "tears it down" not in text and "Hourly price" not in text
