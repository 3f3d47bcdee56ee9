"""Clusters den does not manage: a runhouse daemon's status and log posts make
a "reported" cluster, which den shows (in runhouse's cluster list and den's
own API) and whose sweeps never stop, fail or mark it, and which den's
up/stop/teardown refuse."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from compute import services as compute_services
from compute.models import ClusterEvent, ClusterState
from registry.models import AuditEvent
from tests.factories import ResourceFactory, UserFactory, make_token

STATUS = {"daemon_status": "running", "resource_type": "cluster",
          "resource_info": {"server_pid": 1234, "cluster_config": {}}, "processes": {"p": {}}}


@pytest.fixture
def box(db, alice_api):
    from registry.models import User

    alice = User.objects.get(username="alice")
    return ResourceFactory(owner=alice, name="box", type="cluster",
                           config={"provider": "ssh", "ips": ["10.0.0.7"], "autostop_mins": 1})


def test_status_post_records_a_reported_cluster(box, alice_api):
    response = alice_api.post("/rh/resource/alice:box/cluster/status", STATUS, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["data"]["cluster_status"] == "running"
    state = ClusterState.objects.get(resource=box)
    assert (state.backend, state.status, state.objects_count) == ("reported", "up", 1)
    assert state.last_heartbeat_at is not None
    assert AuditEvent.objects.filter(action="cluster.reported").count() == 1
    # Reporting the same status again is a heartbeat, not a new event or audit row.
    alice_api.post("/rh/resource/alice:box/cluster/status", STATUS, format="json")
    assert AuditEvent.objects.filter(action="cluster.reported").count() == 1
    listed = alice_api.get("/rh/resource?resource_type=cluster&owned=True&cluster_status=running"
                           "&daemon_status=running&since=86400&force=False").json()["data"]
    assert [item["name"] for item in listed] == ["/alice/box"]
    assert listed[0]["cluster_status"] == "running" and listed[0]["cluster_status_last_checked"]
    assert alice_api.get("/api/v1/resources/alice/box/-/cluster").json()["status"] == "up"
    # Terminated, as runhouse's teardown reports it.
    alice_api.post("/rh/resource/alice:box/cluster/status",
                   {"daemon_status": "terminated", "resource_type": "cluster", "data": {}},
                   format="json")
    assert ClusterState.objects.get(resource=box).status == "terminated"
    assert alice_api.get("/rh/resource?resource_type=cluster&cluster_status=running"
                         ).json()["data"] == []


def test_sweeps_never_touch_a_reported_cluster(box, alice_api):
    alice_api.post("/rh/resource/alice:box/cluster/status", STATUS, format="json")
    long_ago = timezone.now() - timedelta(days=2)
    ClusterState.objects.filter(resource=box).update(
        last_heartbeat_at=long_ago, last_activity_at=long_ago, status_changed_at=long_ago)
    counts = compute_services.cluster_sweep()
    assert not any(counts.values()), counts
    assert ClusterState.objects.get(resource=box).status == "up"
    ClusterState.objects.filter(resource=box).update(status="starting")
    counts = compute_services.cluster_sweep()
    assert not any(counts.values()), counts


def test_den_does_not_start_or_stop_a_reported_cluster(box, alice_api):
    alice_api.post("/rh/resource/alice:box/cluster/status", STATUS, format="json")
    for action in ("up", "stop", "teardown"):
        response = alice_api.post(f"/api/v1/resources/alice/box/-/cluster/{action}")
        assert response.status_code == 400, (action, response.content)
        assert response.json()["error"]["code"] == "reported_cluster"


def test_a_cluster_den_runs_is_not_overwritten_by_a_report(box, alice_api):
    ClusterState.objects.create(resource=box, status="up", backend="local")
    response = alice_api.post("/rh/resource/alice:box/cluster/status", STATUS, format="json")
    assert response.status_code == 409
    assert ClusterState.objects.get(resource=box).backend == "local"


def test_logs_are_kept_as_events(box, alice_api):
    body = {"file_name": "server.log", "logs": "line 1\nline 2", "start_line": 0, "end_line": 1}
    early = alice_api.post("/rh/resource/alice:box/logs", body, format="json")
    assert early.status_code == 400  # nothing reported yet: not a runhouse cluster
    alice_api.post("/rh/resource/alice:box/cluster/status", STATUS, format="json")
    assert alice_api.post("/rh/resource/alice:box/logs", body, format="json").status_code == 200
    event = ClusterEvent.objects.get(kind="log")
    assert event.message == "line 1\nline 2" and event.data == {"file_name": "server.log"}


@pytest.mark.parametrize("body, field", [
    ({"daemon_status": "sleeping"}, "daemon_status"),
    ([1, 2], "body"),
])
def test_bad_status_posts_name_the_field_and_change_nothing(box, alice_api, body, field):
    response = alice_api.post("/rh/resource/alice:box/cluster/status", body, format="json")
    assert response.status_code == 400 and response.json()["error"]["field"] == field
    assert not ClusterState.objects.filter(resource=box).exists()


def test_status_posts_need_write_access(box, api):
    reader = UserFactory(username="rita")
    from registry.models import AccessGrant, AccessLevel

    AccessGrant.objects.create(resource=box, user=reader, level=AccessLevel.READ)
    api.as_token(make_token(reader))
    assert api.post("/rh/resource/alice:box/cluster/status", STATUS,
                    format="json").status_code == 403
