"""Requests, not messages, own a cluster's state: a task acting for an old
request (an up that was followed by a stop and a new up) can never change the
outcome of the newer one.

The tasks run here, in this process, interleaved by hand: the services send
their messages to ``sent`` instead of the broker (``apply_async`` is where
``delay_on_commit`` ends up), and the test runs each one when it chooses.
The end of each story runs on the real Celery worker.
"""

from __future__ import annotations

import time
from typing import Any

from compute import services
from compute.backends import BackendError, get_backend
from compute.models import ClusterEvent
from tests.compute.conftest import node_processes, state_of, wait_status


class LateFailure:
    """A backend whose start runs ``meanwhile`` (the user's later requests),
    then fails: an old start that fails only after it was replaced."""

    name = "local"
    keeps_machines_on_stop = True

    def __init__(self, meanwhile: Any) -> None:
        self.meanwhile = meanwhile
        self.stopped: list[Any] = []

    def _start(self, *args: Any) -> Any:
        self.meanwhile()
        raise BackendError("The old start's daemon exited.")

    up = begin_up = _start

    def poll_up(self, *args: Any) -> Any:
        raise AssertionError("the old start never got as far as polling")

    def stop(self, cluster_key: str, handles: Any, log: Any) -> None:
        self.stopped.append(handles)

    cancel_up = teardown = stop

    def status(self, *args: Any) -> str:
        return "stopped"


def test_an_old_start_failing_late_does_not_fail_the_newer_up(
        celery_worker, make_cluster, people, outbox, monkeypatch):
    alice = people["users"]["alice"]
    cpu = make_cluster("fenced")
    services.cluster_request_up(actor=alice, resource=cpu)

    def meanwhile() -> None:
        # While the old start runs: the user stops the cluster (that finishes) and
        # brings it up again; the new up's message is still queued.
        services.cluster_request_stop(actor=alice, resource=cpu)
        outbox.run("compute.cluster_stop", "stop-message")
        assert state_of(cpu).status == "stopped"
        services.cluster_request_up(actor=alice, resource=cpu)

    late = LateFailure(meanwhile)
    monkeypatch.setattr(services, "get_backend", lambda name: late)
    outbox.run("compute.cluster_up", "old-up-message")

    state = state_of(cpu)
    assert state.status == "provisioning", (state.status, state.message)
    assert not ClusterEvent.objects.filter(cluster=state, kind="failed").exists()

    # The new request's own message, on the real worker, brings the cluster up.
    monkeypatch.undo()
    task, args, kwargs = outbox.take("compute.cluster_up")
    task.apply_async(args=args, kwargs=kwargs)
    state = wait_status(cpu, "up", worker=celery_worker)
    assert list(node_processes(celery_worker.cluster_dir(cpu))) == [state.handles["pid"]]
    services.cluster_request_teardown(actor=alice, resource=cpu)
    wait_status(cpu, "terminated", worker=celery_worker)


class LateSuccess:
    """The real local backend, whose first start runs ``meanwhile`` (a stop
    and a whole newer start) before it returns: an old start that succeeds
    only after it was replaced, and must clean up only its own daemon."""

    def __init__(self, meanwhile: Any) -> None:
        self.real = get_backend("local")
        self.meanwhile: Any = meanwhile

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def _late(self, result: Any) -> Any:
        meanwhile, self.meanwhile = self.meanwhile, None
        if meanwhile is not None:
            meanwhile()
        return result

    def up(self, spec: Any, log: Any) -> Any:
        return self._late(self.real.up(spec, log))

    def begin_up(self, spec: Any, log: Any) -> Any:
        return self._late(self.real.begin_up(spec, log))


def test_an_old_start_succeeding_late_leaves_the_newer_daemon_alone(
        celery_worker, make_cluster, people, outbox, monkeypatch, settings, live_server):
    # Both starts run here: with the worker's cluster root, so that the worker
    # (which tears the cluster down at the end) finds their daemons.
    settings.DEN_CLUSTER_ROOT = str(celery_worker.cluster_root)
    settings.DEN_CLUSTER_DEN_URL = live_server.url
    alice = people["users"]["alice"]
    cpu = make_cluster("latesuccess")
    services.cluster_request_up(actor=alice, resource=cpu)

    def meanwhile() -> None:
        services.cluster_request_stop(actor=alice, resource=cpu)
        outbox.run("compute.cluster_stop", "stop-message")
        services.cluster_request_up(actor=alice, resource=cpu)
        outbox.run("compute.cluster_up", "new-up-message")
        for _ in range(200):  # the new start's polls, if it has any
            if state_of(cpu).status == "up":
                break
            try:
                outbox.run("compute.cluster_poll_up", f"poll-{_}")
            except AssertionError:
                time.sleep(0.1)
        assert state_of(cpu).status == "up"

    backend = LateSuccess(meanwhile)
    monkeypatch.setattr(services, "get_backend", lambda name: backend)
    outbox.run("compute.cluster_up", "old-up-message")
    for _ in range(50):  # the old start's polls, if it has any
        try:
            outbox.run("compute.cluster_poll_up", f"old-poll-{_}")
        except AssertionError:
            break

    state = state_of(cpu)
    assert state.status == "up", (state.status, state.message)
    pid = state.handles["pid"]
    assert list(node_processes(celery_worker.cluster_dir(cpu))) == [pid]
    monkeypatch.undo()
    services.cluster_request_teardown(actor=alice, resource=cpu)
    wait_status(cpu, "terminated", worker=celery_worker)
