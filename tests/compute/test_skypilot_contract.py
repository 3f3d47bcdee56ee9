"""The contract between den's SkyPilot adapter and a real SkyPilot 0.14 API
server: what the suite's fake cloud (tests/compute/fake_cloud.py) stands in for.

``scripts/test`` installs SkyPilot in a virtualenv of its own
(``DEN_SKYPILOT_PYTHON``); this module starts a real local API server from
it on a free port, in a home of its own, and checks what the fake relies on:
every call gives a request id; ``status`` of a fresh server is an empty list;
``down`` and ``autostop`` of an unknown cluster fail with
``ClusterDoesNotExist``, which the adapter maps to den's ``not_found``; a
launch with no cloud credentials fails with ``NoCloudAccessError``, mapped
to ``no_cloud_access`` — and, through a Celery worker on SkyPilot's python
with the real adapter, to a failed cluster with one clear event.

Everywhere else ``SKYPILOT_DISABLE_LOCAL_API_SERVER=1`` (set by scripts/test).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import sysconfig
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from compute import services
from compute.models import ClusterEvent
from tests.celery_worker import REPO, SKY_PREFIX, Worker, _route_compute_tasks
from tests.compute.conftest import wait_status

SKY_PYTHON = os.environ.get("DEN_SKYPILOT_PYTHON", "")

pytestmark = pytest.mark.skipif(
    not SKY_PYTHON, reason="needs SkyPilot's virtualenv (scripts/test makes it: "
    "DEN_SKYPILOT_PYTHON)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _sky_env(home: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SKYPILOT_", "DEN_SECRET_KEY", "DEN_ENCRYPTION_KEY",
                                "DATABASE_URL"))}
    env.update({"HOME": str(home), "SKYPILOT_API_SERVER_LOCAL_PORT": str(port),
                "SKYPILOT_DISABLE_USAGE_COLLECTION": "1"})
    return env


@pytest.fixture(scope="module")
def api_server() -> Iterator[dict[str, str]]:
    """A real local SkyPilot API server; yields the environment a client needs."""
    home = Path(tempfile.mkdtemp(prefix="den-sky-"))
    port = _free_port()
    env = _sky_env(home, port)
    # SkyPilot's CLI through its python: the venv was built under another name
    # and moved into place, so its scripts' #! lines point nowhere.
    sky = [SKY_PYTHON, "-c", "from sky.cli import cli; cli()"]
    started = subprocess.run([*sky, "api", "start", "--port", str(port)], env=env,
                             capture_output=True, text=True, timeout=240, check=False)
    assert started.returncode == 0, started.stdout + started.stderr
    client = {**env, "SKYPILOT_API_SERVER_ENDPOINT": f"http://127.0.0.1:{port}",
              # A client pointed at this server must never start another.
              "SKYPILOT_DISABLE_LOCAL_API_SERVER": "1"}
    try:
        yield client
    finally:
        subprocess.run([*sky, "api", "stop"], env=env, capture_output=True, timeout=120,
                       check=False)
        import shutil

        shutil.rmtree(home, ignore_errors=True)


def _drive(env: dict[str, str], *steps: list[Any]) -> list[dict[str, Any]]:
    """Run adapter calls in SkyPilot's python (tests/compute/sky_driver.py)."""
    done = subprocess.run(
        [SKY_PYTHON, "-m", "tests.compute.sky_driver", json.dumps(steps)],
        env={**env, "PYTHONPATH": str(REPO)}, cwd=str(REPO), capture_output=True,
        text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_request_ids_status_and_unknown_clusters(api_server):
    name = f"den-contract-{uuid.uuid4().hex[:6]}"
    status, down, autostop, stop = _drive(
        api_server, ["clusters"], ["down", name], ["autostop", name, 5, False], ["stop", name])
    assert status == {"ok": []}
    for result in (down, autostop, stop):
        # Each call gave a request id at once; the request failed with
        # ClusterDoesNotExist, which den calls not_found.
        assert len(result["request_id"]) >= 32
        assert result["state"]["status"] == "failed"
        assert result["state"]["error"]["kind"] == "not_found", result
        assert result["sky_error"] == "ClusterDoesNotExist"


def test_a_launch_without_cloud_access(api_server):
    name = f"den-contract-{uuid.uuid4().hex[:6]}"
    (launch,) = _drive(api_server, ["launch", name, "aws", "CPU:2"])
    assert len(launch["request_id"]) >= 32
    assert launch["state"]["status"] == "failed"
    assert launch["state"]["error"]["kind"] == "no_cloud_access"
    assert launch["sky_error"] == "NoCloudAccessError"
    assert launch["unfinished_after"] == {}
    assert isinstance(launch["logs"], list)
    assert launch["state"]["error"]["message"].startswith("SkyPilot has no credentials")


@pytest.fixture
def sky_worker(api_server, celery_worker, settings) -> Iterator[Worker]:
    """A Celery worker on SkyPilot's python with den's real adapter, for this
    test's tasks only (its own queue; den's test venv behind SkyPilot's)."""
    queue = f"compute-sky-{uuid.uuid4().hex[:8]}"
    env = {**celery_worker.env, **api_server}
    for key in ("DEN_SKYPILOT_ADAPTER", "DEN_SKYPILOT_BOOTSTRAP", "DEN_FAKE_CLOUD_DIR"):
        env.pop(key, None)
    env.update({
        "DEN_COMPUTE_QUEUE": queue,
        "DEN_SKYPILOT_POLL_SECONDS": "1",
        # den's packages first, SkyPilot's after them (site-packages of its venv).
        "PYTHONPATH": os.pathsep.join([str(REPO), sysconfig.get_paths()["purelib"]]),
    })
    log = celery_worker.log_path.with_name(f"{queue}.log")
    worker = Worker(celery_worker.home, celery_worker.cluster_root, queue, env, log,
                    python=SKY_PYTHON)
    _route_compute_tasks(queue)
    try:
        yield worker
    finally:
        _route_compute_tasks(celery_worker.queue)
        worker.stop()


def test_no_cloud_access_fails_the_cluster_with_a_clear_event(sky_worker, make_cluster,
                                                              people):
    cluster = make_cluster("real-sky", provider="aws", instance_type="CPU:2")
    services.cluster_request_up(actor=people["users"]["alice"], resource=cluster)
    state = wait_status(cluster, "failed", timeout=120, worker=sky_worker)
    assert state.message.startswith("SkyPilot has no credentials for the cloud"), state.message
    kinds = list(ClusterEvent.objects.filter(cluster__resource=cluster).order_by("id")
                 .values_list("kind", flat=True))
    assert "launch.requested" in kinds and kinds[-1] in ("failed", "down.requested"), kinds
    failed = ClusterEvent.objects.get(cluster__resource=cluster, kind="failed")
    assert failed.data["error_kind"] == "no_cloud_access"
    requested = ClusterEvent.objects.get(cluster__resource=cluster, kind="launch.requested")
    assert requested.data["sky_cluster"] == f"{SKY_PREFIX}{cluster.pk}"
    assert "sky" not in sys.modules  # the test process itself never imported SkyPilot
