"""ssh clusters on real sshd hosts (tests/sshhosts.py), through the service and
a real Celery worker, as the API drives them."""

from __future__ import annotations

import httpx

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
