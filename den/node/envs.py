"""Envs and their worker processes, seen from the daemon.

Each env is one worker process started with ``subprocess`` (through asyncio), not
``multiprocessing``: an env may run another interpreter (its own virtualenv's, or
the ``python`` it names), with its own environment variables, and the daemon needs
a plain byte protocol it can drive from its event loop. The worker inherits one end
of a Unix socket pair; frames on it are length-prefixed (see
:mod:`den.node.protocol`), so argument and result bytes cross without being parsed,
and the daemon reads them straight into one preallocated buffer per frame.

A worker that dies (signal, ``os._exit``, segfault) fails its in-flight calls with
a ``worker_crashed`` error and is started again; the objects put into it are then
re-created from the put payloads the runtime kept.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import site
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from den.node import protocol as p

if TYPE_CHECKING:
    # Only for annotations: ``bytes | bytearray`` fails at run time on Python 3.9,
    # and the daemon runs there too.
    Frame = tuple[int, bytes | bytearray]

log = logging.getLogger("den.node")

_BOOT = (
    "import sys\n"
    "try:\n"
    "    import den.node.worker\n"
    "except ImportError:\n"
    "    sys.path.append(sys.argv[2])\n"
    "from den.node.worker import main\n"
    "main([sys.argv[1], sys.argv[3]])\n"
)
_DEN_ROOT = str(Path(__file__).resolve().parent.parent.parent)
_SOCKET_BUFFER = 4 << 20
#: What ``asyncio.wait_for`` raises on a timeout: the builtin since Python 3.11,
#: asyncio's own class before (the daemon runs on 3.9 too).
_TIMEOUTS: tuple[type[BaseException], ...] = (TimeoutError, asyncio.TimeoutError)


class EnvError(Exception):
    """An env could not be set up or its worker could not start."""


@dataclass(frozen=True)
class EnvSpec:
    """What an env is: a name, pip requirements, env vars, setup commands, python."""

    name: str = "base"
    reqs: tuple[str, ...] = ()
    env_vars: tuple[tuple[str, str], ...] = ()
    setup_cmds: tuple[str, ...] = ()
    python: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> EnvSpec:
        """Parse an env from JSON (a name alone means that env, or "base")."""
        if data is None:
            return cls()
        if isinstance(data, str):
            return cls(name=data)
        if not isinstance(data, dict):
            raise ValueError("env must be a name or an object {name, reqs, env_vars, ...}")
        name = data.get("name") or "base"
        if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
            raise ValueError("env.name must be letters, digits, '-' and '_'")
        reqs = data.get("reqs") or []
        cmds = data.get("setup_cmds") or []
        env_vars = data.get("env_vars") or {}
        python = data.get("python")
        if not isinstance(reqs, list) or not all(isinstance(r, str) for r in reqs):
            raise ValueError("env.reqs must be a list of pip requirement strings")
        if not isinstance(cmds, list) or not all(isinstance(c, str) for c in cmds):
            raise ValueError("env.setup_cmds must be a list of shell commands")
        if not isinstance(env_vars, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env_vars.items()
        ):
            raise ValueError("env.env_vars must map names to string values")
        if python is not None and not isinstance(python, str):
            raise ValueError("env.python must be a path to an interpreter")
        return cls(
            name=name,
            reqs=tuple(reqs),
            env_vars=tuple(sorted(env_vars.items())),
            setup_cmds=tuple(cmds),
            python=python,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "reqs": list(self.reqs),
            "env_vars": dict(self.env_vars),
            "setup_cmds": list(self.setup_cmds),
            "python": self.python,
        }

    @property
    def is_bare(self) -> bool:
        """Only a name (as when an object names an env without describing it)."""
        return not (self.reqs or self.env_vars or self.setup_cmds or self.python)


# -- virtualenvs ------------------------------------------------------------------

_venv_locks: dict[str, asyncio.Lock] = collections.defaultdict(asyncio.Lock)


def child_env(spec: EnvSpec | None = None, extra: Mapping[str, str] | None = None
              ) -> dict[str, str]:
    """The environment of every process the daemon starts for an env: its
    worker, its ``setup_cmds``, and ``venv``/``pip`` runs.

    It is the daemon's own environment (which the backend that started it
    kept small) without any ``DEN_NODE_*`` variable, plus the env's
    ``env_vars`` and ``extra`` (the virtualenv's ``PATH``). The cluster token
    is never in it: the daemon reads the token from stdin or a file, never
    from its environment.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEN_NODE_")}
    if spec is not None:
        env.update(dict(spec.env_vars))
    if extra:
        env.update(extra)
    return env


async def _run(cmd: list[str], *, env: Mapping[str, str], cwd: Path | None = None,
               shell: bool = False) -> None:
    """Run a setup command; raise EnvError with the tail of its output on failure."""
    if shell:
        proc = await asyncio.create_subprocess_shell(
            cmd[0], stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL, env=dict(env), cwd=cwd,
        )
    else:
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL, env=dict(env), cwd=cwd,
        )
    out, _ = await proc.communicate()
    text = out.decode("utf-8", "replace")
    if proc.returncode != 0:
        tail = text[-3000:]
        raise EnvError(f"`{' '.join(cmd)}` exited with {proc.returncode}:\n{tail}")
    log.debug("ran %s:\n%s", cmd, text)


async def _python_version(python: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])",
        stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL, env=child_env(),
    )
    out, _ = await proc.communicate()
    return out.decode().strip()


async def prepare_env(spec: EnvSpec, workdir: Path) -> tuple[str, dict[str, str]]:
    """Make the env's interpreter ready; return it and extra environment variables.

    With requirements (or another python), the env gets a virtualenv under
    ``workdir/envs/<hash>``, shared by every env with the same python and reqs.
    It is created with ``--system-site-packages`` and a ``.pth`` that adds the
    daemon's own site-packages after the venv's, so cloudpickle and den resolve
    while the env's own installs take precedence.
    """
    extra: dict[str, str] = {}
    python = sys.executable
    if spec.reqs or spec.python:
        base = spec.python or sys.executable
        key = hashlib.sha256(json.dumps([base, sorted(spec.reqs)]).encode()).hexdigest()[:16]
        venv = workdir / "envs" / key
        python = str(venv / "bin" / "python")
        ready = venv / ".den-ready"
        async with _venv_locks[key]:
            if not ready.exists():
                shutil.rmtree(venv, ignore_errors=True)
                started = time.monotonic()
                await _run([base, "-m", "venv", "--system-site-packages", "--without-pip",
                            str(venv)], env=child_env(spec))
                same = spec.python is None or (
                    await _python_version(base) == "{}.{}".format(*sys.version_info[:2])
                )
                if same:
                    site_dirs = [*site.getsitepackages(), site.getusersitepackages()]
                    lines = [f"import site; site.addsitedir({d!r})" for d in site_dirs]
                    for sp in venv.glob("lib/python*/site-packages"):
                        (sp / "_den_parent.pth").write_text("\n".join(lines) + "\n")
                if spec.reqs:
                    await _run([sys.executable, "-m", "pip", "--python", python, "install",
                                "--disable-pip-version-check", *spec.reqs],
                               env=child_env(spec))
                ready.write_text(json.dumps(spec.to_json()))
                log.info("env %s: virtualenv %s ready in %.1fs", spec.name, venv,
                         time.monotonic() - started)
        extra["VIRTUAL_ENV"] = str(venv)
        extra["PATH"] = f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    if spec.setup_cmds:
        digest = hashlib.sha256(json.dumps([spec.name, python, spec.setup_cmds]).encode())
        marker = workdir / "envs" / f"setup-{digest.hexdigest()[:16]}.done"
        if not marker.exists():
            env = child_env(spec, extra)
            for cmd in spec.setup_cmds:
                await _run([cmd], env=env, cwd=workdir, shell=True)  # noqa: S604 - setup_cmds are shell
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text("\n".join(spec.setup_cmds))
    return python, extra


# -- the connection to a worker ---------------------------------------------------


class Inbox:
    """Frames for one in-flight call, in arrival order; one consumer awaits them."""

    __slots__ = ("_frames", "_waiter")

    def __init__(self) -> None:
        self._frames: collections.deque[Frame] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None

    def push(self, frame: Frame) -> None:
        self._frames.append(frame)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Frame:
        while not self._frames:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._frames.popleft()

    def get_nowait(self) -> Frame | None:
        return self._frames.popleft() if self._frames else None


class WorkerConnection(asyncio.BufferedProtocol):
    """Reads IPC frames from a worker; a frame larger than the scratch buffer is read
    straight into its own buffer, so a 100 MB result is copied once, by the kernel."""

    SCRATCH = 1 << 18

    def __init__(self, on_frame: Callable[[int, int, bytes, bytes | bytearray], None],
                 on_lost: Callable[[], None]) -> None:
        self._on_frame = on_frame
        self._on_lost = on_lost
        self._buf = bytearray(self.SCRATCH)
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0
        self._big: bytearray | None = None
        self._big_pos = 0
        self._big_head: tuple[int, int, int] = (0, 0, 0)
        self.transport: asyncio.Transport | None = None
        self._paused = False
        self._drained: asyncio.Future[None] | None = None

    # reading
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._big is not None:
            return memoryview(self._big)[self._big_pos:]
        return self._view[self._end:]

    def buffer_updated(self, nbytes: int) -> None:
        if self._big is not None:
            self._big_pos += nbytes
            if self._big_pos == len(self._big):
                kind, cid, mlen = self._big_head
                big, self._big = self._big, None
                if mlen:
                    self._on_frame(kind, cid, bytes(big[:mlen]), memoryview(big)[mlen:].tobytes())
                else:
                    self._on_frame(kind, cid, b"", big)
            return
        self._end += nbytes
        self._parse()

    def _parse(self) -> None:
        buf, start, end = self._buf, self._start, self._end
        hsize = p.IPC_HEADER.size
        while end - start >= hsize:
            kind, cid, mlen, blen = p.IPC_HEADER.unpack_from(buf, start)
            total = mlen + blen
            have = end - start - hsize
            if have >= total:
                s = start + hsize
                meta = bytes(buf[s:s + mlen]) if mlen else b""
                body = bytes(buf[s + mlen:s + total]) if blen else b""
                start = s + total
                self._on_frame(kind, cid, meta, body)
            elif hsize + total > len(buf):
                big = bytearray(total)
                big[:have] = buf[start + hsize:end]
                self._big, self._big_pos, self._big_head = big, have, (kind, cid, mlen)
                start = end = 0
                break
            else:
                break
        if start == end:
            start = end = 0
        elif start:
            left = end - start
            buf[:left] = buf[start:end]
            start, end = 0, left
        self._start, self._end = start, end

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._on_lost()

    # writing, with flow control
    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    async def drain(self) -> None:
        while self._paused and self.transport is not None and not self.transport.is_closing():
            self._drained = asyncio.get_running_loop().create_future()
            await self._drained


def describe_exit(code: int | None) -> str:
    """Say how a process ended, in words."""
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name} (exit code {code})"
    return f"exited with code {code}"


@dataclass
class EnvWorker:
    """One env's worker process, its connection, and the calls in flight in it."""

    spec: EnvSpec
    workdir: Path
    next_id: Callable[[], int]
    #: Re-creates the env's objects in a fresh worker (set by the runtime).
    replay: Callable[[EnvWorker], Awaitable[None]]
    calls: dict[int, Inbox] = field(default_factory=dict)
    state: str = "new"
    error: str | None = None
    pid: int | None = None
    restarts: int = 0
    started_at: float = 0.0
    _proc: asyncio.subprocess.Process | None = None
    _conn: WorkerConnection | None = None
    _ready: asyncio.Event = field(default_factory=asyncio.Event)
    _hello: asyncio.Future[None] | None = None
    _stopping: bool = False
    _lifecycle: asyncio.Lock = field(default_factory=asyncio.Lock)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def name(self) -> str:
        return self.spec.name

    def info(self) -> dict[str, Any]:
        return {
            **self.spec.to_json(),
            "state": self.state,
            "pid": self.pid,
            "restarts": self.restarts,
            "calls_in_flight": len(self.calls),
            "error": self.error,
        }

    # lifecycle
    async def start(self) -> None:
        """Prepare the env and start its worker; raise EnvError if that fails."""
        async with self._lifecycle:
            if self.state == "ready":
                return
            self._stopping = False
            self.state = "starting"
            self._ready.clear()
            try:
                await self._spawn()
                await self.replay(self)
                if self._proc is None or self._proc.returncode is not None:
                    raise EnvError("the worker died while its objects were re-created")
            except Exception as exc:
                self.state = "failed"
                self.error = str(exc)
                self._ready.set()  # wake waiters so they see the failure
                await self._kill()
                raise EnvError(f"env {self.name!r} could not start: {exc}") from exc
            self.state = "ready"
            self.error = None
            self._ready.set()

    async def _spawn(self) -> None:
        python, extra = await prepare_env(self.spec, self.workdir)
        env = child_env(self.spec, extra)
        env["PYTHONUNBUFFERED"] = "1"
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        for s in (parent, child):
            with contextlib.suppress(OSError):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SOCKET_BUFFER)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SOCKET_BUFFER)
        loop = asyncio.get_running_loop()
        self._hello = loop.create_future()
        try:
            self._proc = await asyncio.create_subprocess_exec(
                python, "-c", _BOOT, str(child.fileno()), _DEN_ROOT, self.name,
                pass_fds=(child.fileno(),), env=env, cwd=str(self.workdir),
                stdin=asyncio.subprocess.DEVNULL,
            )
        finally:
            child.close()
        self.pid = self._proc.pid
        self.started_at = time.monotonic()
        proc = self._proc
        _, conn = await loop.create_unix_connection(
            lambda: WorkerConnection(self._on_frame, lambda: self._on_lost(proc)), sock=parent
        )
        self._conn = conn
        try:
            await asyncio.wait_for(asyncio.shield(self._hello), timeout=60)
        except (TimeoutError, asyncio.TimeoutError, ConnectionError) as exc:  # noqa: UP041 (3.9)
            raise EnvError(f"the worker did not start ({exc or 'no answer in 60 s'})") from exc

    async def stop(self) -> None:
        """Stop the worker for good (env deleted or daemon shutting down)."""
        self._stopping = True
        async with self._lifecycle:
            await self._kill()
            self.state = "stopped"

    async def _kill(self) -> None:
        proc, conn = self._proc, self._conn
        if conn is not None and conn.transport is not None:
            conn.transport.close()
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout=3)
            except _TIMEOUTS:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()

    async def wait_ready(self) -> None:
        """Wait until the worker serves; start it if it is new or failed before."""
        if self.state == "ready":
            return
        if self.state in ("new", "failed", "stopped"):
            await self.start()
            return
        await self._ready.wait()
        if self.state != "ready":
            raise EnvError(f"env {self.name!r} is not available: {self.error}")

    # frames
    def _on_frame(self, kind: int, cid: int, meta: bytes, body: bytes | bytearray) -> None:
        inbox = self.calls.get(cid)
        if inbox is not None:
            inbox.push((kind, body))
        elif kind == p.HELLO and self._hello is not None and not self._hello.done():
            self._hello.set_result(None)

    def _on_lost(self, proc: asyncio.subprocess.Process) -> None:
        if self._hello is not None and not self._hello.done():
            self._hello.set_exception(ConnectionError("the worker exited during start-up"))
        task = asyncio.get_running_loop().create_task(self._after_exit(proc))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _after_exit(self, proc: asyncio.subprocess.Process) -> None:
        """Fail the calls the dead worker had, then start a new one."""
        code = await proc.wait()
        if proc is not self._proc:
            return
        how = describe_exit(code)
        calls, self.calls = self.calls, {}
        if calls:
            payload = p.error_payload(
                "worker_crashed",
                f"the worker process of env {self.name!r} died during the call ({how}); "
                "den restarts it, and objects in this env lose their in-memory state",
                env=self.name,
                exit_code=code,
            )
            for inbox in calls.values():
                inbox.push((p.ERROR, payload))
        if self._stopping or self.state != "ready":
            return  # a stop, or a failed start that start() itself reports
        log.warning("env %s: worker %s %s; restarting it", self.name, proc.pid, how)
        self.state = "restarting"
        self._ready.clear()
        self.restarts += 1
        if time.monotonic() - self.started_at < 2:
            await asyncio.sleep(1)  # don't spin on a worker that dies at once
        try:
            await self.start()
        except EnvError as exc:
            log.error("%s", exc)

    # requests
    def send(self, kind: int, cid: int, meta: bytes, body: bytes | bytearray | memoryview) -> bool:
        """Write one frame to the worker; False when its connection is gone."""
        conn = self._conn
        if conn is None or conn.transport is None or conn.transport.is_closing():
            return False
        header = p.IPC_HEADER.pack(kind, cid, len(meta), len(body))
        if len(body) < 1 << 16:
            conn.transport.write(header + meta + body)
        else:
            conn.transport.write(header + meta)
            conn.transport.write(body)
        return True

    async def drain(self) -> None:
        if self._conn is not None:
            await self._conn.drain()

    def open(self, kind: int, meta: bytes, body: bytes | bytearray | memoryview) -> tuple[int, Inbox]:
        """Send a request and return its id and the inbox its answers arrive in."""
        cid = self.next_id()
        inbox = Inbox()
        self.calls[cid] = inbox
        if not self.send(kind, cid, meta, body):
            inbox.push((p.ERROR, p.error_payload(
                "worker_crashed", f"the worker of env {self.name!r} is not running",
                env=self.name, exit_code=None)))
        return cid, inbox

    def close(self, cid: int) -> None:
        self.calls.pop(cid, None)

    async def request(self, kind: int, meta: dict[str, Any], body: bytes,
                      output: list[dict[str, str]] | None = None) -> Frame:
        """A put or delete: send it, collect its output, return the final frame."""
        cid, inbox = self.open(kind, json.dumps(meta).encode(), body)
        try:
            while True:
                fkind, payload = await inbox.get()
                if fkind in p.OUTPUT_KINDS:
                    if output is not None:
                        output.append({"stream": p.OUTPUT_KINDS[fkind],
                                       "text": bytes(payload).decode("utf-8", "replace")})
                    continue
                return fkind, payload
        finally:
            self.close(cid)
