"""Fixtures for end-to-end tests: a live den server, the compute tests' real Celery
worker (whose local daemons call back into the live server, with a 1 s auth cache),
and users who drive everything through ``den.*`` calls."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import den
from den.client import remote
from den.client import session as den_session
from tests.celery_worker import wait_for
from tests.factories import make_token

pytestmark = pytest.mark.e2e

PASSWORD = "a long test password"
#: What the compute test worker starts daemons with (DEN_CLUSTER_AUTH_CACHE_SECONDS).
AUTH_CACHE_SECONDS = 1.0


@pytest.fixture(autouse=True)
def isolated_client(tmp_path, monkeypatch) -> Iterator[None]:
    """A config file of its own, no DEN_* from the environment, fresh client state."""
    monkeypatch.setenv("DEN_CONFIG", str(tmp_path / "den" / "config.yaml"))
    for name in ("DEN_URL", "DEN_TOKEN", "DEN_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    den_session.reset()
    remote._urls.clear()
    yield
    den_session.reset()
    remote._urls.clear()
    for node in list(remote._nodes.values()):
        node.close()
    remote._nodes.clear()


@pytest.fixture
def server(live_server, settings, monkeypatch, transactional_db) -> str:
    """The live server's URL, with resource URLs on it and no login throttle."""
    from rest_framework.throttling import ScopedRateThrottle

    settings.DEN_PUBLIC_URL = live_server.url
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"login": "100000/min"})
    return str(live_server.url)


class Team:
    """alice (owns things), rita (a teammate), sam (a stranger), each with a token."""

    def __init__(self, url: str) -> None:
        from django.contrib.auth import get_user_model

        user_model = get_user_model()
        self.url = url
        self.users = {
            name: user_model.objects.create_user(name, f"{name}@example.com", PASSWORD)
            for name in ("alice", "rita", "sam")
        }
        self.tokens = {name: make_token(user) for name, user in self.users.items()}

    def login(self, name: str) -> None:
        """Become ``name`` for the den calls that follow, as ``den login`` would."""
        den.login(url=self.url, token=self.tokens[name], persist=False, verify=False)


@pytest.fixture
def team(server) -> Team:
    return Team(server)


@pytest.fixture
def cleanup_clusters(team, celery_worker) -> Iterator[Callable[[str], None]]:
    """Register cluster addresses; each is torn down after the test, whatever happened."""
    addresses: list[str] = []
    yield addresses.append
    from compute import selectors, services
    from registry.models import Resource

    alice = team.users["alice"]
    resources = [r for a in addresses if (r := Resource.objects.filter(
        owner__username=a.split("/")[1], name=a.split("/", 2)[2]).first())]
    for resource in resources:
        if selectors.cluster_state_get(resource=resource).status not in ("terminated", "down"):
            with contextlib.suppress(Exception):
                services.cluster_request_teardown(actor=alice, resource=resource)
    for resource in resources:
        with contextlib.suppress(AssertionError):
            wait_for(lambda r=resource: selectors.cluster_state_get(resource=r).status
                     in ("terminated", "down"), 20, what="teardown")


def up_cluster(name: str, register: Callable[[str], None], **config: Any) -> den.Cluster:
    """``den.cluster(name=..., provider="local").up_if_not()``, registered for teardown."""
    cluster = den.cluster(name=name, provider="local", **config)
    cluster.save()
    assert cluster.address is not None
    register(cluster.address)
    return cluster.up_if_not(timeout=60)
