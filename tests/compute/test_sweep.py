"""The beat sweep: idle clusters stop (never one with a call in flight), silent
ones become unreachable until a heartbeat arrives, lost starts fail."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from django.utils import timezone

from compute import services, tasks
from compute.models import ClusterEvent, ClusterState
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


def test_autostop_never_stops_a_call_that_began_after_the_last_heartbeat(
        up_cluster, celery_worker, people, settings):
    """den's view of a daemon is a heartbeat old: a call that began since is
    invisible to the sweep. The daemon, asked to stop, says it is busy."""
    settings.DEN_CLUSTER_HEARTBEAT_TIMEOUT = 3600  # this test travels in time
    alice = people["users"]["alice"]
    cpu = up_cluster("racy")
    services.cluster_set_autostop(actor=alice, resource=cpu, autostop_mins=1)
    url = state_of(cpu).daemon_url
    with NodeClient(url, token=people["tokens"]["alice"], stream=None) as client:
        client.put_function("nap", nap)
        results: list[object] = []

        def call() -> None:
            try:
                results.append(client.call("nap", args=(3,)))
            except Exception as exc:
                results.append(exc)

        thread = threading.Thread(target=call)
        thread.start()
        try:
            time.sleep(0.3)  # the call is running on the daemon ...
            # ... but den last heard "idle": as if no heartbeat came since it began.
            ClusterState.objects.filter(resource=cpu).update(calls_in_flight=0)
            later = timezone.now() + timedelta(minutes=2)
            services.cluster_sweep(now=later)
        finally:
            thread.join(20)
    assert results == [3], results
    assert state_of(cpu).status == "up"
    assert ClusterEvent.objects.filter(cluster=state_of(cpu), kind="autostop.spared").exists()
    # Idle for real now: asked again, the daemon stops taking calls and den stops it.
    wait_for(lambda: ClusterState.objects.filter(
        resource=cpu, calls_in_flight=0, autostop_requested_at__isnull=True).exists(), 10,
        what="a heartbeat reporting no call in flight")
    assert services.cluster_sweep(now=timezone.now() + timedelta(minutes=2))["autostopped"] == 1
    wait_status(cpu, "stopped", worker=celery_worker)


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
    assert response.status_code == 200, response.content
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
