"""Saved work survives a cluster's daemon dying, and den finds out at once.

Through den and its client, with a real Celery worker and real local daemons:
alice saves a function sent as code, one sent by value and a named module
instance, shares them with rita, and then the daemon is killed with -9. rita's
next call fails as NoRunningCluster at once (den probed the daemon and marked
the cluster unreachable, rather than waiting out the heartbeat timeout);
after ``up_if_not()`` from a fresh session, rita's calls work again with
nothing sent again from alice: the new daemon put each back from den's copy.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

import den
from compute import selectors
from compute.models import ClusterEvent
from den.client import remote
from den.client import session as den_session
from registry.models import Resource
from tests.celery_worker import node_processes, wait_for
from tests.e2e import remote_fns
from tests.e2e.conftest import up_cluster

pytestmark = pytest.mark.e2e


def _state(address: str):
    owner, name = address.strip("/").split("/", 1)
    return selectors.cluster_state_get(
        resource=Resource.objects.get(owner__username=owner, name=name))


def _kill_daemon(address: str) -> int:
    pid = int(_state(address).handles["pid"])
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not _alive(pid), 10, what="the daemon to die")
    return pid


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def _fresh_process() -> None:
    """Forget everything this process knows about daemons and what it put there,
    as a new Python process would."""
    den_session.reset()
    remote._urls.clear()
    for node in list(remote._nodes.values()):
        node.close()
    remote._nodes.clear()
    remote._bundles.clear()


def test_a_teammates_calls_work_after_the_daemon_is_killed_and_brought_up(
        team, cleanup_clusters, celery_worker, capsys):
    team.login("alice")
    cpu = up_cluster("restart", cleanup_clusters)
    add = den.function(remote_fns.add).to(cpu).save()
    assert add.code  # sent as a code bundle

    def triple(x: int) -> int:  # defined here: sent by value
        return 3 * x

    by_value = den.function(triple, name="triple").to(cpu).save()
    counter = den.module(remote_fns.Counter).to(cpu)(10, name="counter")
    assert counter.add(1) == 11
    for resource in (add, by_value, counter):
        resource.share("rita")

    team.login("rita")
    assert den.function(name="/alice/add")(1, 2) == 3
    assert den.function(name="/alice/triple")(2) == 6
    assert den.module(name="/alice/counter").get() == 11

    old_pid = _kill_daemon(cpu.address)
    # rita's next call cannot connect: den checks the daemon at once.
    _fresh_process()
    team.login("rita")
    started = time.monotonic()
    # rita reads the cluster only: she is told to ask its owner.
    with pytest.raises(den.NoRunningCluster, match="ask its owner"):
        den.function(name="/alice/add")(1, 2)
    assert time.monotonic() - started < 15  # not the 120 s heartbeat timeout
    assert _state(cpu.address).status == "unreachable"
    assert ClusterEvent.objects.filter(cluster=_state(cpu.address), kind="unreachable",
                                       data__seen="stopped").exists()

    # alice, in a new process, brings it up; she sends nothing again.
    _fresh_process()
    team.login("alice")
    den.cluster(name="/alice/restart").up_if_not(timeout=60, quiet=True)
    new_pid = int(_state(cpu.address).handles["pid"])
    assert new_pid != old_pid
    assert list(node_processes(celery_worker.cluster_dir(Resource.objects.get(
        owner__username="alice", name="restart")))) == [new_pid]

    _fresh_process()
    team.login("rita")
    capsys.readouterr()
    assert den.function(name="/alice/add")(2, 3) == 5
    assert den.function(name="/alice/triple")(4) == 12
    shared_counter = den.module(name="/alice/counter")
    # Back from its saved constructor arguments: what it gained since is gone,
    # and the call's output says so.
    assert shared_counter.get() == 10
    assert "constructor arguments" in capsys.readouterr().err
    assert shared_counter.add(5) == 15
    restored = ClusterEvent.objects.filter(cluster=_state(cpu.address), kind="restored")
    assert sorted(e.data["address"] for e in restored) == [
        "/alice/add", "/alice/counter", "/alice/triple"]


def test_up_if_not_starts_a_daemon_that_died_while_den_still_says_up(team, cleanup_clusters):
    team.login("alice")
    cpu = up_cluster("died", cleanup_clusters)
    add = den.function(remote_fns.add).to(cpu).save()
    old_pid = _kill_daemon(cpu.address)
    assert _state(cpu.address).status == "up"  # no heartbeat timeout has passed
    _fresh_process()
    team.login("alice")
    den.cluster(name="/alice/died").up_if_not(timeout=60, quiet=True)
    assert int(_state(cpu.address).handles["pid"]) != old_pid
    assert den.function(name="/alice/add")(1, 1) == 2
    assert add(2, 2) == 4  # the owner's own object works too


def test_to_a_cluster_that_is_not_up_raises(team, cleanup_clusters):
    team.login("alice")
    cpu = den.cluster(name="down", provider="local").save()
    cleanup_clusters(cpu.address)
    with pytest.raises(den.NoRunningCluster, match="up_if_not"):
        den.function(remote_fns.add).to(cpu)
    with pytest.raises(den.NoRunningCluster, match="down"):
        den.module(remote_fns.Counter).to(cpu)


def test_after_teardown_and_up_the_code_comes_back_from_den(team, cleanup_clusters):
    """Teardown removes the cluster's files, code bundles included: the new
    daemon unpacks den's copy of the bundle."""
    team.login("alice")
    cpu = up_cluster("rebuilt", cleanup_clusters)
    add = den.function(remote_fns.add).to(cpu).save()
    add.share("rita")
    cpu.teardown()
    wait_for(lambda: _state(cpu.address).status == "terminated", 30, what="the teardown")
    _fresh_process()
    team.login("alice")
    den.cluster(name="/alice/rebuilt").up_if_not(timeout=60, quiet=True)
    _fresh_process()
    team.login("rita")
    assert den.function(name="/alice/add")(20, 22) == 42
    restored = ClusterEvent.objects.get(cluster=_state(cpu.address), kind="restored")
    assert restored.data["code"] == add.code
