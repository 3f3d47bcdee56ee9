"""Checks callers' tokens with den, with a short cache.

The daemon asks ``GET {den_url}/api/v1/auth/check?address=&level=`` with the
caller's own bearer token and caches both positive and negative answers per
(token, address, level) for ``cache_seconds``, so that a revoked token stops working
within that time while repeated calls cost a dictionary lookup. Concurrent checks
of the same key share one request to den.
"""

from __future__ import annotations

import asyncio
import hashlib
import time

import httpx

_DENIALS = {
    401: ("unauthorized", "den did not accept this token (missing, expired or revoked): "
                          "log in again or use another token"),
    403: ("forbidden", "this token may read {address} but this needs {level} access"),
    404: ("not_found", "{address} does not exist, or this token may not see it"),
}


class AuthDenied(Exception):
    """The caller may not do this; ``status`` and ``code`` say how to answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class DenAuth:
    """Token checks against den's ``/api/v1/auth/check``, cached briefly."""

    def __init__(self, den_url: str, cache_seconds: float, client: httpx.AsyncClient) -> None:
        self.url = den_url.rstrip("/") + "/api/v1/auth/check"
        self.den_url = den_url
        self.cache_seconds = cache_seconds
        self.client = client
        # key -> (expires at, HTTP status den gave, username or "")
        self._cache: dict[tuple[bytes, str, str], tuple[float, int, str]] = {}
        self._pending: dict[tuple[bytes, str, str], asyncio.Future[tuple[int, str]]] = {}

    async def check(self, token: str | None, address: str, level: str) -> str:
        """Return the caller's username, or raise AuthDenied."""
        if not token:
            raise AuthDenied(401, "unauthorized",
                             "this node needs your den token: send `Authorization: Bearer den_...`")
        key = (hashlib.sha256(token.encode()).digest(), address, level)
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            status, username = hit[1], hit[2]
        else:
            status, username = await self._ask_shared(key, token, address, level)
        if status == 200:
            return username
        code, message = _DENIALS[status]
        raise AuthDenied(status, code, message.format(address=address, level=level))

    async def _ask_shared(self, key: tuple[bytes, str, str], token: str, address: str,
                          level: str) -> tuple[int, str]:
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()
        self._pending[key] = fut
        try:
            result = await self._ask(token, address, level)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: waiters (if any) re-raise it themselves
            raise
        else:
            fut.set_result(result)
            self._store(key, result)
            return result
        finally:
            del self._pending[key]

    def _store(self, key: tuple[bytes, str, str], result: tuple[int, str]) -> None:
        now = time.monotonic()
        if len(self._cache) > 10_000:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
        self._cache[key] = (now + self.cache_seconds, result[0], result[1])

    async def _ask(self, token: str, address: str, level: str) -> tuple[int, str]:
        try:
            resp = await self.client.get(
                self.url,
                params={"address": address, "level": level},
                headers={"Authorization": f"Bearer {token}"},
            )
        except httpx.HTTPError as exc:
            raise AuthDenied(
                503, "den_unavailable",
                f"this node could not reach den at {self.den_url} to check your token "
                f"({type(exc).__name__}); try again shortly",
            ) from exc
        if resp.status_code == 200:
            try:
                username = str(resp.json().get("username", ""))
            except ValueError:
                username = ""
            return 200, username
        if resp.status_code in _DENIALS:
            return resp.status_code, ""
        raise AuthDenied(503, "den_unavailable",
                         f"den answered {resp.status_code} to this node's token check; "
                         "try again shortly")
