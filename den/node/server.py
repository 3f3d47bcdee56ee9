"""Runs the daemon: uvicorn, the base env, heartbeats to den, and autostop."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import time
from collections.abc import Callable

import httpx

from den.node.app import NodeApp
from den.node.auth import DenAuth
from den.node.config import NodeConfig, parse_args
from den.node.envs import EnvError, EnvSpec
from den.node.hardening import set_non_dumpable
from den.node.httpserver import HttpServer
from den.node.restore import Restorer
from den.node.runtime import Runtime

log = logging.getLogger("den.node")


class DenLink:
    """Heartbeats to den with the cluster's token; remembers whether den answers."""

    def __init__(self, config: NodeConfig, runtime: Runtime, client: httpx.AsyncClient) -> None:
        self.config = config
        self.runtime = runtime
        self.client = client
        self.reachable = False
        self._warned: set[str] = set()

    def _warn_once(self, key: str, msg: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(msg, *args)

    async def beat(self) -> None:
        """Send one heartbeat; tolerate den not having the endpoint (yet)."""
        cfg = self.config
        if not cfg.den_url or not cfg.cluster_address:
            self.reachable = False
            return
        url = f"{cfg.den_url}/api/v1/resources{cfg.cluster_address}/-/cluster/heartbeat"
        body = {
            # timezone.utc, not datetime.UTC: the daemon runs on Python 3.9 too.
            "last_activity": dt.datetime.fromtimestamp(
                self.runtime.last_activity, dt.timezone.utc  # noqa: UP017
            ).isoformat(),
            "calls_in_flight": self.runtime.calls_in_flight,
            "objects": len(self.runtime.objects),
        }
        headers = {"Authorization": f"Bearer {cfg.cluster_token}"} if cfg.cluster_token else {}
        try:
            resp = await self.client.post(url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            self.reachable = False
            self._warn_once("unreachable", "den at %s is unreachable for heartbeats (%s)",
                            cfg.den_url, type(exc).__name__)
            return
        self.reachable = True
        if resp.status_code >= 400:
            self._warn_once(f"status-{resp.status_code}", "den answered %s to a heartbeat",
                            resp.status_code)

    async def run(self, request_stop: Callable[[], None]) -> None:
        """Heartbeat forever; stop the daemon when idle too long and den is gone."""
        cfg = self.config
        autostop = cfg.autostop_mins * 60 if cfg.autostop_mins > 0 else None
        interval = cfg.heartbeat_seconds
        if autostop is not None:
            interval = min(interval, max(autostop / 4, 0.5))
        while True:
            await self.beat()
            if autostop is not None and self.runtime.calls_in_flight == 0:
                idle = time.time() - self.runtime.last_activity
                if idle >= autostop and not self.reachable:
                    log.warning("idle for %.0f s and den is unreachable: stopping (autostop)",
                                idle)
                    request_stop()
                    return
            await asyncio.sleep(interval)


def build_app(config: NodeConfig) -> tuple[NodeApp, Runtime]:
    """The ASGI app with its start-up and shutdown hooks wired."""
    config.workdir.mkdir(parents=True, exist_ok=True)
    runtime = Runtime(config.workdir)
    client = httpx.AsyncClient(timeout=httpx.Timeout(5.0),
                               limits=httpx.Limits(max_connections=64))
    auth = (
        DenAuth(config.den_url, config.auth_cache_seconds, client)
        if config.den_auth and config.den_url
        else None
    )
    app = NodeApp(config, runtime, auth)
    if auth is not None and config.den_url and config.cluster_token:
        app.restorer = Restorer(config.den_url, config.cluster_token, runtime, client)
    link = DenLink(config, runtime, client)
    tasks: list[asyncio.Task[None]] = []

    async def startup() -> None:
        try:
            await runtime.ensure_env(EnvSpec())
        except EnvError as exc:
            log.error("%s", exc)
        tasks.append(asyncio.get_running_loop().create_task(link.run(app.request_stop)))
        log.info("den node %s:%s serving (den auth %s)", config.host, config.port,
                 "on" if auth else "off")

    async def shutdown() -> None:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await runtime.stop()
        await client.aclose()

    app.on_startup.append(startup)
    app.on_shutdown.append(shutdown)
    return app, runtime


def main(argv: list[str] | None = None) -> None:
    """``python -m den.node``: parse flags and serve until stopped.

    The daemon marks itself non-dumpable before it reads its token, so that
    the code it runs (same OS user, in its env workers) cannot read the
    token from its memory or ``/proc``, and drops every ``DEN_NODE_*``
    variable, so that no child it starts inherits one.
    """
    set_non_dumpable()
    config = parse_args(argv)
    for name in [n for n in os.environ if n.startswith("DEN_NODE_")]:
        del os.environ[name]
    config.check()
    logging.basicConfig(level=config.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app, _ = build_app(config)
    if config.http_server == "uvicorn":
        _serve_uvicorn(app, config)
        return
    server = HttpServer(app, config.host, config.port,
                        max_body=max(config.max_body_mb, config.max_code_mb) << 20)
    app.request_stop = server.request_stop
    try:
        import uvloop
    except ImportError:
        asyncio.run(server.serve())
    else:
        uvloop.run(server.serve())


def _serve_uvicorn(app: NodeApp, config: NodeConfig) -> None:
    import uvicorn

    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    try:
        import httptools  # noqa: F401

        http = "httptools"
    except ImportError:
        http = "h11"
    server = uvicorn.Server(uvicorn.Config(
        app, host=config.host, port=config.port, loop=loop, http=http, lifespan="on",
        log_level=config.log_level.lower(), access_log=False, timeout_keep_alive=75,
        server_header=False,
    ))

    def request_stop() -> None:
        server.should_exit = True

    app.request_stop = request_stop
    server.run()
