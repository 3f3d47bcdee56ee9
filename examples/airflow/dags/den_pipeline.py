"""The seeds' pipeline in Airflow 3: ``preprocess >> split >> train >> predict >> accuracy``,
each task calling a function saved in den (``examples/airflow/deploy.py`` saves them).

Every task runs its step on den's cluster as the ``den_default`` connection's token
(best a service account's). The arrays stay on the cluster: each task returns a
``den.Ref`` (a few hundred bytes in the XCom) that the next step's function gets
as the array itself. Only ``accuracy`` brings a value back.

Parsing this file makes no den call: hooks and functions are made inside tasks.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from den.airflow import DenHook

DEN_CONN_ID = "den_default"


def step(name: str) -> Any:
    """The saved function ``/<den_owner>/<name>`` (``den_owner``: the run's parameter)."""
    owner = get_current_context()["params"]["den_owner"]
    return DenHook(den_conn_id=DEN_CONN_ID).function(f"/{owner}/{name}")


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"den_owner": Param("alice", type="string",
                               description="whose saved functions to run")},
    tags=["den"],
)
def den_pipeline() -> None:
    @task
    def preprocess() -> Any:
        return step("preprocess").remote()

    @task
    def split(data: Any) -> Any:
        return step("split").remote(data)

    @task
    def train(sets: Any) -> Any:
        return step("train").remote(sets)

    @task
    def predict(model: Any, sets: Any) -> Any:
        return step("predict").remote(model, sets)

    @task
    def accuracy(predictions: Any, sets: Any) -> float:
        value: float = step("accuracy")(predictions, sets)
        print(f"accuracy: {value:.3f}")
        return value

    sets = split(preprocess())
    accuracy(predict(train(sets), sets), sets)


den_pipeline()
