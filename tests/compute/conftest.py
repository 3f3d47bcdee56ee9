"""Fixtures for compute tests: a real Celery worker on the test database, and
local clusters whose node daemons call back into pytest-django's live server.

The worker consumes a queue of its own (``compute-test-<random>``), so that
other test runs sharing the same Redis never take its messages, nor it theirs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import cloudpickle
import pytest
from celery.app.task import Task

from compute import selectors
from compute.models import ClusterState
from registry import services as registry_services
from registry.models import Resource
from tests.celery_worker import Worker, node_processes, wait_for  # noqa: F401 (re-exported)
from tests.compute import remote_fns
from tests.factories import UserFactory, make_token

# Send the test functions by value: a local daemon that runs as its own
# unprivileged user (den as root) cannot import this repository's modules.
cloudpickle.register_pickle_by_value(remote_fns)


@pytest.fixture
def people(transactional_db) -> dict[str, Any]:
    """alice (owner), rita (will get read), sam (a stranger), with tokens."""
    users = {name: UserFactory(username=name) for name in ("alice", "rita", "sam")}
    return {"users": users, "tokens": {name: make_token(user) for name, user in users.items()}}


@pytest.fixture
def make_cluster(people) -> Callable[..., Resource]:
    def make(name: str = "cpu", **config: Any) -> Resource:
        return registry_services.resource_create(
            actor=people["users"]["alice"], name=name, type="cluster",
            config={"provider": "local", **config},
        )

    return make


def state_of(resource: Resource) -> ClusterState:
    return selectors.cluster_state_get(resource=resource)


def wait_status(resource: Resource, status: str, timeout: float = 40.0,
                worker: Worker | None = None) -> ClusterState:
    def check() -> ClusterState | None:
        state = state_of(resource)
        if state.status == "failed" and status != "failed":
            raise AssertionError(f"cluster failed: {state.message}")
        return state if state.status == status else None

    try:
        return wait_for(check, timeout, what=f"{resource.address} to be {status}")
    except AssertionError:
        if worker is not None:
            print(worker.log()[-5000:])
        raise


@pytest.fixture
def up_cluster(celery_worker, make_cluster, people) -> Iterator[Callable[..., Resource]]:
    """Bring local clusters up through the service (as the API does) and wait;
    tear every one down afterwards, whatever the test did."""
    made: list[Resource] = []
    alice = people["users"]["alice"]

    def up(name: str = "cpu", **config: Any) -> Resource:
        from compute import services

        resource = make_cluster(name, **config)
        made.append(resource)
        services.cluster_request_up(actor=alice, resource=resource)
        wait_status(resource, "up", worker=celery_worker)
        return resource

    yield up
    from compute import services

    made = [r for r in made if r.pk is not None]  # a test may have deleted some
    for resource in made:
        if state_of(resource).status != "terminated":
            services.cluster_request_teardown(actor=alice, resource=resource)
    for resource in made:
        with contextlib.suppress(AssertionError):
            wait_status(resource, "terminated", timeout=20)


class Outbox:
    """Task messages the services sent, kept to be run by the test."""

    def __init__(self) -> None:
        self.sent: list[tuple[Task, tuple[Any, ...], dict[str, Any]]] = []

    def take(self, name: str) -> tuple[Task, tuple[Any, ...], dict[str, Any]]:
        for index, (task, args, kwargs) in enumerate(self.sent):
            if task.name == name:
                del self.sent[index]
                return task, args, kwargs
        raise AssertionError(f"no {name} message was sent (sent: "
                             f"{[t.name for t, _, _ in self.sent]})")

    def run(self, name: str, task_id: str) -> Any:
        task, args, kwargs = self.take(name)
        return task.apply(args=args, kwargs=kwargs, task_id=task_id).get(propagate=False)


@pytest.fixture
def outbox(monkeypatch) -> Outbox:
    box = Outbox()

    def capture(self: Task, args: Any = None, kwargs: Any = None, **options: Any) -> None:
        box.sent.append((self, tuple(args or ()), dict(kwargs or {})))

    monkeypatch.setattr(Task, "apply_async", capture)
    return box


# -- ssh clusters on test hosts (tests/sshhosts.py) -----------------------------------


def ssh_creds_secret(owner, host, name: str = "box-key") -> Resource:
    """A secret of ``owner`` holding the test hosts' private key, as
    ``den.cluster(..., ssh_creds=...)`` saves it."""
    secret = registry_services.resource_create(actor=owner, name=name, type="secret",
                                               config={"provider": "ssh"})
    registry_services.secret_set_values(actor=owner, resource=secret, values={
        "ssh_user": host.user, "private_key": host.private_key_pem})
    return secret


@pytest.fixture
def ssh_cluster(celery_worker, ssh_site, people) -> Iterator[Callable[..., Resource]]:
    """Make ssh clusters of alice's on the session's test hosts; whatever a
    test did, tear each down afterwards and check no daemon is left."""
    from compute import services

    alice = people["users"]["alice"]
    made: list[Resource] = []
    secrets: dict[str, Resource] = {}

    def make(name: str = "box", hosts: list[Any] | None = None, **config: Any) -> Resource:
        hosts = ssh_site.hosts if hosts is None else hosts
        if "creds" not in config:
            if "key" not in secrets:
                secrets["key"] = ssh_creds_secret(alice, hosts[0])
            config["creds"] = secrets["key"].address
        config = {k: v for k, v in config.items() if v is not None}  # creds=None: none
        resource = registry_services.resource_create(
            actor=alice, name=name, type="cluster",
            config={"provider": "ssh", "ips": [h.ip for h in hosts],
                    "ssh_user": hosts[0].user, **config})
        made.append(resource)
        return resource

    yield make
    for resource in [r for r in made if r.pk is not None]:
        if state_of(resource).status not in ("terminated", "down"):
            with contextlib.suppress(Exception):
                services.cluster_request_teardown(actor=alice, resource=resource)
    for resource in [r for r in made if r.pk is not None]:
        with contextlib.suppress(AssertionError):
            wait_status(resource, "terminated", timeout=30)
    for host in ssh_site.hosts:
        for pid, args in host.processes().items():
            if "den.node" in args:
                import os
                import signal

                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
