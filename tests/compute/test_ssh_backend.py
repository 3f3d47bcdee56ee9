"""ssh clusters on real sshd hosts (tests/sshhosts.py), through the service and
a real Celery worker, as the API drives them."""

from __future__ import annotations

import httpx
import pytest

from compute import services
from compute.models import ClusterEvent
from den.node.pinning import pinned_context
from tests.compute.conftest import state_of, wait_status


def _daemons(host) -> dict[int, list[str]]:
    return {pid: args for pid, args in host.processes().items() if "den.node" in args}


def test_two_hosts_up_stop_up_teardown(ssh_cluster, ssh_site, people, celery_worker):
    alice = people["users"]["alice"]
    cluster = ssh_cluster("box")
    services.cluster_request_up(actor=alice, resource=cluster)
    state = wait_status(cluster, "up", timeout=90, worker=celery_worker)
    nodes = state.handles["nodes"]
    assert [n["host"] for n in nodes] == [h.ip for h in ssh_site.hosts]
    assert state.daemon_url == nodes[0]["url"] and state.daemon_url.startswith("https://")
    for host, node in zip(ssh_site.hosts, nodes, strict=True):
        assert len(_daemons(host)) == 1
        context = pinned_context(state.handles["tls_cert"], node["tls_fingerprint"])
        assert httpx.get(node["url"] + "/health", verify=context).json()["pid"] == node["pid"]
    kinds = list(ClusterEvent.objects.filter(cluster=state).values_list("kind", flat=True))
    assert kinds.count("host_key.trusted") == 2 and kinds.count("daemon.log") == 2

    services.cluster_request_stop(actor=alice, resource=cluster)
    wait_status(cluster, "stopped", timeout=60, worker=celery_worker)
    assert not any(_daemons(h) for h in ssh_site.hosts)
    assert all((h.home / ".den").exists() for h in ssh_site.hosts)  # stop keeps den's files

    services.cluster_request_up(actor=alice, resource=cluster)
    wait_status(cluster, "up", timeout=60, worker=celery_worker)
    assert [len(_daemons(h)) for h in ssh_site.hosts] == [1, 1]

    services.cluster_request_teardown(actor=alice, resource=cluster)
    wait_status(cluster, "terminated", timeout=60, worker=celery_worker)
    assert not any(_daemons(h) for h in ssh_site.hosts)
    assert [h.files() for h in ssh_site.hosts] == [[], []]
    assert state_of(cluster).host_keys  # the machines are the same: keys stay trusted


@pytest.fixture
def in_process(settings, celery_worker, live_server):
    """Tasks run in this process: its daemons' den is the live server."""
    settings.DEN_CLUSTER_DEN_URL = live_server.url
    settings.DEN_CLUSTER_HEARTBEAT_SECONDS = 0.5


def test_ssh_tasks_twice_do_their_work_once(in_process, ssh_cluster, ssh_site, people, outbox,
                                            monkeypatch):
    """As tests/compute/test_tasks.py does for local clusters: every message
    delivered twice (and duplicated), run in this process on the ssh backend."""
    from compute.backends import ssh
    from tests.compute.test_tasks import _bring_up, _events

    monkeypatch.setattr(ssh, "_INLINE_WAIT_SECONDS", 0)
    alice = people["users"]["alice"]
    box = ssh_cluster("twice-ssh")
    state = _bring_up(outbox, box, alice)
    assert state.status == "up" and _events(box, "daemon.started") == 2
    assert [list(_daemons(h)) for h in ssh_site.hosts] == [[n["pid"]] for n in
                                                           state.handles["nodes"]]
    services.cluster_request_stop(actor=alice, resource=box)
    task, args, _ = outbox.take("compute.cluster_stop")
    assert task.apply(args=args, task_id="stop-1").get() == "done"
    assert task.apply(args=args, task_id="stop-1").get() == "skipped"
    assert _events(box, "daemon.stopped") == 2
    assert not any(_daemons(h) for h in ssh_site.hosts)
    services.cluster_request_teardown(actor=alice, resource=box)
    task, args, _ = outbox.take("compute.cluster_teardown")
    assert task.apply(args=args, task_id="down-1").get() == "done"
    assert task.apply(args=args, task_id="down-1").get() == "skipped"
    assert [h.files() for h in ssh_site.hosts] == [[], []]


def test_deleting_an_up_cluster_releases_its_hosts(ssh_cluster, ssh_site, people, celery_worker):
    from registry.services import resource_delete
    from tests.compute.conftest import wait_for

    alice = people["users"]["alice"]
    box = ssh_cluster("deleted")
    services.cluster_request_up(actor=alice, resource=box)
    wait_status(box, "up", timeout=90, worker=celery_worker)
    resource_delete(actor=alice, resource=box)
    wait_for(lambda: not any(_daemons(h) for h in ssh_site.hosts), 60,
             what="the deleted cluster's daemons to stop")
    wait_for(lambda: [h.files() for h in ssh_site.hosts] == [[], []], 30,
             what="den's files to go")


def test_a_subclass_gives_the_hosts_and_key(in_process, ssh_cluster, ssh_site, people, outbox,
                                            monkeypatch):
    """What the SkyPilot backend does: override SshBackend.hosts with machines
    and a key from elsewhere. The cluster has no creds secret at all, so
    every step (start, health, logs, stop, teardown) must go through it."""
    from compute import backends
    from compute.backends import ssh
    from compute.backends.bootstrap import SshHost
    from compute.models import ClusterState
    from tests.compute.test_tasks import _bring_up, _events

    asked: list[tuple[str, bool]] = []

    class Given(ssh.SshBackend):
        def hosts(self, cluster_key, handles=None):
            asked.append((cluster_key, handles is not None))
            pinned = ClusterState.objects.get(resource_id=int(cluster_key)).host_keys or {}
            return [SshHost(host=h.ip, port=h.port, user=h.user, private_key=h.private_key_pem,
                            host_key=pinned.get(h.ip)) for h in ssh_site.hosts]

    backends._load_builtin()
    monkeypatch.setitem(backends._BACKENDS, "ssh", Given)
    monkeypatch.setattr(ssh, "_INLINE_WAIT_SECONDS", 0)
    alice = people["users"]["alice"]
    box = ssh_cluster("given", creds=None)
    state = _bring_up(outbox, box, alice)
    assert state.status == "up" and _events(box, "daemon.started") == 2
    assert sorted(state.host_keys) == sorted(h.ip for h in ssh_site.hosts)
    assert {key for key, _ in asked} == {str(box.pk)} and (str(box.pk), True) in asked
    services.cluster_request_stop(actor=alice, resource=box)
    task, args, _ = outbox.take("compute.cluster_stop")
    assert task.apply(args=args, task_id="stop-g").get() == "done"
    assert not any(_daemons(h) for h in ssh_site.hosts)
    services.cluster_request_teardown(actor=alice, resource=box)
    task, args, _ = outbox.take("compute.cluster_teardown")
    assert task.apply(args=args, task_id="down-g").get() == "done"
    assert [h.files() for h in ssh_site.hosts] == [[], []]
