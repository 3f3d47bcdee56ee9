"""Faults of ssh clusters on real sshd hosts: each ends in a clear state and an
event that names the host and the cause, never a hang."""

from __future__ import annotations

import time

import pytest

from compute import services
from compute.models import ClusterEvent, ClusterState
from registry import services as registry_services
from tests.compute.conftest import ssh_creds_secret, state_of, wait_for, wait_status
from tests.factories import UserFactory
from tests.sshhosts import _keypair, hosts_available, make_hosts

pytestmark = pytest.mark.skipif(hosts_available() is not None, reason=str(hosts_available()))


def _failed(cluster, worker, timeout: float = 60.0) -> tuple[str, list[ClusterEvent]]:
    state = wait_status(cluster, "failed", timeout=timeout, worker=worker)
    return state.message, list(ClusterEvent.objects.filter(cluster=state).order_by("id"))


def _daemons(host) -> list[int]:
    return [pid for pid, args in host.processes().items() if "den.node" in args]


def test_an_unreachable_host_fails_within_the_start_timeout(ssh_cluster, ssh_site, people,
                                                            celery_worker):
    missing = f"198.18.{ssh_site.index}.250"  # on the site's network, nobody there
    good = ssh_site.hosts[0]
    cluster = ssh_cluster("nowhere", hosts=ssh_site.hosts[:1], ips=[good.ip, missing])
    began = time.monotonic()
    services.cluster_request_up(actor=people["users"]["alice"], resource=cluster)
    message, _ = _failed(cluster, celery_worker, timeout=90)
    assert time.monotonic() - began < 30 + 40  # the test worker's start timeout, plus a sweep
    assert missing in message and "does not answer SSH on port 22" in message
    assert "DEN_CLUSTER_START_TIMEOUT" in message
    # The host that answered got no daemon: none starts unless every host is ready.
    assert not _daemons(good)


def test_a_wrong_key_fails_naming_the_host(ssh_cluster, ssh_site, people, celery_worker):
    alice = people["users"]["alice"]
    wrong = registry_services.resource_create(actor=alice, name="wrong-key", type="secret",
                                              config={"provider": "ssh"})
    registry_services.secret_set_values(actor=alice, resource=wrong, values={
        "private_key": _keypair()[0]})
    cluster = ssh_cluster("wrongkey", hosts=ssh_site.hosts[:1], creds=wrong.address)
    services.cluster_request_up(actor=alice, resource=cluster)
    message, events = _failed(cluster, celery_worker)
    host = ssh_site.hosts[0]
    assert f"{host.ip} refused the cluster's SSH key for user {host.user}" in message
    assert events[-1].kind == "failed" and events[-1].data["host"] == host.ip
    assert not _daemons(host)


def test_a_changed_host_key_is_refused_until_forgotten(ssh_cluster, people, celery_worker,
                                                       api, live_port):
    site = make_hosts(1)
    try:
        site.expose(live_port)
        host = site.hosts[0]
        alice = people["users"]["alice"]
        secret = ssh_creds_secret(alice, host, name="rekey-key")
        cluster = ssh_cluster("rekey", hosts=[host], creds=secret.address)
        services.cluster_request_up(actor=alice, resource=cluster)
        wait_status(cluster, "up", timeout=90, worker=celery_worker)
        first = state_of(cluster).host_keys[host.ip]
        assert first.split()[1] == host.host_key.split()[1]
        services.cluster_request_stop(actor=alice, resource=cluster)
        wait_status(cluster, "stopped", timeout=60, worker=celery_worker)

        host.set_host_key()  # the machine was reinstalled, or it is another one
        services.cluster_request_up(actor=alice, resource=cluster)
        message, _ = _failed(cluster, celery_worker)
        assert f"The SSH host key of {host.ip} changed" in message
        assert "forget-host-key" in message
        assert not _daemons(host)

        # A reader may not forget it; the owner may, through the API.
        response = api.as_token(people["tokens"]["sam"]).post(
            f"/api/v1/resources{cluster.address}/-/cluster/forget-host-key",
            {"host": host.ip}, format="json")
        assert response.status_code == 404
        response = api.as_token(people["tokens"]["alice"]).post(
            f"/api/v1/resources{cluster.address}/-/cluster/forget-host-key",
            {"host": host.ip}, format="json")
        assert response.status_code == 200, response.content
        assert response.json()["host_keys"] == {}
        services.cluster_request_up(actor=alice, resource=cluster)
        wait_status(cluster, "up", timeout=60, worker=celery_worker)
        assert state_of(cluster).host_keys[host.ip].split()[1] == host.host_key.split()[1]
        services.cluster_request_teardown(actor=alice, resource=cluster)
        wait_status(cluster, "terminated", timeout=60, worker=celery_worker)
    finally:
        site.close()


def test_a_host_without_the_venv_module_fails_naming_the_package(ssh_cluster, people,
                                                                 celery_worker):
    site = make_hosts(1, python_without_venv=True)
    try:
        host = site.hosts[0]
        alice = people["users"]["alice"]
        secret = ssh_creds_secret(alice, host, name="novenv-key")
        cluster = ssh_cluster("novenv", hosts=[host], creds=secret.address)
        services.cluster_request_up(actor=alice, resource=cluster)
        message, _ = _failed(cluster, celery_worker)
        assert host.ip in message and "no venv module" in message
        assert "apt-get install python3-venv" in message
        assert not _daemons(host)
    finally:
        site.close()


def test_the_owner_must_still_be_able_to_read_the_creds(ssh_cluster, ssh_site, people,
                                                        celery_worker):
    bob = UserFactory(username="bob")
    secret = ssh_creds_secret(bob, ssh_site.hosts[0], name="bobs-key")
    registry_services.resource_share(actor=bob, resource=secret, users=["alice"], level="read")
    cluster = ssh_cluster("borrowed", hosts=ssh_site.hosts[:1], creds=secret.address)
    registry_services.resource_revoke(actor=bob, resource=secret, who="alice")
    services.cluster_request_up(actor=people["users"]["alice"], resource=cluster)
    message, _ = _failed(cluster, celery_worker)
    assert "may not use config.creds (/bob/bobs-key)" in message
    assert not _daemons(ssh_site.hosts[0])


def test_an_install_survives_its_worker_killed(ssh_cluster, people, celery_worker, live_port):
    site = make_hosts(2)  # fresh hosts: the runtime must be sent and installed
    try:
        site.expose(live_port)
        alice = people["users"]["alice"]
        secret = ssh_creds_secret(alice, site.hosts[0], name="lost-key")
        cluster = ssh_cluster("lost", hosts=site.hosts, creds=secret.address)
        services.cluster_request_up(actor=alice, resource=cluster)
        try:
            wait_for(lambda: ClusterEvent.objects.filter(
                cluster__resource=cluster, kind="host_key.trusted").exists(), 60,
                interval=0.01, what="the connection to the hosts")
            celery_worker.kill()
            assert state_of(cluster).status in ("provisioning", "starting")
            time.sleep(4)  # unacknowledged for longer than the new worker's visibility timeout
            celery_worker.start(DEN_CELERY_VISIBILITY_TIMEOUT="3")
            state = wait_status(cluster, "up", timeout=90, worker=celery_worker)
            for host, node in zip(site.hosts, state.handles["nodes"], strict=True):
                wait_for(lambda h=host, n=node: _daemons(h) == [n["pid"]], 10,
                         what="exactly the one daemon den tracks on each host")
            assert not ClusterState.objects.filter(
                status__in=("provisioning", "starting")).exists()
        finally:
            celery_worker.stop()
            celery_worker.start()
        services.cluster_request_teardown(actor=alice, resource=cluster)
        wait_status(cluster, "terminated", timeout=60, worker=celery_worker)
        assert [h.files() for h in site.hosts] == [[], []]
    finally:
        site.close()


@pytest.fixture
def live_port(live_server) -> int:
    from urllib.parse import urlsplit

    return int(urlsplit(live_server.url).port or 80)
