"""Cloud clusters through the skypilot backend, on the suite's fake cloud
(tests/compute/fake_cloud.py: SkyPilot replaced at den's adapter boundary, and
only there). Everything after the adapter is real: a Celery worker polls the
request ids across tasks, SkyPilot's logs stream into the cluster's events,
den's daemons start on the machines and take calls, stop and down go through
SkyPilot, and the sweeps reconcile and catch orphans."""

from __future__ import annotations

import io
import json
import time

import pytest

from compute import services
from compute.backends import skypilot
from compute.models import ClusterEvent
from compute.skypilot_sweep import cluster_sweep_skypilot
from den.node.caller import NodeClient
from registry import services as registry_services
from registry.models import AuditEvent, Resource
from registry.services import audit_record
from tests.celery_worker import FAKE_CLOUD_ADAPTER, SKY_PREFIX
from tests.compute.conftest import node_processes, state_of, wait_for, wait_status
from tests.compute.fake_cloud import FakeCloud
from tests.compute.remote_fns import add
from tests.conftest import TokenClient


@pytest.fixture
def cloud(celery_worker, settings):
    """The fake cloud, reset, with the test process set up as the worker is
    (the sweeps run in it)."""
    settings.DEN_SKYPILOT_ADAPTER = FAKE_CLOUD_ADAPTER
    settings.DEN_SKYPILOT_CLUSTER_PREFIX = SKY_PREFIX
    settings.DEN_SKYPILOT_BOOTSTRAP = "local"
    FakeCloud.reset()
    FakeCloud.configure(seconds=1.0)
    yield FakeCloud
    FakeCloud.reset()


def _kinds(resource: Resource) -> list[str]:
    return list(ClusterEvent.objects.filter(cluster__resource=resource).order_by("id")
                .values_list("kind", flat=True))


def _event(resource: Resource, kind: str) -> ClusterEvent:
    return ClusterEvent.objects.filter(cluster__resource=resource, kind=kind).order_by("id").last()


def _sky_name(resource: Resource) -> str:
    return skypilot.cluster_name(str(resource.pk))


def _den_cli(url: str, token: str, *argv: str) -> tuple[int, str]:
    from den import cli
    from den.client import session as den_session

    out, err = io.StringIO(), io.StringIO()
    den_session.reset()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DEN_URL", url)
        patch.setenv("DEN_TOKEN", token)
        code = cli.main(list(argv), stdout=out, stderr=err)
    den_session.reset()
    return code, out.getvalue() + err.getvalue()


def test_a_cloud_cluster_comes_up_takes_calls_stops_and_goes(cloud, celery_worker,
                                                             make_cluster, people,
                                                             live_server):
    gpu = make_cluster("gpu", provider="aws", instance_type="A10G:1", region="us-east-1",
                       use_spot=True, autostop_mins=30)
    api = TokenClient().as_token(people["tokens"]["alice"])
    base = f"/api/v1/resources{gpu.address}/-/cluster"
    assert api.get(base).json()["stop_tears_down"] is False
    assert api.post(f"{base}/up").status_code == 202

    state = wait_status(gpu, "up", timeout=60, worker=celery_worker)
    name = _sky_name(gpu)
    seen = cloud.snapshot()
    launches = [r for r in seen["requests"].values() if r["name"] == "sky.launch"]
    assert [r["cluster"] for r in launches] == [name]
    # The launch's request id was kept on the state, and its logs became events.
    assert state.handles["launch_request"] == launches[0]["id"]
    assert _event(gpu, "launch.requested").data["request_id"] == launches[0]["id"]
    logs = "\n".join(e.message for e in ClusterEvent.objects.filter(
        cluster__resource=gpu, kind="sky.log"))
    assert "Considered resources" in logs and "Launching instances" in logs
    assert _kinds(gpu).index("provisioned") < _kinds(gpu).index("up")
    # SkyPilot's backstop autostop, 30 minutes after den's own.
    assert launches[0]["body"]["autostop"] == 30 + 30
    assert seen["clusters"][name]["labels"] == {"den-cluster": str(gpu.pk)}

    # What it costs, on the API (and so on the page and in `den cluster status`).
    cost = api.get(base).json()["cost"]
    assert cost["instance_type"] == "fake-g5-xlarge" and cost["region"] == "us-east-1"
    assert cost["use_spot"] is True and cost["hourly_price"] == pytest.approx(1.01 * 0.3)
    assert cost["uptime_seconds"] >= 0

    with NodeClient(state.daemon_url, token=people["tokens"]["alice"], stream=None) as node:
        node.put_function("add", add)
        assert node.call("add", args=(2, 3)) == 5

    # ... and in `den cluster status`, through the live server.
    code, out = _den_cli(live_server.url, people["tokens"]["alice"], "cluster", "status",
                         gpu.address)
    assert code == 0, out
    assert f"{gpu.address}  up" in out and "backend:       skypilot" in out
    assert "instance type: fake-g5-xlarge" in out and "where:         aws / us-east-1" in out
    assert "spot:          yes" in out and "hourly price:  $0.30" in out
    assert "uptime:" in out and "autostop:      30 idle min" in out
    code, out = _den_cli(live_server.url, people["tokens"]["alice"], "cluster", "status",
                         gpu.address, "--json")
    assert json.loads(out)["cost"]["instance_type"] == "fake-g5-xlarge"

    assert api.post(f"{base}/stop").status_code == 202
    wait_status(gpu, "stopped", timeout=40, worker=celery_worker)
    assert cloud.snapshot()["clusters"][name]["status"] == "STOPPED"
    assert not node_processes(celery_worker.cluster_root / f"{gpu.pk}-n0")

    # Up again: SkyPilot restarts the same machines (no new ones).
    assert api.post(f"{base}/up").status_code == 202
    wait_status(gpu, "up", timeout=60, worker=celery_worker)
    assert cloud.snapshot()["machines_made"] == 1

    assert api.post(f"{base}/teardown").status_code == 202
    wait_status(gpu, "terminated", timeout=40, worker=celery_worker)
    assert name not in cloud.snapshot()["clusters"]
    assert not node_processes(celery_worker.cluster_root / f"{gpu.pk}-n0")
    assert api.get(base).json()["cost"] is None


def test_multi_node_gets_a_daemon_per_node(cloud, celery_worker, make_cluster, people):
    pool = make_cluster("pool", provider="gcp", instance_type="CPU:2", num_nodes=2)
    services.cluster_request_up(actor=people["users"]["alice"], resource=pool)
    state = wait_status(pool, "up", timeout=60, worker=celery_worker)
    body = TokenClient().as_token(people["tokens"]["alice"]).get(
        f"/api/v1/resources{pool.address}/-/cluster").json()
    assert len(body["nodes"]) == 2 and body["nodes"][0]["url"] == state.daemon_url
    assert len({n["url"] for n in body["nodes"]}) == 2
    services.cluster_request_teardown(actor=people["users"]["alice"], resource=pool)
    wait_status(pool, "terminated", timeout=40, worker=celery_worker)


def test_kubernetes_stop_is_a_teardown_and_says_so(cloud, celery_worker, make_cluster,
                                                   people):
    k8s = make_cluster("k8s", provider="kubernetes", instance_type="CPU:2")
    api = TokenClient().as_token(people["tokens"]["alice"])
    base = f"/api/v1/resources{k8s.address}/-/cluster"
    assert api.get(base).json()["stop_tears_down"] is True
    api.post(f"{base}/up")
    wait_status(k8s, "up", timeout=60, worker=celery_worker)
    api.post(f"{base}/stop")
    wait_status(k8s, "terminated", timeout=40, worker=celery_worker)
    assert "stop.teardown" in _kinds(k8s)
    seen = cloud.snapshot()
    assert _sky_name(k8s) not in seen["clusters"]
    assert not [r for r in seen["requests"].values() if r["name"] == "sky.stop"]


@pytest.mark.parametrize(("config", "behaviour", "says"), [
    ({"provider": "aws"}, {"no_access": ["aws"]}, "SkyPilot has no credentials"),
    ({"provider": "gcp", "instance_type": "H900:8"}, {}, "SkyPilot cannot place H900:8"),
    ({"provider": "aws", "instance_type": "A100:1", "region": "us-west-2"},
     {"quota": ["A100:1"]}, "The cloud refused A100:1 in us-west-2 for lack of quota"),
    ({"provider": "aws", "instance_type": "A10G:1", "region": "eu-north-1"},
     {"no_capacity": ["eu-north-1"]}, "No cloud had capacity for A10G:1 in eu-north-1"),
])
def test_errors_fail_the_start_with_one_sentence(cloud, celery_worker, make_cluster, people,
                                                 config, behaviour, says):
    cloud.configure(**behaviour)
    cluster = make_cluster(f"bad-{config['provider']}-{len(behaviour)}-{config.get('region', '')}",
                           **config)
    started = time.monotonic()
    services.cluster_request_up(actor=people["users"]["alice"], resource=cluster)
    state = wait_status(cluster, "failed", timeout=60)
    assert time.monotonic() - started < 60
    assert state.message.startswith(says), state.message
    assert state.message.count(". ") == 0 and state.message.endswith(".")
    failed = _event(cluster, "failed")
    assert failed.message == state.message and failed.data["error_kind"]
    # Nothing billed is left behind.
    assert _sky_name(cluster) not in cloud.snapshot()["clusters"]


def test_a_worker_killed_while_the_launch_is_pending_resumes_from_its_request_id(
        cloud, celery_worker, make_cluster, people):
    cloud.configure(seconds=8.0)
    alice = people["users"]["alice"]
    gpu = make_cluster("lost-launch", provider="aws", instance_type="A10G:1")
    services.cluster_request_up(actor=alice, resource=gpu)
    try:
        wait_for(lambda: state_of(gpu).handles.get("launch_request"), 30, interval=0.05,
                 what="the launch's request id on the state")
        celery_worker.kill()
        request_id = state_of(gpu).handles["launch_request"]
        time.sleep(4)  # unacknowledged for longer than the new worker's visibility timeout
        celery_worker.start(DEN_CELERY_VISIBILITY_TIMEOUT="3")
        state = wait_status(gpu, "up", timeout=60, worker=celery_worker)
    finally:
        celery_worker.stop()
        celery_worker.start()
    assert state.handles["launch_request"] == request_id
    seen = cloud.snapshot()
    assert [r["id"] for r in seen["requests"].values() if r["name"] == "sky.launch"] \
        == [request_id]
    assert list(seen["clusters"]) == [_sky_name(gpu)] and seen["machines_made"] == 1
    services.cluster_request_teardown(actor=alice, resource=gpu)
    wait_status(gpu, "terminated", timeout=40, worker=celery_worker)


def _wait_gone(cloud, name: str) -> None:
    def gone() -> bool:
        FakeCloud().clusters()  # lets the fake finish requests whose time has come
        return name not in cloud.snapshot()["clusters"]

    wait_for(gone, 20, what=f"{name} to be torn down")


def test_the_orphan_sweep_tears_down_what_den_no_longer_tracks(
        cloud, celery_worker, make_cluster, people, monkeypatch):
    alice = people["users"]["alice"]
    gpu = make_cluster("deleted-while-up", provider="aws", instance_type="A10G:1")
    services.cluster_request_up(actor=alice, resource=gpu)
    wait_status(gpu, "up", timeout=60, worker=celery_worker)
    name, pk = _sky_name(gpu), gpu.pk
    # The record is deleted while its machines run, and the release that
    # deletion sends is lost (a worker killed with it).
    monkeypatch.setattr(services, "cluster_release_deleted", lambda **kwargs: None)
    Resource.objects.filter(pk=pk).delete()
    cloud.add_cluster(f"{SKY_PREFIX}99999999")  # launched by this den, never tracked
    cloud.add_cluster("den-other-1")  # another den's (another prefix): not ours

    counts = cluster_sweep_skypilot()
    assert counts["orphans"] == 2
    _wait_gone(cloud, name)
    _wait_gone(cloud, f"{SKY_PREFIX}99999999")
    assert "den-other-1" in cloud.snapshot()["clusters"]
    rows = AuditEvent.objects.filter(action="cluster.orphan.teardown")
    assert {r.data["sky_cluster"] for r in rows} == {name, f"{SKY_PREFIX}99999999"}
    assert {r.data["den_status"] for r in rows} == {"deleted"}
    # Its local daemon (den's side) is what the lost release would have stopped.
    for pid in node_processes(celery_worker.cluster_root / f"{pk}-n0"):
        import os
        import signal

        os.killpg(pid, signal.SIGKILL)
    # A second sweep finds nothing more to do.
    assert cluster_sweep_skypilot()["orphans"] == 0


def test_orphans_can_be_flagged_instead(cloud, celery_worker, settings):
    settings.DEN_SKYPILOT_ORPHANS = "flag"
    # This den once launched a cloud cluster (whose record is gone since).
    audit_record(actor=None, action="cluster.up", address="/alice/gone", backend="skypilot")
    cloud.add_cluster(f"{SKY_PREFIX}99999998")
    assert cluster_sweep_skypilot()["flagged"] == 1
    assert cluster_sweep_skypilot()["flagged"] == 1
    assert f"{SKY_PREFIX}99999998" in cloud.snapshot()["clusters"]
    rows = AuditEvent.objects.filter(action="cluster.orphan.flagged")
    assert rows.count() == 1  # flagged once a day, not every sweep
    assert rows.get().data["sky_cluster"] == f"{SKY_PREFIX}99999998"


def test_drift_is_recorded_and_followed(cloud, celery_worker, make_cluster, people):
    alice = people["users"]["alice"]
    one = make_cluster("drift-stopped", provider="aws")
    two = make_cluster("drift-gone", provider="aws")
    for cluster in (one, two):
        services.cluster_request_up(actor=alice, resource=cluster)
    for cluster in (one, two):
        wait_status(cluster, "up", timeout=60, worker=celery_worker)
    # Outside den: one stopped in the cloud's console, the other deleted.
    with __import__("tests.compute.fake_cloud", fromlist=["_locked"])._locked() as data:
        data["clusters"][_sky_name(one)]["status"] = "STOPPED"
        del data["clusters"][_sky_name(two)]
    assert cluster_sweep_skypilot()["drift"] == 2
    assert "stopped outside den" in _event(one, "drift").message
    assert "no longer has this cluster" in _event(two, "drift").message
    wait_status(one, "stopped", timeout=40, worker=celery_worker)
    wait_status(two, "terminated", timeout=40, worker=celery_worker)
    assert cluster_sweep_skypilot()["drift"] == 0
    services.cluster_request_teardown(actor=alice, resource=one)
    wait_status(one, "terminated", timeout=40, worker=celery_worker)


def test_the_extra_and_the_test_venv_pin_the_same_skypilot():
    import tomllib
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    extra = tomllib.loads((repo / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["skypilot"]
    pinned = (repo / "tests/compute/skypilot-requirements.txt").read_text().split()
    assert extra == pinned == ["skypilot==0.14.1"]
    # ... and the server extra does not pull it in: den works fully without it.
    server = tomllib.loads((repo / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["server"]
    assert not [r for r in server if r.lower().startswith("skypilot")]


@pytest.mark.parametrize(("instance_type", "fields"), [
    ("A10G:1", {"accelerators": "A10G:1"}),
    ("A100:8", {"accelerators": "A100:8"}),
    ("CPU:32+", {"cpus": "32+"}),
    ("cpu:4", {"cpus": "4"}),
    ("MEM:64+", {"memory": "64+"}),
    ("p3.2xlarge", {"instance_type": "p3.2xlarge"}),
    ("", {}),
])
def test_instance_types_become_skypilot_resources(instance_type, fields):
    from compute.backends.skypilot_adapter import resource_fields

    assert resource_fields(instance_type) == fields


def test_den_knows_its_own_cluster_names(settings):
    settings.DEN_SKYPILOT_CLUSTER_PREFIX = "den-abc123-"
    assert skypilot.cluster_name("42") == "den-abc123-42"
    assert skypilot.cluster_key_of("den-abc123-42") == "42"
    assert skypilot.cluster_key_of("den-zzz999-42") is None  # another den's
    assert skypilot.cluster_key_of("den-abc123-42-extra") is None
    assert skypilot.cluster_key_of("my-own-cluster") is None


class _NoSkyPilotHere:
    def __init__(self) -> None:
        raise AssertionError("the sweep asked SkyPilot")


def test_a_den_that_never_launched_a_cloud_cluster_never_asks_skypilot(db, settings):
    settings.DEN_SKYPILOT_ADAPTER = f"{__name__}:_NoSkyPilotHere"
    assert cluster_sweep_skypilot() == {"orphans": 0, "flagged": 0, "drift": 0}


def test_autostop_stops_an_idle_cloud_cluster_and_spares_a_busy_one(
        cloud, celery_worker, make_cluster, people, settings):
    """den's sweep asks, the daemon agrees only when no call runs, and the stop
    goes to SkyPilot (sky.stop): nothing stays billed, nothing is cut mid-call."""
    from datetime import timedelta

    from django.utils import timezone

    from tests.compute.remote_fns import nap

    settings.DEN_CLUSTER_HEARTBEAT_TIMEOUT = 3600  # this test travels in time
    alice = people["users"]["alice"]
    idle = make_cluster("sky-idle", provider="aws", autostop_mins=1)
    busy = make_cluster("sky-busy", provider="aws", autostop_mins=1)
    for cluster in (idle, busy):
        services.cluster_request_up(actor=alice, resource=cluster)
    for cluster in (idle, busy):
        wait_status(cluster, "up", timeout=60, worker=celery_worker)
    with NodeClient(state_of(busy).daemon_url, token=people["tokens"]["alice"],
                    stream=None) as client:
        client.put_function("nap", nap)
        import threading

        call = threading.Thread(target=client.call, args=("nap",), kwargs={"args": (6,)})
        call.start()
        try:
            wait_for(lambda: state_of(busy).calls_in_flight == 1, 15,
                     what="a heartbeat reporting the call in flight")
            later = timezone.now() + timedelta(minutes=2)
            assert services.cluster_sweep(now=later)["autostopped"] == 1
            wait_status(idle, "stopped", timeout=40, worker=celery_worker)
            assert state_of(busy).status == "up"
        finally:
            call.join()
    seen = cloud.snapshot()["clusters"]
    assert seen[_sky_name(idle)]["status"] == "STOPPED"
    assert seen[_sky_name(busy)]["status"] == "UP"
    for cluster in (idle, busy):
        services.cluster_request_teardown(actor=alice, resource=cluster)
    for cluster in (idle, busy):
        wait_status(cluster, "terminated", timeout=40, worker=celery_worker)


def test_deleting_a_running_cloud_cluster_releases_its_machines(
        cloud, celery_worker, make_cluster, people):
    alice = people["users"]["alice"]
    gpu = make_cluster("deleted", provider="aws", instance_type="A10G:1")
    services.cluster_request_up(actor=alice, resource=gpu)
    wait_status(gpu, "up", timeout=60, worker=celery_worker)
    name = _sky_name(gpu)
    registry_services.resource_delete(actor=alice, resource=gpu)
    _wait_gone(cloud, name)
