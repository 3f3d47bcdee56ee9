"""The beat sweep: idle clusters stop (never one with a call in flight), silent
ones become unreachable until a heartbeat arrives, lost starts fail."""

from __future__ import annotations

import threading
from datetime import timedelta

from django.utils import timezone

from compute import services, tasks
from compute.models import ClusterState
from den.node.caller import NodeClient
from registry.models import AuditEvent
from tests.compute.conftest import node_processes, state_of, wait_for, wait_status
from tests.compute.remote_fns import nap
from tests.conftest import TokenClient


def test_idle_sweep_stops_idle_cluster_and_spares_busy_one(up_cluster, celery_worker, people,
                                                           settings):
    settings.DEN_CLUSTER_HEARTBEAT_TIMEOUT = 3600  # this test travels in time
    alice = people["users"]["alice"]
    idle, busy = up_cluster("idle"), up_cluster("busy")
    for resource in (idle, busy):
        services.cluster_set_autostop(actor=alice, resource=resource, autostop_mins=1)
    never = up_cluster("never")  # autostop -1 (the default): never stopped

    busy_url = state_of(busy).daemon_url
    with NodeClient(busy_url, token=people["tokens"]["alice"], stream=None) as client:
        client.put_function("nap", nap)
        call = threading.Thread(target=client.call, args=("nap",), kwargs={"args": (6,)})
        call.start()
        try:
            wait_for(lambda: state_of(busy).calls_in_flight == 1, 10,
                     what="a heartbeat reporting the call in flight")
            later = timezone.now() + timedelta(minutes=2)
            counts = services.cluster_sweep(now=later)
            assert counts["autostopped"] == 1
            assert state_of(busy).status == "up"
            assert state_of(never).status == "up"
            wait_status(idle, "stopped", worker=celery_worker)
            wait_for(lambda: not node_processes(celery_worker.cluster_dir(idle)), 10,
                     what="the idle daemon to exit")
            assert AuditEvent.objects.filter(resource_id=idle.pk, action="cluster.autostop",
                                             actor=None).exists()
            # Sweeping again changes nothing.
            assert services.cluster_sweep(now=later)["autostopped"] == 0
        finally:
            call.join()
    assert state_of(busy).status == "up"


def test_silent_cluster_becomes_unreachable_until_a_heartbeat(make_cluster, people, settings):
    settings.DEN_CLUSTER_HEARTBEAT_TIMEOUT = 60
    cpu = make_cluster("quiet")
    long_ago = timezone.now() - timedelta(minutes=5)
    ClusterState.objects.create(resource=cpu, status="up", last_heartbeat_at=long_ago,
                                daemon_url="http://127.0.0.1:9")
    assert tasks.sweep_clusters.apply().get()["unreachable"] == 1
    assert state_of(cpu).status == "unreachable"

    plain = services._mint_cluster_token(state_of(cpu), state_of(cpu).request_seq)
    daemon = TokenClient().as_token(plain)
    response = daemon.post(f"/api/v1/resources{cpu.address}/-/cluster/heartbeat",
                           {"last_activity": timezone.now().isoformat(), "calls_in_flight": 0,
                            "objects": 2}, format="json")
    assert response.status_code == 204, response.content
    state = state_of(cpu)
    assert state.status == "up" and state.objects_count == 2
    assert AuditEvent.objects.filter(resource_id=cpu.pk, action="cluster.reachable").exists()
    # The cluster's token works for nothing else.
    assert daemon.get(f"/api/v1/resources{cpu.address}").status_code == 403
    assert daemon.get(f"/api/v1/resources{cpu.address}/-/cluster").status_code == 403
    assert daemon.get("/api/v1/me").status_code == 403
    assert daemon.get("/api/v1/auth/check").status_code == 200
    other = make_cluster("other")
    assert daemon.get(f"/api/v1/auth/check?address={other.address}").status_code == 404
    assert daemon.post(f"/api/v1/resources{other.address}/-/cluster/heartbeat", {},
                       format="json").status_code == 404


def test_a_lost_start_fails(make_cluster, people, settings):
    settings.DEN_CLUSTER_START_TIMEOUT = 10
    cpu = make_cluster("lost")
    state = ClusterState.objects.create(resource=cpu, status="starting", claimed_by="gone")
    ClusterState.objects.filter(pk=state.pk).update(
        status_changed_at=timezone.now() - timedelta(minutes=1))
    assert services.cluster_sweep()["failed"] == 1
    assert state_of(cpu).status == "failed"
    assert "did not finish" in state_of(cpu).message
