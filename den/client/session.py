"""The HTTP session to a den server, shared by everything in the process.

Client operations are written once, as generators that yield :class:`Call`
objects and receive :class:`Reply` objects; :func:`run` drives them with the
blocking ``httpx.Client`` and :func:`arun` with ``httpx.AsyncClient``. Both
clients are created on first use (so ``import den`` does not import httpx), keep
one connection pool each, use timeouts, and retry idempotent requests (GET,
HEAD, PUT, DELETE) on connection errors and 502/503/504 with backoff. POST is
never retried.

Fork-safe: a forked child (a LocalExecutor's task, a multiprocessing worker)
drops the pools it inherited, whose connections belong to the parent, and
opens its own on first use.
"""

from __future__ import annotations

import json as _json
import os
import threading
import time
import weakref
from collections.abc import Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from den.client.config import DEFAULT_TIMEOUT, Settings, resolve_settings
from den.client.errors import DenError, NetworkError, NotLoggedIn, error_from_response

if TYPE_CHECKING:
    import asyncio

    import httpx

__all__ = [
    "Call",
    "Op",
    "Reply",
    "Session",
    "arun",
    "current",
    "reset",
    "run",
    "set_current",
]

T = TypeVar("T")

#: Every live session, so a forked child can drop the pools it inherited.
_sessions: weakref.WeakSet[Session] = weakref.WeakSet()

API_PREFIX = "/api/v1"
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
RETRY_STATUSES = frozenset({502, 503, 504})


class Call:
    """One API request: method, path under ``/api/v1``, query, JSON body (or raw
    ``content``, such as a code bundle), headers."""

    __slots__ = ("content", "headers", "json", "method", "params", "path")

    def __init__(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
    ) -> None:
        self.method = method.upper()
        self.path = path
        self.params = {k: v for k, v in (params or {}).items() if v is not None}
        self.json = json
        self.headers = dict(headers or {})
        self.content = content

    def __repr__(self) -> str:
        return f"Call({self.method} {self.path})"


class Reply:
    """A successful response: status, headers and the decoded JSON body (or ``None``)."""

    __slots__ = ("data", "headers", "status")

    def __init__(self, status: int, headers: Mapping[str, str], data: Any) -> None:
        self.status = status
        self.headers = headers
        self.data = data

    @property
    def etag_version(self) -> int | None:
        """The resource version carried by the ETag header, if any."""
        etag = self.headers.get("etag") if self.headers else None
        if not etag:
            return None
        etag = etag.removeprefix("W/").strip('"')
        return int(etag) if etag.isdigit() else None


# An operation: yields calls, receives replies, returns a result.
Op = Generator[Call, Reply, T]


class Session:
    """A connection to one den server with one token.

    Holds lazily created ``httpx.Client`` and ``httpx.AsyncClient`` pools. Most
    code uses the process-wide session (:func:`current`); ``den.login(...)``
    replaces it. ``transport`` and ``async_transport`` let tests plug in an
    ``httpx.MockTransport``.
    """

    def __init__(
        self,
        url: str | None,
        token: str | None = None,
        *,
        username: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = 3,
        backoff: float = 0.25,
        transport: Any = None,
        async_transport: Any = None,
        output: Callable[[str, str], None] | None = None,
    ) -> None:
        self.url = url.rstrip("/") if url else None
        #: Where remote calls' output goes: ``output(stream, text)`` with ``stream``
        #: ``stdout``, ``stderr`` or ``log`` (None: printed to this process's stdout/stderr).
        self.output = output
        self.token = token or None
        self.username = username
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._transport = transport
        self._async_transport = async_transport
        self._client: httpx.Client | None = None
        self._async_clients: dict[int, tuple[asyncio.AbstractEventLoop, httpx.AsyncClient]] = {}
        self._lock = threading.Lock()
        _sessions.add(self)

    def _forget_pools(self) -> None:
        """Drop the pools without closing them (in a forked child they are the parent's)."""
        self._client = None
        self._async_clients = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> Session:
        """A session for resolved :class:`Settings`."""
        return cls(
            settings.url,
            settings.token,
            username=settings.username,
            timeout=settings.timeout,
            **kwargs,
        )

    def __repr__(self) -> str:
        return f"Session(url={self.url!r}, username={self.username!r})"

    # -- plumbing ---------------------------------------------------------------

    @property
    def api_url(self) -> str:
        """The API root, e.g. ``http://127.0.0.1:8000/api/v1``."""
        if not self.url:
            raise NotLoggedIn(
                "No den server is configured: run `den login --url URL`, call "
                "den.login(url=..., token=...), or set DEN_URL and DEN_TOKEN."
            )
        return self.url + API_PREFIX

    def _headers(self) -> dict[str, str]:
        from den import __version__

        headers = {"Accept": "application/json", "User-Agent": f"den-client/{__version__}"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def _timeout(self) -> httpx.Timeout:
        import httpx

        return httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0))

    def client(self) -> httpx.Client:
        """The blocking HTTP client, created on first use."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import httpx

                    self._client = httpx.Client(
                        headers=self._headers(),
                        timeout=self._timeout(),
                        transport=self._transport,
                        follow_redirects=False,
                    )
        return self._client

    def async_client(self) -> httpx.AsyncClient:
        """The async HTTP client for the running event loop, created on first use.

        A pool is bound to the loop it was made in, so each loop gets its own.
        """
        import asyncio

        import httpx

        loop = asyncio.get_running_loop()
        entry = self._async_clients.get(id(loop))
        if entry is None or entry[0] is not loop:
            client = httpx.AsyncClient(
                headers=self._headers(),
                timeout=self._timeout(),
                transport=self._async_transport,
                follow_redirects=False,
            )
            # Forget pools of loops that have closed.
            self._async_clients = {
                key: value for key, value in self._async_clients.items() if not value[0].is_closed()
            }
            self._async_clients[id(loop)] = (loop, client)
            return client
        return entry[1]

    def close(self) -> None:
        """Close the blocking pool (async pools close with their loop or :meth:`aclose`)."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    async def aclose(self) -> None:
        """Close the async pool of the running loop and the blocking pool."""
        import asyncio

        entry = self._async_clients.pop(id(asyncio.get_running_loop()), None)
        if entry is not None:
            await entry[1].aclose()
        self.close()

    def _delay(self, attempt: int) -> float:
        import random

        return float(self.backoff * (2**attempt) * (0.5 + random.random()))

    def _network_error(self, call: Call, exc: Exception) -> NetworkError:
        reason = str(exc) or type(exc).__name__
        return NetworkError(
            f"Could not reach the den server at {self.url} ({reason}). Check that it is "
            "running and the URL is right, or run `den login` to point at another server.",
            url=self.url,
        )

    def _reply(self, call: Call, response: httpx.Response) -> Reply:
        status = response.status_code
        data: Any = None
        if response.content:
            try:
                data = _json.loads(response.content)
            except ValueError:
                data = response.text
        if status >= 400:
            retry_after: float | None = None
            header = response.headers.get("retry-after")
            if header and header.replace(".", "", 1).isdigit():
                retry_after = float(header)
            raise error_from_response(
                status, data, url=str(response.request.url), retry_after=retry_after
            )
        if status >= 300:
            raise DenError(
                f"The den server answered {call.method} {call.path} with a redirect "
                f"({status}) to {response.headers.get('location')}; check the server URL "
                f"({self.url}).",
                status=status,
                url=str(response.request.url),
            )
        return Reply(status, response.headers, data)

    def _retryable(self, call: Call, exc: Exception | None, status: int | None) -> bool:
        if call.method not in IDEMPOTENT:
            return False
        if status is not None:
            return status in RETRY_STATUSES
        import httpx

        # Timeouts after the request was sent are not retried: they would
        # multiply the wait. Connection failures and dropped keep-alives are.
        return isinstance(
            exc,
            # A tuple, not a union: this runs on nodes' Python 3.9 too.
            (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError),
        )

    def _request_kwargs(self, call: Call) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"params": call.params or None, "headers": call.headers or None}
        if call.json is not None:
            kwargs["content"] = _json.dumps(call.json, separators=(",", ":")).encode()
            headers = dict(call.headers)
            headers["Content-Type"] = "application/json"
            kwargs["headers"] = headers
        elif call.content is not None:
            kwargs["content"] = call.content
            kwargs["headers"] = {"Content-Type": "application/octet-stream", **call.headers}
        return kwargs

    # -- sending ------------------------------------------------------------------

    def send(self, call: Call) -> Reply:
        """Send one call with the blocking client, retrying when that is safe."""
        import httpx

        url = self.api_url + call.path
        client = self.client()
        kwargs = self._request_kwargs(call)
        attempt = 0
        while True:
            try:
                response = client.request(call.method, url, **kwargs)
            except httpx.TransportError as exc:
                if attempt < self.retries and self._retryable(call, exc, None):
                    time.sleep(self._delay(attempt))
                    attempt += 1
                    continue
                raise self._network_error(call, exc) from exc
            if attempt < self.retries and self._retryable(call, None, response.status_code):
                response.close()
                time.sleep(self._delay(attempt))
                attempt += 1
                continue
            return self._reply(call, response)

    async def asend(self, call: Call) -> Reply:
        """Send one call with the async client, retrying when that is safe."""
        import asyncio

        import httpx

        url = self.api_url + call.path
        client = self.async_client()
        kwargs = self._request_kwargs(call)
        attempt = 0
        while True:
            try:
                response = await client.request(call.method, url, **kwargs)
            except httpx.TransportError as exc:
                if attempt < self.retries and self._retryable(call, exc, None):
                    await asyncio.sleep(self._delay(attempt))
                    attempt += 1
                    continue
                raise self._network_error(call, exc) from exc
            if attempt < self.retries and self._retryable(call, None, response.status_code):
                await response.aclose()
                await asyncio.sleep(self._delay(attempt))
                attempt += 1
                continue
            return self._reply(call, response)


def run(op: Op[T], session: Session | None = None) -> T:
    """Drive an operation with blocking I/O and return its result."""
    session = session or current()
    try:
        call = next(op)
        while True:
            try:
                reply = session.send(call)
            except DenError as exc:
                call = op.throw(exc)
            else:
                call = op.send(reply)
    except StopIteration as stop:
        result: T = stop.value
        return result


async def arun(op: Op[T], session: Session | None = None) -> T:
    """Drive an operation with async I/O and return its result."""
    session = session or current()
    try:
        call = next(op)
        while True:
            try:
                reply = await session.asend(call)
            except DenError as exc:
                call = op.throw(exc)
            else:
                call = op.send(reply)
    except StopIteration as stop:
        result: T = stop.value
        return result


_current: Session | None = None
_current_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _current_lock
    _current_lock = threading.Lock()  # another thread may have held it at the fork
    for session in list(_sessions):
        session._forget_pools()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)


def current() -> Session:
    """The process-wide session, built from the environment and config file on first use."""
    global _current
    if _current is None:
        with _current_lock:
            if _current is None:
                _current = Session.from_settings(resolve_settings())
    return _current


def set_current(session: Session | None) -> None:
    """Replace the process-wide session (closing the old pool); ``None`` re-reads config."""
    global _current
    with _current_lock:
        old, _current = _current, session
    if old is not None and old is not session:
        old.close()


def reset() -> None:
    """Forget the process-wide session; the next call re-reads env vars and the config file."""
    set_current(None)
