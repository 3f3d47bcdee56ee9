"""Fixtures for den in real Apache Airflow 3: a live den with the compute tests' real
Celery worker, alice (who saves the pipeline's functions) and bob (whose token the
Airflow connection holds), and an Airflow home per test on a migrated database.

Airflow runs in a virtualenv of its own (scripts/test installs it from
tests/airflow/airflow-requirements.txt, cached under ~/.cache/den keyed by the
pins), with den from this checkout on its PYTHONPATH and an environment built
from nothing."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import den
from tests.celery_worker import wait_for
from tests.e2e.conftest import isolated_client, server  # noqa: F401 - fixtures
from tests.factories import UserFactory, make_token

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "airflow"
AIRFLOW_PYTHON = os.environ.get("DEN_AIRFLOW_PYTHON", "")
#: Bounds every Airflow command (a DAG run of five tasks takes well under a minute).
AIRFLOW_TIMEOUT = 600


def _python() -> str:
    if not AIRFLOW_PYTHON or not Path(AIRFLOW_PYTHON).exists():
        pytest.fail("DEN_AIRFLOW_PYTHON is not set to Airflow's python: run the tests "
                    "with scripts/test, which installs Airflow.")
    return AIRFLOW_PYTHON


def _base_env(home: Path) -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(EXAMPLE / "dags"),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "PYTHONPATH": str(REPO),
        "DEN_CONFIG": str(home / "den" / "config.yaml"),
    }


def _template_db() -> Path:
    """A migrated Airflow database, made once per Airflow install (migrating takes a
    minute on a busy machine) beside its virtualenv."""
    python = Path(_python())
    template = python.parents[1] / "den-test-airflow.db"
    if template.exists():
        return template
    with tempfile.TemporaryDirectory(prefix="den-airflow-migrate-") as tmp:
        home = Path(tmp)
        done = subprocess.run([str(python), "-m", "airflow", "db", "migrate"], cwd=home,
                              env=_base_env(home), capture_output=True, text=True,
                              timeout=AIRFLOW_TIMEOUT, check=False)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        partial = template.with_suffix(f".{os.getpid()}.tmp")
        shutil.copy(home / "airflow.db", partial)
        partial.replace(template)
    return template


class Airflow:
    """An Airflow home: its environment (with the ``den_default`` connection) and commands."""

    def __init__(self, home: Path, den_url: str, token: str) -> None:
        self.home = home
        home.mkdir(parents=True)
        shutil.copy(_template_db(), home / "airflow.db")
        self.env = _base_env(home)
        self.env["AIRFLOW_CONN_DEN_DEFAULT"] = json.dumps(
            {"conn_type": "den", "host": den_url, "password": token})

    def run(self, *args: str, extra_env: dict[str, str] | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        """``airflow <args>`` in this home; asserts success unless ``check`` is False."""
        done = subprocess.run([_python(), "-m", "airflow", *args], cwd=self.home,
                              env={**self.env, **(extra_env or {})}, capture_output=True,
                              text=True, timeout=AIRFLOW_TIMEOUT, check=False)
        if check:
            assert done.returncode == 0, (
                f"airflow {' '.join(args)} exited {done.returncode}:\n"
                f"{done.stdout[-6000:]}\n{done.stderr[-6000:]}")
        return done

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Rows from Airflow's own database (task states, XComs)."""
        with contextlib.closing(sqlite3.connect(self.home / "airflow.db")) as db:
            return list(db.execute(sql, params))

    def task_log(self, run_id: str, task_id: str) -> str:
        """The task's log file(s) for the run, as Airflow wrote them."""
        files = sorted(self.home.glob(f"logs/dag_id=*/run_id={run_id}/task_id={task_id}/*"))
        return "\n".join(f.read_text() for f in files if f.is_file())


class Pipeline:
    """alice, who owns the pipeline's functions, and bob, who runs them from Airflow."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.users = {name: UserFactory(username=name) for name in ("alice", "bob")}
        self.tokens = {name: make_token(user) for name, user in self.users.items()}

    def login(self, name: str) -> None:
        den.login(url=self.url, token=self.tokens[name], persist=False, verify=False)

    def deploy(self, share: str) -> subprocess.CompletedProcess[str]:
        """``python examples/airflow/deploy.py --share <share>`` as alice, as she would."""
        env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"),
               "DEN_URL": self.url, "DEN_TOKEN": self.tokens["alice"],
               "DEN_CONFIG": os.environ["DEN_CONFIG"]}
        done = subprocess.run([str(REPO / ".venv" / "bin" / "python"),
                               str(EXAMPLE / "deploy.py"), "--share", share],
                              env=env, capture_output=True, text=True, timeout=300,
                              check=False)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done


@pytest.fixture
def pipeline(server, celery_worker) -> Iterator[Pipeline]:  # noqa: F811 - a fixture
    team = Pipeline(server)
    yield team
    from compute import selectors, services
    from registry.models import Resource

    for resource in Resource.objects.filter(type="cluster", owner=team.users["alice"]):
        if selectors.cluster_state_get(resource=resource).status not in ("terminated", "down"):
            with contextlib.suppress(Exception):
                services.cluster_request_teardown(actor=team.users["alice"], resource=resource)
        with contextlib.suppress(AssertionError):
            wait_for(lambda r=resource: selectors.cluster_state_get(resource=r).status
                     in ("terminated", "down"), 20, what="teardown")


@pytest.fixture
def airflow_for(tmp_path, pipeline) -> Callable[[str], Airflow]:
    """``airflow_for("bob")``: an Airflow home whose den connection holds bob's token."""
    made = iter(range(100))

    def make(user: str) -> Airflow:
        return Airflow(tmp_path / f"airflow-{user}-{next(made)}", pipeline.url,
                       pipeline.tokens[user])

    return make
