"""A cluster of two real sshd hosts (tests/sshhosts.py), driven through ``den.*``
as a user would: ``den.cluster(name=, ips=[...], ssh_creds={...}).up_if_not()``.

On it: a function on each node answers that node's own address, a class keeps
its state, ``run`` returns both hosts' output, stop and up again work, and
teardown leaves no den process and no den file on either host. The private
key never shows in an API response, an event, a log line or any command line
on the hosts, and a reader of the cluster cannot obtain it. A teammate's call
to a function saved before the head daemon was killed works after
``up_if_not()``, with nothing sent again by the owner.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from pathlib import Path

import httpx
import pytest

import den
from compute import selectors
from compute.models import ClusterEvent
from registry.models import Resource
from tests.celery_worker import wait_for
from tests.e2e import remote_fns
from tests.e2e.test_restarts import _alive, _fresh_process

pytestmark = pytest.mark.e2e


def _state(address: str):
    owner, name = address.strip("/").split("/", 1)
    return selectors.cluster_state_get(
        resource=Resource.objects.get(owner__username=owner, name=name))


def _daemons(host) -> dict[int, list[str]]:
    return {pid: args for pid, args in host.processes().items() if "den.node" in args}


class CommandLines:
    """Every command line on this machine (the hosts share its /proc), sampled
    while it runs."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    with contextlib.suppress(OSError):
                        self.seen.add((entry / "cmdline").read_bytes().decode(errors="replace"))
            self._stop.wait(0.02)

    def __enter__(self) -> CommandLines:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def _key_marks(pem: str) -> list[str]:
    """Distinctive pieces of a private key: its base64 lines."""
    return [line for line in pem.splitlines() if line and "PRIVATE KEY" not in line][:3]


def test_a_two_host_cluster_through_the_client(team, ssh_site, cleanup_clusters, celery_worker,
                                               tmp_path, capsys):
    hosts = ssh_site.hosts
    key = tmp_path / "id_ed25519"
    key.write_text(ssh_site.private_key_pem)
    key.chmod(0o600)
    team.login("alice")
    box = den.cluster(name="box", ips=[h.ip for h in hosts],
                      ssh_creds={"ssh_user": ssh_site.user, "ssh_private_key": str(key)})
    with CommandLines() as lines:
        box.save()
        assert box.address == "/alice/box"
        cleanup_clusters(box.address)
        box.up_if_not(timeout=120, quiet=True)
        said = capsys.readouterr().err
        assert said.count("saved your SSH key as the secret /alice/box-ssh-creds") == 1

        where = den.function(remote_fns.where_am_i, name="where").to(box).save()
        there = den.function(remote_fns.where_am_i, name="there").to(box, node=1).save()
        assert where() == hosts[0].ip
        assert there() == hosts[1].ip
        counter = den.module(remote_fns.Counter).to(box)(5)
        assert counter.add(2) == 7
        assert counter.get() == 7

        both = box.run("ip -o -4 addr show | grep -v ' lo '", node="all", quiet=True)
        assert [r.exit_code for r in both] == [0, 0]
        assert hosts[0].ip in both[0].stdout and hosts[1].ip not in both[0].stdout
        assert hosts[1].ip in both[1].stdout
        assert box.run("echo hi; exit 3", quiet=True).exit_code == 3
        logs = {h.ip: (h.home / ".den" / "clusters").rglob("daemon.log") for h in hosts}
        daemon_logs = "".join(p.read_text() for found in logs.values() for p in found)

    # A reader of the cluster may see it, not its key.
    box.share("rita", access_level="read")
    team.login("rita")
    assert den.cluster(name="/alice/box").status()["status"] == "up"
    reader = httpx.get(f"{team.url}/api/v1/resources/alice/box-ssh-creds/-/secret",
                       headers={"Authorization": f"Bearer {team.tokens['rita']}"})
    assert reader.status_code == 404
    team.login("alice")

    # Nowhere but in its secret: API answers, events, logs, command lines.
    state = _state("/alice/box")
    owner = {"Authorization": f"Bearer {team.tokens['alice']}"}
    answers = [httpx.get(f"{team.url}/api/v1/resources/alice/box{path}", headers=owner).text
               for path in ("", "/-/cluster", "/-/cluster/events?limit=200", "/-/versions")]
    answers.append(httpx.get(f"{team.url}/api/v1/resources/alice/box-ssh-creds",
                             headers=owner).text)
    events = json.dumps([[e.kind, e.message, e.data] for e in
                         ClusterEvent.objects.filter(cluster=state)])
    sshd_logs = "".join((h.host_key_path.parent / "sshd.log").read_text() for h in hosts)
    haystacks = {"API answers": "".join(answers), "events": events,
                 "the worker's log": celery_worker.log(), "daemon logs": daemon_logs,
                 "sshd logs": sshd_logs, "command lines": "\n".join(lines.seen)}
    for mark in _key_marks(ssh_site.private_key_pem):
        for where_, text in haystacks.items():
            assert mark not in text, f"a piece of the private key is in {where_}"
    assert len(lines.seen) > 50  # the watcher did watch
    assert {"daemon.log", "host_key.trusted"} <= {e.kind for e in
                                                  ClusterEvent.objects.filter(cluster=state)}
    # Callers got the daemon's certificate to pin, and it is HTTPS.
    status = box.status()
    assert all(n["url"].startswith("https://") and n["tls_fingerprint"] for n in status["nodes"])

    box.stop()
    wait_for(lambda: _state("/alice/box").status == "stopped", 60, what="the stop")
    assert not any(_daemons(h) for h in hosts)
    box.up_if_not(timeout=60, quiet=True)
    assert [len(_daemons(h)) for h in hosts] == [1, 1]
    assert where() == hosts[0].ip and there() == hosts[1].ip

    box.teardown()
    wait_for(lambda: _state("/alice/box").status == "terminated", 60, what="the teardown")
    assert not any(_daemons(h) for h in hosts)
    assert [h.files() for h in hosts] == [[], []]


def test_a_teammates_call_works_after_the_head_daemon_is_killed(team, ssh_site, cleanup_clusters,
                                                                 tmp_path):
    key = tmp_path / "id_ed25519"
    key.write_text(ssh_site.private_key_pem)
    team.login("alice")
    box = den.cluster(name="killed", ips=[ssh_site.hosts[0].ip],
                      ssh_creds={"ssh_user": ssh_site.user, "ssh_private_key": str(key)})
    box.save()
    cleanup_clusters(box.address)
    box.up_if_not(timeout=120, quiet=True)
    add = den.function(remote_fns.add).to(box).save()
    add.share("rita")
    team.login("rita")
    assert den.function(name="/alice/add")(1, 2) == 3

    head = _state("/alice/killed").handles["nodes"][0]["pid"]
    os.kill(head, signal.SIGKILL)
    wait_for(lambda: not _alive(head), 10, what="the daemon to die")
    _fresh_process()
    team.login("rita")
    with pytest.raises(den.NoRunningCluster):
        den.function(name="/alice/add")(1, 2)
    assert _state("/alice/killed").status == "unreachable"

    _fresh_process()
    team.login("alice")
    den.cluster(name="/alice/killed").up_if_not(timeout=60, quiet=True)
    assert list(_daemons(ssh_site.hosts[0])) == [_state("/alice/killed").handles["nodes"][0]["pid"]]
    _fresh_process()
    team.login("rita")
    assert den.function(name="/alice/add")(2, 3) == 5
    assert ClusterEvent.objects.filter(cluster=_state("/alice/killed"), kind="restored").exists()
