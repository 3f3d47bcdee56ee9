"""Fixtures for client tests: an isolated config file and a fresh process-wide session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def isolated_client(tmp_path, monkeypatch) -> Iterator[Any]:
    """Point DEN_CONFIG at a temp file, clear DEN_URL/DEN_TOKEN, reset the session."""
    from den.client import session

    monkeypatch.setenv("DEN_CONFIG", str(tmp_path / "den" / "config.yaml"))
    for name in ("DEN_URL", "DEN_TOKEN", "DEN_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    session.reset()
    yield tmp_path / "den" / "config.yaml"
    session.reset()


@pytest.fixture
def mock_session() -> Callable[..., Any]:
    """Make a session whose requests go to ``handler(request) -> httpx.Response``.

    The session becomes the process-wide one; ``session.requests`` records requests.
    """
    import httpx

    from den.client.session import Session, set_current

    def make(handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any) -> Session:
        requests: list[httpx.Request] = []

        def record(request: httpx.Request) -> httpx.Response:
            requests.append(request)
            return handler(request)

        async def arecord(request: httpx.Request) -> httpx.Response:
            return record(request)

        kwargs.setdefault("username", "alice")
        kwargs.setdefault("backoff", 0.0)
        session = Session(
            "http://den.test",
            "den_testtoken",
            transport=httpx.MockTransport(record),
            async_transport=httpx.MockTransport(arecord),
            **kwargs,
        )
        session.requests = requests  # type: ignore[attr-defined]
        set_current(session)
        return session

    return make
