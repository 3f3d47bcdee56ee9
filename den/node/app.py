"""The daemon's HTTP API as a raw ASGI app (see den.node's docstring for the routes).

Raw ASGI rather than a framework: a call is the hot path, and routing it is one
``split``; the app adds a few microseconds to uvicorn's own cost per request.
Authorisation runs before the body is read, so an unauthorised request's body is
never even received, let alone unpickled (the daemon unpickles nothing anyway: the
env's worker does, and only for authorised calls).

Who may send what is decided here, never in the worker: a caller whose token has
``write`` on the cluster (asked of den like every other check, and cached the same
way) is *trusted*: its pickles are unpickled in full and it may call private
(``_``) methods. Every other caller (read access to the function or the cluster, the
cluster's own token) may call public methods only, and its pickles are decoded as
plain data (:mod:`den.node.safepickle`), since unpickling runs code. The call's IPC
meta tells the worker which (``"t"``). With den auth off, everyone is trusted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import secrets
import signal
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from den.node import __version__
from den.node import protocol as p
from den.node.auth import AuthDenied, DenAuth
from den.node.config import NodeConfig
from den.node.envs import EnvError, EnvSpec, EnvWorker, Inbox, child_env
from den.node.restore import RestoreFailed, Restorer
from den.node.runtime import ADDRESS_RE, ObjectRecord, RefRecord, RequestError, Runtime

log = logging.getLogger("den.node")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON_HEADERS = [(b"content-type", b"application/json")]
_FRAMES_CT = p.FRAMES.encode()
_NDJSON_CT = p.NDJSON.encode()
_CLOUDPICKLE_CT = p.CLOUDPICKLE.encode()
_OOB_CT = p.OOB_PICKLE.encode()
_ADDRESS_HEADER = p.ADDRESS_HEADER.encode()
_KEEP_HEADER = p.KEEP_HEADER.encode()
_REFS_HEADER = p.REFS_HEADER.encode()
#: The longest a ref is kept (a caller asks for less with X-Den-Keep).
MAX_REF_SECONDS = 7 * 86400
_MB = 1 << 20


class HttpError(Exception):
    """Answer the request with a JSON error body."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


async def send_json(send: Send, status: int, body: bytes,
                    headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [*(headers or _JSON_HEADERS), (b"content-length", str(len(body)).encode())],
    })
    await send({"type": "http.response.body", "body": body})


def _too_large(limit: int, setting: str | None) -> HttpError:
    what = f"{limit // _MB} MB, its {setting} setting" if setting else f"{limit // _MB} MB"
    fix = f": send less, or start the daemon with a larger {setting}" if setting else ""
    return HttpError(413, "too_large",
                     f"the request body is larger than this daemon accepts ({what}){fix}")


async def read_body(scope: Scope, receive: Receive, limit: int,
                    setting: str | None = None) -> bytes:
    """The whole request body (one join at most), or 413 past ``limit`` bytes: at
    once when the declared Content-Length is over it, before any of it arrives.
    ``setting`` names the daemon flag that sets ``limit``, for the message."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise _too_large(limit, setting)
    msg = await receive()
    if msg["type"] == "http.disconnect":
        # Not an empty body: a call must not run on what never arrived.
        raise HttpError(400, "bad_request", "the client went away")
    body: bytes = msg.get("body", b"")
    if not msg.get("more_body", False):
        if len(body) > limit:
            raise _too_large(limit, setting)
        return body
    chunks = [body]
    size = len(body)
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise HttpError(400, "bad_request", "the client went away")
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit, setting)
        chunks.append(chunk)
        if not msg.get("more_body", False):
            return b"".join(chunks)


class NodeApp:
    """ASGI app of one node daemon."""

    def __init__(self, config: NodeConfig, runtime: Runtime, auth: DenAuth | None) -> None:
        self.config = config
        self.runtime = runtime
        self.auth = auth
        #: Puts saved objects back after a restart (None without den).
        self.restorer: Restorer | None = None
        self.cluster_address = config.cluster_address or "/"
        self.on_startup: list[Callable[[], Awaitable[None]]] = []
        self.on_shutdown: list[Callable[[], Awaitable[None]]] = []
        #: Asks the server to exit (autostop); the server that runs the app sets it.
        self.request_stop: Callable[[], None] = lambda: None
        # The pid lets whoever started this daemon tell it from another one
        # that already answers on the same port.
        self._health = json.dumps(
            {"status": "ok", "version": __version__, "pid": os.getpid()}
        ).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                await self._route(scope, receive, send)
            except HttpError as exc:
                await send_json(send, exc.status, p.error_body(exc.code, exc.message, **exc.extra))
            except RequestError as exc:
                await send_json(send, exc.status, p.error_body(exc.code, exc.message, **exc.extra))
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    # -- lifespan ---------------------------------------------------------------
    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                try:
                    for hook in self.on_startup:
                        await hook()
                except Exception as exc:
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                for hook in self.on_shutdown:
                    try:
                        await hook()
                    except Exception:
                        log.exception("shutdown hook failed")
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- routing ----------------------------------------------------------------
    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        parts = scope["path"].strip("/").split("/")
        head = parts[0]
        n = len(parts)
        if head == "objects":
            if n == 3 and method == "POST":
                await self._call(scope, receive, send, parts[1], parts[2])
            elif n == 2:
                if method == "PUT":
                    await self._put_object(scope, receive, send, parts[1])
                elif method == "GET":
                    await self._get_object(scope, send, parts[1])
                elif method == "DELETE":
                    await self._delete_object(scope, send, parts[1])
                else:
                    raise HttpError(405, "method_not_allowed", f"{method} is not allowed here")
            elif n == 1 and method == "GET":
                await self._authorize(scope, self.cluster_address, "read")
                objs = [r.to_json() for r in self.runtime.objects.values()]
                await send_json(send, 200, json.dumps({"objects": objs}).encode())
            else:
                raise HttpError(404, "not_found", "no such route")
        elif head == "health" and n == 1:
            if method not in ("GET", "HEAD"):
                raise HttpError(405, "method_not_allowed", f"{method} is not allowed here")
            await send_json(send, 200, self._health)
        elif head == "code" and n == 2:
            await self._code(scope, receive, send, parts[1])
        elif head == "envs":
            await self._envs(scope, receive, send, parts[1:])
        elif head == "run" and n == 1:
            if method != "POST":
                raise HttpError(405, "method_not_allowed", f"{method} is not allowed here")
            await self._run_command(scope, receive, send)
        elif head == "refs" and n == 2:
            if method == "GET":
                await self._get_ref(scope, send, parts[1])
            elif method == "DELETE":
                await self._delete_ref(scope, send, parts[1])
            else:
                raise HttpError(405, "method_not_allowed", f"{method} is not allowed here")
        else:
            raise HttpError(404, "not_found", "no such route")

    # -- shell commands -----------------------------------------------------------
    async def _run_command(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``POST /run`` ``{"command": "nvidia-smi" | ["ls", "-l"], "timeout"?}``:
        run a command on this host (write access to the cluster only), in the
        daemon's workdir with the env workers' environment (no ``DEN_NODE_*``,
        no token), and stream its output back as JSON lines ``{"stream",
        "text"}``, then ``{"exit_code"}``. A string runs through ``sh -c``.
        It counts as a call in flight, so autostop never stops it."""
        await self._authorize(scope, self.cluster_address, "write")
        try:
            body = json.loads(await read_body(scope, receive, 1 << 20) or b"{}")
        except ValueError:
            raise HttpError(400, "bad_request", "the body must be JSON") from None
        command = body.get("command") if isinstance(body, dict) else None
        if isinstance(command, str) and command.strip():
            argv = ["/bin/sh", "-c", command]
        elif isinstance(command, list) and command and all(isinstance(a, str) for a in command):
            argv = list(command)
        else:
            raise HttpError(400, "bad_request",
                            "command must be a non-empty string or list of strings")
        timeout = body.get("timeout")
        if timeout is not None and (isinstance(timeout, bool)
                                    or not isinstance(timeout, (int, float)) or timeout <= 0):
            raise HttpError(400, "bad_request", "timeout must be a positive number of seconds")
        rt = self.runtime
        if rt.draining:
            raise HttpError(503, "cluster_stopping", "this cluster is stopping (autostop)")
        rt.calls_in_flight += 1
        try:
            await self._stream_command(send, argv, timeout)
        finally:
            rt.calls_in_flight -= 1
            rt.touch()

    async def _stream_command(self, send: Send, argv: list[str], timeout: float | None) -> None:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, cwd=str(self.config.workdir),
                env=child_env(), start_new_session=True)
        except OSError as exc:
            raise HttpError(400, "bad_request", f"cannot run {argv[0]}: {exc.strerror}") from None
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/x-ndjson")]})

        async def pump(stream: asyncio.StreamReader | None, name: str) -> None:
            while stream is not None:
                line = await stream.readline()
                if not line:
                    return
                text = json.dumps({"stream": name, "text": line.decode("utf-8", "replace")})
                await send({"type": "http.response.body", "body": text.encode() + b"\n",
                            "more_body": True})

        timed_out = False
        try:
            await asyncio.wait_for(asyncio.gather(pump(proc.stdout, "stdout"),
                                                  pump(proc.stderr, "stderr"), proc.wait()),
                                   timeout)
        except (TimeoutError, asyncio.TimeoutError):  # noqa: UP041 (3.9 on nodes)
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        end: dict[str, Any] = {"exit_code": proc.returncode}
        if timed_out:
            end["timed_out"] = True
        await send({"type": "http.response.body", "body": json.dumps(end).encode() + b"\n",
                    "more_body": False})

    async def _authorize(self, scope: Scope, address: str, level: str) -> str:
        """Check the caller's ``level`` on ``address``; return their username."""
        if self.auth is None:
            return ""
        try:
            return await self.auth.check(_bearer(scope), address, level)
        except AuthDenied as exc:
            raise HttpError(exc.status, exc.code, exc.message) from None

    # -- refs -------------------------------------------------------------------
    async def _usable_ref(self, scope: Scope, key: str) -> tuple[RefRecord, str]:
        """The ref ``key`` if the caller may use it (read on the function that made
        it, else on the cluster), and the caller's username. A missing ref and one
        the caller may not use are the same 404."""
        rt = self.runtime
        rt.sweep_refs()
        ref = rt.refs.get(key)
        short = key[:8]
        if ref is None:
            raise HttpError(404, "ref_not_found",
                            f"no ref {short}... on this cluster: it was deleted, it expired, or "
                            "the cluster restarted since it was made")
        try:
            caller = await self._authorize(scope, ref.address or self.cluster_address, "read")
        except HttpError as exc:
            if exc.status in (403, 404):
                raise HttpError(404, "ref_not_found",
                                f"no ref {short}... that you may use: a ref is for those who "
                                "may call the function that made it") from None
            raise
        if ref.expires_at <= time.time():
            raise HttpError(410, "ref_expired",
                            f"ref {short}... expired at {_utc(ref.expires_at)} and its object "
                            "was freed; make it again (fn.keep_for(seconds).remote(...) keeps "
                            "it longer)")
        return ref, caller

    async def _get_ref(self, scope: Scope, send: Send, key: str) -> None:
        ref, _ = await self._usable_ref(scope, key)
        env = self.runtime.envs.get(ref.env)
        if env is None:
            raise HttpError(404, "ref_gone", f"ref {key[:8]}...'s env {ref.env!r} is gone")
        cid, inbox = env.open(p.CALL, json.dumps({"g": key, "e": "oob"}).encode(), b"")
        try:
            await _respond_frames(send, inbox)
        finally:
            env.close(cid)

    async def _delete_ref(self, scope: Scope, send: Send, key: str) -> None:
        ref, caller = await self._usable_ref(scope, key)
        if self.auth is not None and caller != ref.owner and not await self._writes_cluster(scope):
            raise HttpError(403, "forbidden",
                            f"only the ref's owner ({ref.owner}) or a writer of "
                            f"{self.cluster_address} may delete it")
        self.runtime.refs.pop(key, None)
        env = self.runtime.envs.get(ref.env)
        if env is not None and env.state == "ready":
            await env.request(p.CALL, {"d": key, "e": "json"}, b"")
        await send_json(send, 200, b'{"deleted": true}')

    async def _call_refs(self, scope: Scope, rec: ObjectRecord, keys: list[str]) -> list[str]:
        """Check the refs a call's arguments hold: each usable by the caller and kept in
        the env the object runs in (where the worker hands it over as it is)."""
        for key in keys:
            ref, _ = await self._usable_ref(scope, key)
            if ref.env != rec.env:
                raise HttpError(400, "ref_elsewhere",
                                f"ref {key[:8]}... is kept in env {ref.env!r}, and {rec.name!r} "
                                f"runs in env {rec.env!r}: fetch it with ref.get() and pass the "
                                "value, or run both in one env")
        return keys

    async def _writes_cluster(self, scope: Scope) -> bool:
        """Whether the caller has ``write`` on this cluster (then it is trusted with
        full pickles and private methods). den's 401/403/404 all mean "no"."""
        if self.auth is None:
            return True
        try:
            await self.auth.check(_bearer(scope), self.cluster_address, "write")
        except AuthDenied as exc:
            if exc.status in (401, 403, 404):
                return False
            raise HttpError(exc.status, exc.code, exc.message) from None
        return True

    # -- calls ------------------------------------------------------------------
    async def _call(self, scope: Scope, receive: Receive, send: Send, name: str,
                    method: str) -> None:
        rt = self.runtime
        # Checked and counted before anything awaits, so that autostop (which
        # drains only when no call is in flight) never stops a call that began.
        if rt.draining:
            raise HttpError(503, "cluster_stopping",
                            "this cluster is stopping: it sat idle past its autostop; bring "
                            "it up again (den.cluster(...).up_if_not()) and call again")
        rt.calls_in_flight += 1
        try:
            await self._call_counted(scope, receive, send, name, method)
        finally:
            rt.calls_in_flight -= 1
            rt.touch()

    async def _call_counted(self, scope: Scope, receive: Receive, send: Send, name: str,
                            method: str) -> None:
        rt = self.runtime
        rec = rt.objects.get(name)
        restored = ""
        if rec is None:
            rec, restored = await self._restore(scope, name)
            caller = await self._authorize(scope, rec.address or self.cluster_address, "read")
        else:
            caller = await self._authorize(scope, rec.address or self.cluster_address, "read")
        ctype = b""
        accept = b""
        timeout = self.config.call_timeout
        keep: float | None = None
        ref_keys: list[str] = []
        for hname, value in scope["headers"]:
            if hname == b"content-type":
                ctype = value
            elif hname == b"accept":
                accept = value
            elif hname == _KEEP_HEADER:
                try:
                    keep = float(value)
                except ValueError:
                    keep = -1.0
                if not (math.isfinite(keep) and 0 < keep <= MAX_REF_SECONDS):
                    raise HttpError(400, "bad_request",
                                    f"x-den-keep must be seconds (more than 0, at most "
                                    f"{MAX_REF_SECONDS})")
            elif hname == _REFS_HEADER:
                ref_keys = [k for k in value.decode("latin-1").split(",") if k]
            elif hname == b"x-den-timeout":
                try:
                    seconds = float(value)
                except ValueError:
                    seconds = -1.0
                if not (math.isfinite(seconds) and seconds >= 0):
                    raise HttpError(400, "bad_request",
                                    "x-den-timeout must be seconds (0 or more; 0: none)")
                timeout = seconds or None
        if ctype.startswith(_OOB_CT):
            enc = "oob"
        elif ctype.startswith(_CLOUDPICKLE_CT):
            enc = "pickle"
        else:
            enc = "json"
        private = method.startswith("_") and method != "__call__"
        # Only pickles and private methods need to know; JSON needs no trust.
        trusted = self.auth is None or (
            (private or enc != "json") and await self._writes_cluster(scope))
        if private and not trusted:
            raise HttpError(
                403, "forbidden",
                f"{method!r} is a private method: callers with read access may call public "
                f"methods only (names not starting with '_'); writers of "
                f"{self.cluster_address} may call it",
            )
        body = await read_body(scope, receive, self.config.max_body_mb * _MB, "--max-body-mb")
        env = rt.envs.get(rec.env)
        if env is None:
            raise HttpError(500, "env_failed", f"env {rec.env!r} is gone")
        if env.state != "ready":
            try:
                await env.wait_ready()
            except EnvError as exc:
                raise HttpError(500, "env_failed", str(exc)) from None
        if rec.error:
            raise HttpError(500, "env_failed",
                            f"{name!r} could not be re-created after its worker restarted: "
                            f"{rec.error}; put it again")
        if keep is not None or ref_keys:
            extra: dict[str, Any] = {}
            if ref_keys:
                extra["r"] = await self._call_refs(scope, rec, ref_keys)
            if keep is not None:
                now = time.time()
                ref = RefRecord(secrets.token_urlsafe(18), rec.env, rec.address, caller, now,
                                now + keep)
                rt.sweep_refs()
                rt.refs[ref.key] = ref
                extra["k"] = {"key": ref.key, "owner": caller or None,
                              "expires_at": ref.expires_at}
            meta = rec.call_meta_with(method, enc, trusted, extra)
        else:
            meta = rec.call_meta(method, enc, trusted)
        cid, inbox = env.open(p.CALL, meta, body)
        if restored in _RESTORED:
            inbox.push((p.LOG, _RESTORED[restored].format(rec.address).encode()))
        if len(body) >= 1 << 16:
            await env.drain()
        timer = None
        try:
            if timeout:
                timer = asyncio.get_running_loop().call_later(
                    timeout, _time_out, env, cid, inbox, timeout)
            if enc != "json":
                await _respond_frames(send, inbox)
            elif _NDJSON_CT in accept:
                await _respond_ndjson(send, inbox)
            else:
                await _respond_json(send, inbox)
        finally:
            env.close(cid)
            if timer is not None:
                timer.cancel()

    async def _restore(self, scope: Scope, name: str) -> tuple[ObjectRecord, str]:
        """A call for an object this daemon does not hold: when the caller says
        which saved resource it is for and may read that, put it back from den's
        copy (this daemon restarted since it was put); else 404, saying why."""
        address = _header(scope, _ADDRESS_HEADER)
        if address is None or self.restorer is None or not ADDRESS_RE.match(address):
            await self._authorize(scope, self.cluster_address, "read")
            raise HttpError(404, "not_found", f"no object named {name!r} on this node (was "
                            "the cluster restarted since it was sent? send it again with "
                            ".to(cluster))")
        await self._authorize(scope, address, "read")
        try:
            found = await self.restorer.restore(name, address)
        except RestoreFailed as exc:
            raise HttpError(exc.status, exc.code, exc.message) from None
        if found is None:
            raise HttpError(404, "not_found", f"no object named {name!r} on this node: the "
                            f"cluster restarted since {address} was put there, and den holds no "
                            "saved copy of it, so whatever state it had is lost; its owner must "
                            "send it again with .to(cluster)")
        return found

    # -- objects ----------------------------------------------------------------
    async def _put_object(self, scope: Scope, receive: Receive, send: Send, name: str) -> None:
        await self._authorize(scope, self.cluster_address, "write")
        body = await read_body(scope, receive, self.config.max_body_mb * _MB, "--max-body-mb")
        info = await self.runtime.put_object(name, body)
        await send_json(send, 200, json.dumps(info).encode())

    def _object(self, name: str) -> ObjectRecord | None:
        return self.runtime.objects.get(name)

    async def _get_object(self, scope: Scope, send: Send, name: str) -> None:
        rec = self._object(name)
        await self._authorize(scope, (rec.address if rec else None) or self.cluster_address,
                              "read")
        if rec is None:
            raise HttpError(404, "not_found", f"no object named {name!r} on this node")
        await send_json(send, 200, json.dumps(rec.to_json()).encode())

    async def _delete_object(self, scope: Scope, send: Send, name: str) -> None:
        await self._authorize(scope, self.cluster_address, "write")
        await self.runtime.delete_object(name)
        await send_json(send, 200, json.dumps({"deleted": name}).encode())

    # -- code bundles -----------------------------------------------------------
    async def _code(self, scope: Scope, receive: Receive, send: Send, sha: str) -> None:
        method = scope["method"]
        if method in ("HEAD", "GET"):
            await self._authorize(scope, self.cluster_address, "read")
            status = 200 if self.runtime.has_code(sha) else 404
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
        elif method == "PUT":
            await self._authorize(scope, self.cluster_address, "write")
            if self.runtime.has_code(sha):
                await send_json(send, 200, json.dumps({"sha": sha, "created": False}).encode())
                return
            body = await read_body(scope, receive, self.config.max_code_mb * _MB,
                                   "--max-code-mb")
            created = await asyncio.to_thread(self.runtime.store_code, sha, body)
            await send_json(send, 201 if created else 200,
                            json.dumps({"sha": sha, "created": created}).encode())
        else:
            raise HttpError(405, "method_not_allowed", f"{method} is not allowed here")

    # -- envs -------------------------------------------------------------------
    async def _envs(self, scope: Scope, receive: Receive, send: Send, rest: list[str]) -> None:
        method = scope["method"]
        if not rest and method == "GET":
            await self._authorize(scope, self.cluster_address, "read")
            envs = [e.info() for e in self.runtime.envs.values()]
            await send_json(send, 200, json.dumps({"envs": envs}).encode())
        elif not rest and method == "POST":
            await self._authorize(scope, self.cluster_address, "write")
            body = await read_body(scope, receive, _MB)
            try:
                spec = EnvSpec.from_json(json.loads(body))
            except ValueError as exc:
                raise HttpError(400, "bad_request", str(exc)) from None
            try:
                env = await self.runtime.ensure_env(spec)
            except EnvError as exc:
                raise HttpError(500, "env_failed", str(exc)) from None
            await send_json(send, 200, json.dumps(env.info()).encode())
        elif len(rest) == 1 and method == "GET":
            await self._authorize(scope, self.cluster_address, "read")
            found = self.runtime.envs.get(rest[0])
            if found is None:
                raise HttpError(404, "not_found", f"no env named {rest[0]!r}")
            await send_json(send, 200, json.dumps(found.info()).encode())
        elif len(rest) == 1 and method == "DELETE":
            await self._authorize(scope, self.cluster_address, "write")
            await self.runtime.delete_env(rest[0])
            await send_json(send, 200, json.dumps({"deleted": rest[0]}).encode())
        else:
            raise HttpError(404, "not_found", "no such route")


#: What a call's output says when a module instance was put back after a restart.
_RESTORED = {
    "init": ("den: {} was put back on this cluster from its saved constructor arguments "
             "after the cluster restarted; state it gained since then was lost.\n"),
    "value": ("den: {} was put back on this cluster as it was when it was sent, after the "
              "cluster restarted; state it gained since then was lost.\n"),
}


def _utc(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(when))


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope["headers"]:
        if name == wanted:
            return str(value.decode("latin-1"))
    return None


def _bearer(scope: Scope) -> str | None:
    """The caller's bearer token, if it sent one."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            text = value.decode("latin-1")
            if text[:7].lower() == "bearer ":
                return text[7:].strip()
            return None
    return None


def _time_out(env: EnvWorker, cid: int, inbox: Inbox, seconds: float) -> None:
    """Abandon a call that ran past its timeout and ask the worker to cancel it."""
    env.close(cid)
    inbox.push((p.ERROR, p.error_payload(
        "timeout",
        f"the call did not finish within {seconds:g} s, so den cancelled it; "
        "pass a larger timeout if it needs longer",
        env=env.name,
    )))
    env.send(p.CANCEL, cid, b"", b"")


#: Errors a worker reports before running anything: the request was wrong, so the
#: answer carries their status (and a JSON body) rather than 200 and an X frame.
_REQUEST_ERRORS = frozenset({"bad_request", "pickle_refused", "not_found", "ref_gone"})


async def _respond_frames(send: Send, inbox: Inbox) -> None:
    """Framed response: one sized body when the result comes first, else chunked."""
    kind, payload = await inbox.get()
    if kind == p.ERROR and json.loads(payload).get("code") in _REQUEST_ERRORS:
        status, body = _error_json(payload)
        await send_json(send, status, body)
        return
    if kind == p.RESULT or kind == p.ERROR:
        header = p.HTTP_HEADER.pack(kind, len(payload))
        await send({
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", _FRAMES_CT),
                        (b"content-length", str(len(header) + len(payload)).encode())],
        })
        if len(payload) < 1 << 16:
            await send({"type": "http.response.body", "body": header + payload})
        else:
            await send({"type": "http.response.body", "body": header, "more_body": True})
            await send({"type": "http.response.body", "body": payload})
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", _FRAMES_CT)]})
    while True:
        # Send every frame already waiting in one body message.
        parts: list[bytes | bytearray] = []
        done = False
        frame: tuple[int, bytes | bytearray] | None = (kind, payload)
        while frame is not None:
            kind, payload = frame
            parts.append(p.HTTP_HEADER.pack(kind, len(payload)))
            parts.append(payload)
            if kind == p.ERROR or kind == p.RESULT:
                done = True
                break
            frame = inbox.get_nowait()
        await send({"type": "http.response.body", "body": b"".join(parts), "more_body": not done})
        if done:
            return
        kind, payload = await inbox.get()


def _error_json(payload: bytes | bytearray) -> tuple[int, bytes]:
    err = json.loads(payload)
    err.pop("pickle", None)
    status = p.ERROR_STATUS.get(err.get("code", "internal"), 500)
    return status, json.dumps({"error": err}).encode()


async def _respond_json(send: Send, inbox: Inbox) -> None:
    """Plain JSON for curl: {"result": ..., "output": [...]} or {"error": {...}}."""
    output: list[dict[str, str]] = []
    items: list[bytes | bytearray] | None = None
    while True:
        kind, payload = await inbox.get()
        if kind in p.OUTPUT_KINDS:
            output.append({"stream": p.OUTPUT_KINDS[kind],
                           "text": bytes(payload).decode("utf-8", "replace")})
        elif kind == p.GENERATOR:
            items = []
        elif kind == p.YIELD and items is not None:
            items.append(payload)
        elif kind == p.ERROR:
            status, body = _error_json(payload)
            if output:
                err = json.loads(body)
                err["output"] = output
                body = json.dumps(err).encode()
            await send_json(send, status, body)
            return
        elif kind == p.RESULT:
            result = b"[" + b",".join(items) + b"]" if items is not None else bytes(payload)
            body = b'{"result": ' + result + b', "output": ' + json.dumps(output).encode() + b"}"
            await send_json(send, 200, body)
            return


async def _respond_ndjson(send: Send, inbox: Inbox) -> None:
    """Newline-delimited JSON events, streamed: output, yields, then result or error."""
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", _NDJSON_CT)]})
    while True:
        kind, payload = await inbox.get()
        done = False
        if kind in p.OUTPUT_KINDS:
            line = json.dumps({"stream": p.OUTPUT_KINDS[kind],
                               "text": bytes(payload).decode("utf-8", "replace")}).encode()
        elif kind == p.GENERATOR:
            continue
        elif kind == p.YIELD:
            line = b'{"yield": ' + bytes(payload) + b"}"
        elif kind == p.RESULT:
            line = b'{"result": ' + (bytes(payload) or b"null") + b"}"
            done = True
        else:
            line = _error_json(payload)[1]
            done = True
        await send({"type": "http.response.body", "body": line + b"\n", "more_body": not done})
        if done:
            return
