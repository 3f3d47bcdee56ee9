"""SkyPilot stays out of den's web processes and the client, even where it is
installed: a gunicorn worker that served cluster pages and requests for a
cloud cluster, and a process that ran ``import den``, never import ``sky``
(2-3 s and some 150 MB each; only Celery workers' adapter does).

Every python here starts with tests/ops/skyguard on PYTHONPATH, whose
sitecustomize records each process (forked gunicorn workers too) and every
attempt to import ``sky``, and with SkyPilot's site-packages behind it, so
that such an import would succeed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.ops.conftest import REPO

pytestmark = pytest.mark.e2e
SKY_PYTHON = os.environ.get("DEN_SKYPILOT_PYTHON", "")
GUARD = Path(__file__).parent / "skyguard"


@pytest.fixture
def guarded(tmp_path) -> dict[str, str]:
    if not SKY_PYTHON:
        pytest.skip("needs SkyPilot's virtualenv (scripts/test makes it: DEN_SKYPILOT_PYTHON)")
    sky_site = subprocess.run(
        [SKY_PYTHON, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.strip()
    log = tmp_path / "sky-guard.log"
    log.write_text("")
    return {"PYTHONPATH": os.pathsep.join([str(GUARD), str(REPO), sky_site]),
            "DEN_TEST_SKY_GUARD": str(log)}


def _lines(env: dict[str, str], kind: str) -> list[str]:
    text = Path(env["DEN_TEST_SKY_GUARD"]).read_text()
    return [line for line in text.splitlines() if line.startswith(kind + " ")]


def _run(env: dict[str, str], code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_the_guard_sees_an_import_of_sky(guarded):
    done = _run(guarded, "import sky; print(sky.__version__)")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("0.14")
    assert _lines(guarded, "import")


def test_import_den_does_not_import_sky(guarded):
    done = _run(guarded, (
        "import sys, den\n"
        "c = den.cluster(name='gpu', provider='aws', instance_type='A10G:1')\n"
        "print(sorted(m for m in sys.modules if m == 'sky' or m.startswith('sky.')))"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert len(_lines(guarded, "process")) == 1
    assert _lines(guarded, "import") == []


def test_a_gunicorn_worker_never_imports_sky(make_den, database, redis_server, guarded):
    den = make_den(workers=2, DATABASE_URL=database.url, REDIS_URL=f"{redis_server.url}/0",
                   CELERY_BROKER_URL=f"{redis_server.url}/1", **guarded)
    den.start_processes()
    den.seed("alice")
    headers = {"Authorization": f"Bearer {den.tokens['alice']}"}
    created = httpx.post(f"{den.url}/api/v1/resources", headers=headers, json={
        "address": "/alice/gpu", "type": "cluster",
        "config": {"provider": "aws", "instance_type": "A10G:1", "autostop_mins": 30}})
    assert created.status_code == 201, created.text
    k8s = httpx.post(f"{den.url}/api/v1/resources", headers=headers, json={
        "address": "/alice/k8s", "type": "cluster", "config": {"provider": "kubernetes"}})
    assert k8s.status_code == 201, k8s.text
    base = f"{den.url}/api/v1/resources/alice/gpu/-/cluster"
    for _ in range(6):  # a connection each, so that both worker processes answer
        assert httpx.get(base, headers=headers).json()["stop_tears_down"] is False
        assert httpx.get(f"{den.url}/api/v1/resources/alice/k8s/-/cluster",
                         headers=headers).json()["stop_tears_down"] is True
        assert httpx.get(f"{base}/events", headers=headers).status_code == 200
    assert httpx.post(f"{base}/up", headers=headers).status_code == 202
    assert httpx.post(f"{base}/stop", headers=headers).status_code in (202, 409)
    assert httpx.post(f"{base}/teardown", headers=headers).status_code == 202
    # Forked workers, each recorded; none tried to import SkyPilot.
    assert len(_lines(guarded, "process")) >= 3
    assert _lines(guarded, "import") == []
