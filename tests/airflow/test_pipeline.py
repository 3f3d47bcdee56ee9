"""The seeds' pipeline from examples/airflow/ in real Airflow 3, calling den as bob:
``airflow dags test`` (tasks in one process) and a LocalExecutor (a process per task)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time

import pytest

import den

from .conftest import AIRFLOW_TIMEOUT, Airflow, _python

pytestmark = pytest.mark.e2e

DAG = "den_pipeline"
STEPS = ("preprocess", "split", "train", "predict", "accuracy")
#: How the train step's stderr line shows in a task log: at warning level.
TRAIN_WARNING = re.compile(r"\[warning\s*\] train: stopped after 50 epochs")


def _last_run(af: Airflow) -> str:
    rows = af.query("SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", DAG)
    assert rows, "no DAG run recorded"
    return str(rows[0][0])


def _states(af: Airflow, run_id: str) -> dict[str, str | None]:
    return dict(af.query("SELECT task_id, state FROM task_instance WHERE run_id = ?", run_id))


def _assert_refs_between_steps(af: Airflow, run_id: str) -> None:
    """Every step but the last passed a den.Ref (a few hundred bytes), never the data."""
    xcoms = {task: value for task, value in af.query(
        "SELECT task_id, value FROM xcom WHERE run_id = ? AND key = 'return_value'", run_id)}
    assert set(xcoms) == set(STEPS)
    for step in STEPS[:-1]:
        raw = xcoms[step]
        assert isinstance(raw, str) and len(raw) < 500, (step, raw)
        stored = json.loads(raw)
        assert stored["__classname__"] == "den.client.refs.Ref", stored
        ref = den.Ref.from_json(stored["__data__"])
        assert (ref.cluster, ref.function, ref.owner) == (
            "/alice/pipeline-cpu", f"/alice/{step}", "bob")
    assert isinstance(xcoms["accuracy"], float) and 0.75 < xcoms["accuracy"] <= 1.0


def test_the_pipeline_runs_in_airflow_with_refs_between_steps(pipeline, airflow_for) -> None:
    pipeline.deploy(share="bob")
    af = airflow_for("bob")
    done = af.run("dags", "test", DAG)
    run_id = _last_run(af)
    assert _states(af, run_id) == dict.fromkeys(STEPS, "success")
    _assert_refs_between_steps(af, run_id)
    # Remote output reaches the task log: stdout at info, stderr at warning (not error).
    assert "preprocess: 2000 rows, 6 features" in done.stdout
    assert TRAIN_WARNING.search(done.stdout), done.stdout[-4000:]
    assert "accuracy: 0.8" in done.stdout

    # alice takes back bob's access to the first step: the run fails there, readably.
    pipeline.login("alice")
    den.function(name="/alice/preprocess").revoke("bob")
    failed = af.run("dags", "test", DAG, check=False)
    assert failed.returncode != 0
    run_id = _last_run(af)
    states = _states(af, run_id)
    assert states["preprocess"] == "failed"
    assert all(states[step] in ("upstream_failed", None) for step in STEPS[1:]), states
    assert re.search(r"den\.client\.errors\.NotFound: .*/alice/preprocess", failed.stdout), (
        failed.stdout[-4000:])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_pipeline_runs_with_a_local_executor(pipeline, airflow_for) -> None:
    pipeline.deploy(share="bob")
    af = airflow_for("bob")
    port = _free_port()
    executor = {
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": "den-tests-airflow-jwt-secret-0123456789",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__HOST": "127.0.0.1",
    }
    api = subprocess.Popen([_python(), "-m", "airflow", "api-server", "--port", str(port),
                            "--host", "127.0.0.1"], cwd=af.home,
                           env={**af.env, **executor}, stdout=subprocess.DEVNULL,
                           stderr=(af.home / "api-server.log").open("w"))
    try:
        deadline = time.monotonic() + AIRFLOW_TIMEOUT / 2
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert api.poll() is None, (af.home / "api-server.log").read_text()[-4000:]
            assert time.monotonic() < deadline, "Airflow's API server did not start"
            time.sleep(0.5)
        done = af.run("dags", "test", DAG, "--use-executor", extra_env=executor)
    finally:
        api.terminate()
        try:
            api.wait(30)
        except subprocess.TimeoutExpired:
            api.kill()
            api.wait(10)
    run_id = _last_run(af)
    assert _states(af, run_id) == dict.fromkeys(STEPS, "success"), done.stdout[-4000:]
    _assert_refs_between_steps(af, run_id)
    # Each task ran in a process of its own, and wrote its own log.
    train = _records(af.task_log(run_id, "train"))
    assert ("warning", "train: stopped after 50 epochs (no early stopping)") in train, train
    assert ("info", "preprocess: 2000 rows, 6 features") in _records(
        af.task_log(run_id, "preprocess"))
    assert any(event.startswith("accuracy: 0.8")
               for _, event in _records(af.task_log(run_id, "accuracy")))


def _records(log: str) -> list[tuple[str, str]]:
    """(level, message) of each record in a task's log file (JSON lines)."""
    records = []
    for line in log.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            records.append((str(record.get("level")), str(record.get("event"))))
    return records


def _installed_metadata(where) -> str:
    """A ``den_ml`` dist-info built from pyproject.toml's entry points (what ``pip
    install den-ml`` writes), for Airflow's provider discovery."""
    import tomllib

    from .conftest import REPO

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    info = where / "den_ml-0.0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\n"
                                   "Version: 0.0.0\n")
    lines = []
    for group, entries in project["entry-points"].items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {value}" for name, value in entries.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return str(where)


def test_den_is_a_connection_type_whose_test_button_works(pipeline, airflow_for) -> None:
    af = airflow_for("bob")
    # Parsing the DAG file needs no den: no connection, no den URL, and it parses.
    no_den = {**af.env}
    del no_den["AIRFLOW_CONN_DEN_DEFAULT"]
    parsed = subprocess.run([_python(), "-m", "airflow", "dags", "list", "--local", "-o", "json"],
                            cwd=af.home, env=no_den, capture_output=True, text=True,
                            timeout=AIRFLOW_TIMEOUT, check=True)
    dags = json.loads(parsed.stdout.strip().splitlines()[-1])
    assert [d["dag_id"] for d in dags] == [DAG], parsed.stdout + parsed.stderr

    site = _installed_metadata(af.home / "site")
    env = {"PYTHONPATH": f"{af.env['PYTHONPATH']}:{site}",
           "AIRFLOW__CORE__TEST_CONNECTION": "Enabled"}
    hooks = json.loads(af.run("providers", "hooks", "-o", "json", extra_env=env).stdout)
    den_hook = [h for h in hooks if h.get("connection_type") == "den"]
    assert den_hook and den_hook[0]["class"] == "den.airflow.DenHook", hooks
    tested = af.run("connections", "test", "den_default", extra_env=env)
    assert "Connection success!" in tested.stdout, tested.stdout + tested.stderr

    # A connection without a token, or with a wrong one, fails with den's reason.
    for conn, reason in (({"host": pipeline.url}, "has no token"),
                         ({"host": pipeline.url, "password": "den_wrong"}, "token")):
        env["AIRFLOW_CONN_DEN_DEFAULT"] = json.dumps({"conn_type": "den", **conn})
        failed = af.run("connections", "test", "den_default", extra_env=env, check=False)
        out = failed.stdout + failed.stderr
        assert "Connection failed!" in out and reason in out, out
