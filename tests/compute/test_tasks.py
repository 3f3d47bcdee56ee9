"""Every cluster task, run twice with the same message (a redelivery), does its
side effect once; failures end the request with an event and leave no daemon.

The tasks run here, in this process, on the real local backend, with the
services' messages captured (``outbox``) so that the test delivers each one
itself, as often as it likes. They use the session worker's cluster root, so
that its teardowns find what these starts left.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from compute import services, tasks
from compute.backends import TransientBackendError, get_backend, local
from compute.models import ClusterEvent, ClusterState
from registry.models import ApiToken
from registry.services import resource_delete
from tests.compute.conftest import Outbox, node_processes, state_of


@pytest.fixture
def here(settings, celery_worker, live_server, monkeypatch):
    # Every start goes through poll tasks (begin_up does not wait for health).
    monkeypatch.setattr(local, "_INLINE_WAIT_SECONDS", 0)
    settings.DEN_CLUSTER_ROOT = str(celery_worker.cluster_root)
    settings.DEN_CLUSTER_DEN_URL = live_server.url
    settings.DEN_CLUSTER_HEARTBEAT_SECONDS = 0.5
    return celery_worker


def _events(resource: Any, kind: str) -> int:
    return ClusterEvent.objects.filter(cluster__resource=resource, kind=kind).count()


def _bring_up(outbox: Outbox, resource: Any, alice: Any) -> ClusterState:
    """Request up and deliver every message twice (a redelivery, same id) and
    once more as a duplicate (another id) until the cluster is up.

    A redelivered step that had already advanced the start sends its next poll
    again (its worker may have died before it did): a copy of a poll, which
    the step numbers make harmless.
    """
    services.cluster_request_up(actor=alice, resource=resource)
    task, args, kwargs = outbox.take("compute.cluster_up")
    assert task.apply(args=args, task_id="up-1").get() == "pending"
    assert task.apply(args=args, task_id="up-1").get() == "resent"  # redelivered
    assert task.apply(args=args, task_id="up-2").get() == "skipped"  # a duplicate
    for step in range(300):
        polls = []
        while any(t.name == "compute.cluster_poll_up" for t, _, _ in outbox.sent):
            polls.append(outbox.take("compute.cluster_poll_up"))
        assert len({args for _, args, _ in polls}) == 1, polls  # copies of one step only
        results = [poll.apply(args=args, task_id=f"poll-{step}-{n}").get()
                   for n, (poll, args, _) in enumerate(polls)]
        advanced = [r for r in results if r in ("pending", "up")]
        assert len(advanced) == 1 and set(results) - {"pending", "up"} <= {"skipped"}, results
        index = results.index(advanced[0])
        again = polls[index][0].apply(args=polls[index][1], task_id=f"poll-{step}-{index}")
        assert again.get() == ("skipped" if advanced[0] == "up" else "resent")
        if advanced[0] == "up":
            break
    assert not [t for t, _, _ in outbox.sent if t.name == "compute.cluster_poll_up"]
    return state_of(resource)


def test_start_stop_teardown_each_twice(here, make_cluster, people, outbox):
    alice = people["users"]["alice"]
    cpu = make_cluster("twice")
    state = _bring_up(outbox, cpu, alice)
    assert state.status == "up"
    assert _events(cpu, "daemon.started") == 1 and _events(cpu, "up") == 1
    assert list(node_processes(here.cluster_dir(cpu))) == [state.handles["pid"]]

    services.cluster_request_stop(actor=alice, resource=cpu)
    task, args, _ = outbox.take("compute.cluster_stop")
    assert task.apply(args=args, task_id="stop-1").get() == "done"
    assert task.apply(args=args, task_id="stop-1").get() == "skipped"
    assert _events(cpu, "stopped") == 1 and _events(cpu, "daemon.stopped") == 1
    assert not node_processes(here.cluster_dir(cpu))

    _bring_up(outbox, cpu, alice)
    services.cluster_request_teardown(actor=alice, resource=cpu)
    task, args, _ = outbox.take("compute.cluster_teardown")
    assert task.apply(args=args, task_id="down-1").get() == "done"
    assert task.apply(args=args, task_id="down-1").get() == "skipped"
    assert _events(cpu, "terminated") == 1 and _events(cpu, "cluster.cleaned") == 1
    assert not here.cluster_dir(cpu).exists()


def test_release_twice(here, make_cluster, people, outbox):
    alice = people["users"]["alice"]
    cpu = make_cluster("released")
    _bring_up(outbox, cpu, alice)
    folder = here.cluster_dir(cpu)
    resource_delete(actor=alice, resource=cpu)
    task, args, _ = outbox.take("compute.cluster_release")
    for _ in range(2):
        task.apply(args=args, task_id="release-1").get()
        assert not node_processes(folder) and not folder.exists()


def test_a_lost_step_is_resumed_once_however_often_the_sweep_runs(make_cluster, people, outbox):
    cpu = make_cluster("resumed")
    past = timezone.now() - timedelta(seconds=5)
    ClusterState.objects.create(resource=cpu, status="starting", request_seq=3, poll_step=2,
                                next_step_at=past, handles={"pid": 1, "port": 9},
                                start_deadline_at=timezone.now() + timedelta(minutes=5))
    assert tasks.sweep_clusters.apply().get()["resumed"] == 1
    assert tasks.sweep_clusters.apply().get()["resumed"] == 0
    task, args, _ = outbox.take("compute.cluster_poll_up")
    assert list(args) == [state_of(cpu).pk, 3, 2]
    assert not outbox.sent
    assert _events(cpu, "resumed") == 1


def test_a_start_past_its_deadline_fails_saying_what_it_waited_for_and_stops_its_daemon(
        here, make_cluster, people, outbox):
    alice = people["users"]["alice"]
    cpu = make_cluster("late")
    services.cluster_request_up(actor=alice, resource=cpu)
    task, args, _ = outbox.take("compute.cluster_up")
    assert task.apply(args=args, task_id="up").get() == "pending"
    pid = state_of(cpu).handles["pid"]
    ClusterState.objects.filter(resource=cpu).update(
        start_deadline_at=timezone.now() - timedelta(seconds=1))
    task, args, _ = outbox.take("compute.cluster_poll_up")
    assert task.apply(args=args, task_id="poll").get() == "failed"
    state = state_of(cpu)
    assert state.status == "failed"
    assert "did not come up within" in state.message
    assert "waiting for the node daemon on 127.0.0.1" in state.message
    assert pid not in node_processes(here.cluster_dir(cpu))
    assert not ApiToken.objects.filter(cluster=cpu, revoked_at__isnull=True).exists()
    assert not outbox.sent  # no poll after a failure


class Flaky:
    """The real local backend, whose begin fails transiently ``times`` times."""

    def __init__(self, times: int, error: BaseException | None = None) -> None:
        self.real = get_backend("local")
        self.times = times
        self.error = error

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def begin_up(self, spec: Any, log: Any) -> Any:
        if self.times:
            self.times -= 1
            raise TransientBackendError("The host did not answer yet.")
        return self.real.begin_up(spec, log)

    def poll_up(self, spec: Any, handles: Any, log: Any) -> Any:
        if self.error is not None:
            raise self.error
        return self.real.poll_up(spec, handles, log)


def test_transient_errors_are_retried_by_celery(here, make_cluster, people, outbox,
                                               monkeypatch):
    alice = people["users"]["alice"]
    cpu = make_cluster("flaky")
    flaky = Flaky(2)
    monkeypatch.setattr(services, "get_backend", lambda name: flaky)
    services.cluster_request_up(actor=alice, resource=cpu)
    task, args, _ = outbox.take("compute.cluster_up")
    # An eager retry runs again at once: two failures, then the start goes on.
    assert task.apply(args=args, task_id="up").get() == "pending"
    assert _events(cpu, "up.retry") == 2
    assert state_of(cpu).status == "starting"
    services.cluster_request_teardown(actor=alice, resource=cpu)
    task, args, _ = outbox.take("compute.cluster_teardown")
    assert task.apply(args=args).get() == "done"


def test_retries_run_out_and_the_start_fails(make_cluster, people, outbox, monkeypatch):
    alice = people["users"]["alice"]
    cpu = make_cluster("hopeless")
    flaky = Flaky(100)
    monkeypatch.setattr(services, "get_backend", lambda name: flaky)
    services.cluster_request_up(actor=alice, resource=cpu)
    task, args, _ = outbox.take("compute.cluster_up")
    task.apply(args=args, task_id="up")
    state = state_of(cpu)
    assert state.status == "failed"
    assert "after several attempts" in state.message and "did not answer yet" in state.message
    assert _events(cpu, "up.retry") == tasks.cluster_up.max_retries + 1


def test_an_unexpected_error_fails_the_start_and_stops_its_daemon(
        here, make_cluster, people, outbox, monkeypatch):
    alice = people["users"]["alice"]
    cpu = make_cluster("buggy")
    secret_path = "/srv/den/private/thing"
    flaky = Flaky(0, OSError(f"cannot open {secret_path}"))
    monkeypatch.setattr(services, "get_backend", lambda name: flaky)
    services.cluster_request_up(actor=alice, resource=cpu)
    task, args, _ = outbox.take("compute.cluster_up")
    assert task.apply(args=args, task_id="up").get() == "pending"
    pid = state_of(cpu).handles["pid"]
    task, args, _ = outbox.take("compute.cluster_poll_up")
    task.apply(args=args, task_id="poll")  # on_failure fails the request
    state = state_of(cpu)
    assert state.status == "failed"
    assert "unexpectedly (OSError)" in state.message and secret_path not in state.message
    failed = ClusterEvent.objects.get(cluster__resource=cpu, kind="failed")
    assert secret_path in failed.data["detail"]  # for the cluster's managers only
    assert pid not in node_processes(here.cluster_dir(cpu))


def test_a_failure_of_an_old_request_changes_nothing(make_cluster, people, outbox):
    """on_failure of a task whose request was replaced does nothing."""
    alice = people["users"]["alice"]
    cpu = make_cluster("oldfail")
    services.cluster_request_up(actor=alice, resource=cpu)
    old_seq = state_of(cpu).request_seq
    services.cluster_request_stop(actor=alice, resource=cpu)
    services.cluster_task_failed(state_id=state_of(cpu).pk, seq=old_seq,
                                 task="compute.cluster_up", exc=RuntimeError("late"))
    assert state_of(cpu).status == "stopping"
    assert _events(cpu, "failed") == 0


def test_probe_twice(here, make_cluster, people, outbox, settings):
    """A probe of a live daemon changes nothing; of a dead one, marks the
    cluster unreachable once, however often it runs."""
    import os
    import signal

    alice = people["users"]["alice"]
    cpu = make_cluster("probed")
    state = _bring_up(outbox, cpu, alice)
    settings.DEN_CLUSTER_PROBE_WAIT_SECONDS = 0
    services.cluster_probe(resource=cpu)  # the worker's task is captured: no answer to wait for
    task, args, _ = outbox.take("compute.cluster_probe")
    assert task.apply(args=args, task_id="probe-1").get() == "up"
    assert state_of(cpu).status == "up"
    os.kill(state.handles["pid"], signal.SIGKILL)
    for _ in range(2):
        task.apply(args=args, task_id="probe-2").get()
    assert state_of(cpu).status == "unreachable"
    assert _events(cpu, "unreachable") == 1
    services.cluster_request_teardown(actor=alice, resource=cpu)
    task, args, _ = outbox.take("compute.cluster_teardown")
    assert task.apply(args=args).get() == "done"
