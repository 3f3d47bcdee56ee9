"""Putting saved functions and modules back after the daemon restarted.

A daemon holds its objects in memory, so a restart (a stop and up, a crash,
autostop) loses them. den keeps a copy of each saved one (its put body and
its code bundle, from when its owner sent it); when a call names an object
this daemon does not hold and says which saved resource it is for
(``X-Den-Address``, sent by den's client), the daemon asks den for that copy
with its own cluster token, puts it back, and runs the call. den answers only
for functions and modules whose ``system`` is this cluster, and the caller's
own access to the address is checked before anything is asked. Concurrent
first calls for one object share one restore.

A module instance comes back from its saved constructor arguments (the call's
output says that state gained since was lost), or as the pickled instance it
was put as.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import quote

import httpx

from den.node.runtime import ObjectRecord, RequestError, Runtime

log = logging.getLogger("den.node")


class RestoreFailed(Exception):
    """den could not be asked, or what it gave could not be put back."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class Restorer:
    """Fetches an object's saved copy from den and puts it into the runtime."""

    def __init__(self, den_url: str, token: str, runtime: Runtime,
                 client: httpx.AsyncClient) -> None:
        self.den_url = den_url.rstrip("/")
        self.token = token
        self.runtime = runtime
        self.client = client
        self._inflight: dict[str, asyncio.Task[tuple[ObjectRecord, str] | None]] = {}

    async def restore(self, name: str, address: str) -> tuple[ObjectRecord, str] | None:
        """Put back the saved resource at ``address`` as object ``name``; its
        record and how it came back (``"init"``, ``"value"`` or ``""``), or None
        when den holds no copy of it for this cluster (or not under that name)."""
        held = self.runtime.objects.get(name)
        if held is not None:
            return held, ""
        task = self._inflight.get(name)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._restore(name, address))
            self._inflight[name] = task
            task.add_done_callback(lambda _: self._inflight.pop(name, None))
        # shield: a caller that goes away must not cancel the others' restore.
        return await asyncio.shield(task)

    async def _get(self, address: str, suffix: str = "") -> httpx.Response:
        url = f"{self.den_url}/api/v1/resources{quote(address, safe='/')}/-/deployment{suffix}"
        try:
            return await self.client.get(url, headers={"Authorization": f"Bearer {self.token}"},
                                         timeout=httpx.Timeout(30.0, read=300.0))
        except httpx.HTTPError as exc:
            raise RestoreFailed(503, "den_unavailable",
                                f"this daemon restarted and could not reach den to put "
                                f"{address} back ({type(exc).__name__}); try again "
                                "shortly") from None

    async def _restore(self, name: str, address: str) -> tuple[ObjectRecord, str] | None:
        resp = await self._get(address)
        if resp.status_code in (403, 404):
            return None
        if resp.status_code != 200:
            raise RestoreFailed(503, "den_unavailable",
                                f"den answered {resp.status_code} when this daemon asked for "
                                f"its saved copy of {address}; try again shortly")
        found: dict[str, Any] = resp.json()
        if found.get("name") != name:
            return None
        spec = found.get("spec") or {}
        code = found.get("code")
        if code and not self.runtime.has_code(code):
            bundle = await self._get(address, "/code")
            if bundle.status_code != 200:
                raise RestoreFailed(503, "den_unavailable",
                                    f"den has no code bundle for {address} any more; its "
                                    "owner must send it again with .to(cluster)")
            try:
                await asyncio.to_thread(self.runtime.store_code, code, bundle.content)
            except RequestError as exc:
                raise RestoreFailed(500, "env_failed",
                                    f"could not unpack the saved code of {address}: "
                                    f"{exc.message}") from None
        try:
            await self.runtime.put_object(name, json.dumps(spec).encode())
        except RequestError as exc:
            raise RestoreFailed(exc.status, exc.code,
                                f"could not put {address} back after this daemon restarted: "
                                f"{exc.message}") from None
        log.info("restored %s (%s) from den's saved copy", name, address)
        return self.runtime.objects[name], str(found.get("restores_state") or "")
