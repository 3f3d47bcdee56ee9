"""A local cluster's life through a real Celery worker: up (once, however
often asked), heartbeats, stop, teardown."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx

from compute import services, tasks
from compute.models import ClusterEvent, ClusterState
from registry import credentials
from registry.models import ApiToken
from tests.compute.conftest import node_processes, state_of, wait_for, wait_status
from tests.conftest import TokenClient


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return b"den.node" in handle.read()
    except OSError:
        return False


def test_up_heartbeats_stop_teardown(celery_worker, make_cluster, people):
    cpu = make_cluster("cpu")
    api = TokenClient().as_token(people["tokens"]["alice"])
    base = f"/api/v1/resources{cpu.address}/-/cluster"
    assert api.get(base).json()["status"] == "down"

    response = api.post(f"{base}/up")
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "provisioning"

    state = wait_status(cpu, "up", worker=celery_worker)
    body = api.get(base).json()
    assert body["daemon_url"].startswith("http://127.0.0.1:")
    assert body["backend"] == "local"
    pid = state.handles["pid"]
    assert _pid_alive(pid)
    assert httpx.get(body["daemon_url"] + "/health").json()["status"] == "ok"
    # Heartbeats come from the daemon with its own token, bound to this cluster.
    wait_for(lambda: state_of(cpu).last_heartbeat_at, 15, what="a heartbeat")
    tokens = ApiToken.objects.filter(cluster=cpu)
    assert tokens.count() == 1 and tokens.get().is_active
    # The daemon got a minimal environment: none of the server's settings.
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert not any(v.startswith((b"DATABASE_URL=", b"DEN_SECRET_KEY=")) for v in environ)

    assert api.post(f"{base}/stop").status_code == 202
    # The token is revoked as soon as the stop is asked for.
    assert not ApiToken.objects.filter(cluster=cpu, revoked_at__isnull=True).exists()
    wait_status(cpu, "stopped", worker=celery_worker)
    wait_for(lambda: not _pid_alive(pid), 10, what="the daemon to exit")
    assert api.get(base).json()["daemon_url"] == ""

    # Up again after a stop: a new daemon with a new token.
    api.post(f"{base}/up")
    state = wait_status(cpu, "up", worker=celery_worker)
    assert state.handles["pid"] != pid
    assert ApiToken.objects.filter(cluster=cpu, revoked_at__isnull=True).count() == 1

    assert api.post(f"{base}/teardown").status_code == 202
    wait_status(cpu, "terminated", worker=celery_worker)
    assert not celery_worker.cluster_dir(cpu).exists()
    assert not node_processes(celery_worker.cluster_dir(cpu))

    kinds = list(ClusterEvent.objects.filter(cluster__resource=cpu).order_by("id")
                 .values_list("kind", flat=True))
    assert kinds[:2] == ["up.requested", "starting"]
    assert {"up", "stopped", "terminated", "daemon.stopped"} <= set(kinds)
    events = api.get(f"{base}/events").json()["results"]
    assert events[0]["kind"] == "terminated"


def test_duplicate_up_messages_start_one_daemon(celery_worker, make_cluster, people):
    cpu = make_cluster("dup")
    state = services.cluster_request_up(actor=people["users"]["alice"], resource=cpu)
    # Two more messages for the same request, as a duplicate delivery would make.
    tasks.cluster_up.delay(state.pk, state.request_seq)
    tasks.cluster_up.delay(state.pk, state.request_seq)
    state = wait_status(cpu, "up", worker=celery_worker)
    # Asking again while it is up enqueues nothing and changes nothing.
    services.cluster_request_up(actor=people["users"]["alice"], resource=cpu)
    # Running the task once more, here, is a no-op too.
    assert tasks.cluster_up.apply(args=[state.pk, state.request_seq]).get() == "skipped"
    time.sleep(1.5)  # let the duplicates reach the worker and be skipped
    daemons = node_processes(celery_worker.cluster_dir(cpu))
    assert list(daemons) == [state.handles["pid"]], daemons
    started = ClusterEvent.objects.filter(cluster__resource=cpu, kind="daemon.started")
    assert started.count() == 1
    assert "skipped" in celery_worker.log()
    services.cluster_request_teardown(actor=people["users"]["alice"], resource=cpu)
    wait_status(cpu, "terminated", worker=celery_worker)
    assert not node_processes(celery_worker.cluster_dir(cpu))


def test_stop_while_starting_leaves_no_daemon(celery_worker, make_cluster, people):
    alice = people["users"]["alice"]
    cpu = make_cluster("race")
    services.cluster_request_up(actor=alice, resource=cpu)
    wait_for(lambda: state_of(cpu).status == "starting", 20, interval=0.02,
             what="the worker to claim the up")
    services.cluster_request_stop(actor=alice, resource=cpu)
    wait_status(cpu, "stopped", worker=celery_worker)
    wait_for(lambda: not node_processes(celery_worker.cluster_dir(cpu)), 20,
             what="no daemon left running")
    assert state_of(cpu).status == "stopped"


def test_a_failed_start_says_why(celery_worker, make_cluster, people):
    # The configured port is taken: a permanent failure, not retried.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        cpu = make_cluster("badport", server_port=taken.getsockname()[1])
        services.cluster_request_up(actor=people["users"]["alice"], resource=cpu)
        state = wait_status(cpu, "failed", worker=celery_worker)
    assert "exited" in state.message
    assert not ApiToken.objects.filter(cluster=cpu, revoked_at__isnull=True).exists()


def test_deleting_an_up_cluster_stops_its_daemon(up_cluster, celery_worker, people):
    from registry import services as registry_services

    cpu = up_cluster("doomed")
    pid = state_of(cpu).handles["pid"]
    folder = celery_worker.cluster_dir(cpu)
    registry_services.resource_delete(actor=people["users"]["alice"], resource=cpu)
    wait_for(lambda: not _pid_alive(pid), 20, what="the deleted cluster's daemon to exit")
    wait_for(lambda: not folder.exists(), 10, what="its folder to be removed")


def test_a_failed_start_revokes_only_its_own_token(make_cluster, people, monkeypatch):
    """A start that fails late must not revoke the token a newer start gave its
    daemon (a stop and a new up can happen while a slow start runs)."""
    from compute.backends import BackendError

    cpu = make_cluster("slow")
    state = ClusterState.objects.create(resource=cpu, status="provisioning", backend="local",
                                        request_seq=1)
    newer: list[str] = []

    class SlowThenFailing:
        name = "local"

        def begin_up(self, spec, log):
            # Meanwhile: stopped, brought up again, and the newer start minted its token.
            ClusterState.objects.filter(pk=state.pk).update(request_seq=2,
                                                            claimed_by="newer-message")
            newer.append(services._mint_cluster_token(services._load(state.pk), 2))
            raise BackendError("the old daemon exited")

        def cancel_up(self, *args):
            pass

    monkeypatch.setattr(services, "get_backend", lambda name: SlowThenFailing())
    assert services.cluster_run_up(state_id=state.pk, seq=1, claim="old-message") == "failed"
    live = ApiToken.objects.filter(cluster=cpu, revoked_at__isnull=True)
    assert [t.token_hash for t in live] == [credentials.hash_token(newer[0])]


def test_a_port_held_by_another_daemon_is_not_mistaken_for_ours(celery_worker, make_cluster,
                                                                people):
    import http.server
    import json
    import threading

    class Impostor(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # answers /health like a den node daemon, but it is not ours
            body = json.dumps({"status": "ok", "version": "0", "pid": 1}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Impostor)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cpu = make_cluster("impostor", server_port=server.server_address[1])
        services.cluster_request_up(actor=people["users"]["alice"], resource=cpu)
        state = wait_status(cpu, "failed", worker=celery_worker)
    finally:
        server.shutdown()
    assert state.daemon_url in ("", None)
    assert "exited" in state.message
