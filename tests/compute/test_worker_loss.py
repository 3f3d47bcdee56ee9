"""kill -9 the Celery worker during a start: once a worker runs again, the start
finishes with exactly one daemon, and no cluster is left in provisioning or
starting.

The start's message was acknowledged late, so Redis still holds it as
unacknowledged; a worker hands it out again once it has been so for kombu's
``visibility_timeout`` (den's default is ten minutes, see den/settings; the
restarted worker here uses three seconds so that the test need not wait).
Every step of the start is fenced by its request and step number, so the
redelivered step picks the work up where it stopped.
"""

from __future__ import annotations

import time

import pytest

from compute import services
from compute.models import ClusterEvent, ClusterState
from tests.compute.conftest import node_processes, state_of, wait_for, wait_status


@pytest.mark.parametrize("moment", ["starting", "daemon.started"])
def test_a_start_survives_its_worker_killed(celery_worker, make_cluster, people, moment):
    alice = people["users"]["alice"]
    cpu = make_cluster(f"lost-{moment.replace('.', '-')}")
    services.cluster_request_up(actor=alice, resource=cpu)
    try:
        wait_for(lambda: ClusterEvent.objects.filter(cluster__resource=cpu, kind=moment)
                 .exists(), 60, interval=0.01, what=f"the {moment} event")
        celery_worker.kill()
        assert state_of(cpu).status in ("provisioning", "starting")
        time.sleep(4)  # unacknowledged for longer than the new worker's visibility timeout
        celery_worker.start(DEN_CELERY_VISIBILITY_TIMEOUT="3")
        state = wait_status(cpu, "up", timeout=60, worker=celery_worker)
        wait_for(lambda: list(node_processes(celery_worker.cluster_dir(cpu)))
                 == [state.handles["pid"]], 10, what="exactly the one daemon den tracks")
        assert not ClusterState.objects.filter(status__in=("provisioning", "starting")).exists()
    finally:
        # The rest of the session runs on a worker with den's usual settings.
        celery_worker.stop()
        celery_worker.start()
    services.cluster_request_teardown(actor=alice, resource=cpu)
    wait_status(cpu, "terminated", worker=celery_worker)
    assert not node_processes(celery_worker.cluster_dir(cpu))
