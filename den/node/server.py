"""Runs the daemon: uvicorn, the base env, heartbeats to den, and autostop."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import ssl
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
    """Heartbeats to den with the cluster's token; remembers whether den answers,
    and takes part in autostop.

    Autostop never stops a call: when den's answer asks for it (the cluster sat
    idle past its autostop), the daemon stops taking calls only if none is in
    flight at that moment (``Runtime.draining``; the check and the switch happen
    with no await between, and calls count themselves before they await), and
    tells den at once, which then stops it. With a call in flight it carries on,
    and den's request lapses. When den is unreachable, the daemon stops itself
    once idle that long (its failsafe). den's answers also carry the autostop in
    force, which may have changed since the daemon started.
    """

    #: How long the daemon waits, draining, for den to stop it before it takes
    #: calls again (den may have gone away meanwhile).
    DRAIN_GIVE_UP_SECONDS = 60.0

    def __init__(self, config: NodeConfig, runtime: Runtime, client: httpx.AsyncClient) -> None:
        self.config = config
        self.runtime = runtime
        self.client = client
        self.reachable = False
        self.autostop_mins = config.autostop_mins
        self._drained_at: float | None = None
        self._warned: set[str] = set()

    def _warn_once(self, key: str, msg: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(msg, *args)

    async def beat(self) -> None:
        """Send one heartbeat and act on den's answer; tolerate den not having
        the endpoint (yet), or answering without a body (an older den)."""
        cfg = self.config
        if not cfg.den_url or not cfg.cluster_address:
            self.reachable = False
            return
        url = f"{cfg.den_url}/api/v1/resources{cfg.cluster_address}/-/cluster/heartbeat"
        rt = self.runtime
        body = {
            # timezone.utc, not datetime.UTC: the daemon runs on Python 3.9 too.
            "last_activity": dt.datetime.fromtimestamp(
                rt.last_activity, dt.timezone.utc  # noqa: UP017
            ).isoformat(),
            "calls_in_flight": rt.calls_in_flight,
            "objects": len(rt.objects),
            "draining": rt.draining,
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
            return
        try:
            answer = resp.json() if resp.content else {}
        except ValueError:
            answer = {}
        if isinstance(answer, dict):
            await self._follow(answer)

    async def _follow(self, answer: dict[str, object]) -> None:
        rt = self.runtime
        mins = answer.get("autostop_mins")
        if isinstance(mins, (int, float)) and not isinstance(mins, bool):
            self.autostop_mins = float(mins)
        if answer.get("stop"):
            return  # den is stopping this daemon: keep refusing calls meanwhile
        if answer.get("autostop") and not rt.draining:
            if rt.calls_in_flight == 0:
                rt.draining = True
                self._drained_at = time.monotonic()
                log.info("idle past autostop: taking no more calls; asking den to stop this "
                         "daemon")
                await self.beat()  # tell den now, not a heartbeat later
            return
        if rt.draining and not answer.get("autostop"):
            self._undrain("den no longer asks for autostop")

    def _undrain(self, why: str) -> None:
        self.runtime.draining = False
        self._drained_at = None
        log.info("taking calls again (%s)", why)

    async def run(self, request_stop: Callable[[], None]) -> None:
        """Heartbeat forever; stop the daemon when idle too long and den is gone."""
        cfg = self.config
        while True:
            await self.beat()
            rt = self.runtime
            rt.sweep_refs()  # free expired refs' objects even if nobody asks for them
            autostop = self.autostop_mins * 60 if self.autostop_mins > 0 else None
            interval = cfg.heartbeat_seconds
            if autostop is not None:
                interval = min(interval, max(autostop / 4, 0.5))
            if (rt.draining and self._drained_at is not None
                    and time.monotonic() - self._drained_at > self.DRAIN_GIVE_UP_SECONDS):
                self._undrain("den did not stop it")
            if autostop is not None and rt.calls_in_flight == 0 and not self.reachable:
                idle = time.time() - rt.last_activity
                if idle >= autostop:
                    log.warning("idle for %.0f s and den is unreachable: stopping (autostop)",
                                idle)
                    rt.draining = True
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
        # Idle time counts from when the daemon serves, not from while it started.
        runtime.touch()
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
                        max_body=max(config.max_body_mb, config.max_code_mb) << 20,
                        ssl_context=tls_context(config))
    app.request_stop = server.request_stop
    try:
        import uvloop
    except ImportError:
        asyncio.run(server.serve())
    else:
        uvloop.run(server.serve())


def tls_context(config: NodeConfig) -> ssl.SSLContext | None:
    """The server side of HTTPS, when the daemon was given a certificate: TLS
    1.2 or newer, the certificate and key den made for this cluster."""
    if config.tls_cert_file is None or config.tls_key_file is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(config.tls_cert_file), str(config.tls_key_file))
    return context


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
        ssl_certfile=str(config.tls_cert_file) if config.tls_cert_file else None,
        ssl_keyfile=str(config.tls_key_file) if config.tls_key_file else None,
    ))

    def request_stop() -> None:
        server.should_exit = True

    app.request_stop = request_stop
    server.run()
