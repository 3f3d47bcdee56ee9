"""Env worker: the process that holds one env's objects and runs calls on them.

The daemon starts one worker per env (``python -c <boot> <fd>``, see
:mod:`den.node.envs`) and talks to it over an inherited Unix socket with the IPC
framing of :mod:`den.node.protocol`. The worker is the only process that unpickles
what callers send: the daemon passes argument bytes through untouched, and says in
each call's meta whether the caller may send any pickle (a writer of the cluster) or
plain data only (:mod:`den.node.safepickle`); the worker never decides that itself.

Threads: a leader/follower pool. One thread at a time (the leader) waits for the
next frame; having read one, it hands leadership to an idle thread (starting one if
none is idle, up to ``DEN_NODE_WORKER_THREADS``) and runs the call itself, so a call
starts without a thread handoff. Async calls run on the asyncio loop in the main
thread. Every thread may write frames, so writes go through one lock. stdout, stderr and ``logging`` are routed to the call
that produced them (a context variable names it) and sent as frames as soon as a
line is complete, which is what makes output stream back while a call runs.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import ctypes
import importlib
import inspect
import io
import json
import logging
import os
import pickle
import socket
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any, TextIO

import cloudpickle

from den.node import protocol as p
from den.node import safepickle

_current_call: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "den_node_call", default=None
)


class CallCancelled(BaseException):
    """Raised inside a sync call's thread when the daemon cancels it (timeout)."""


class BadCall(Exception):
    """The call names a method the object lacks, or its arguments do not decode."""


class RefLost(Exception):
    """A ref's object is not in this worker any more (it restarted since)."""


_REF_GONE = ("this ref's object is gone: the worker holding it restarted since it was made "
             "(a crash, or the cluster restarted); make it again")
#: The global a pickled den.Ref calls; allowed to plain-data callers whose refs the
#: daemon checked (it only looks a kept object up).
_REF_GLOBAL = "den.client.refs._ref"


class ArgumentsRefused(BadCall):
    """A caller who may send plain data only sent a pickle that needs more."""


def _type_name(cls: type) -> str:
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


class Channel:
    """The socket to the daemon: one reader, writers from any thread under a lock."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()
        self.rfile: io.BufferedReader = sock.makefile("rb", buffering=1 << 18)  # type: ignore[assignment]

    def send(self, kind: int, cid: int, body: bytes | bytearray | memoryview = b"") -> None:
        header = p.IPC_HEADER.pack(kind, cid, 0, len(body))
        with self.lock:
            if len(body) < 1 << 16:
                self.sock.sendall(header + bytes(body))
            else:
                self.sock.sendall(header)
                self.sock.sendall(body)

    def send_parts(self, kind: int, cid: int, parts: list[bytes | memoryview]) -> None:
        """Send one frame whose body is several buffers, without joining big ones."""
        size = sum(len(part) if isinstance(part, bytes) else part.nbytes for part in parts)
        if size < 1 << 16:
            self.send(kind, cid, b"".join(parts))
            return
        header = p.IPC_HEADER.pack(kind, cid, 0, size)
        with self.lock:
            self.sock.sendall(header)
            for part in parts:
                self.sock.sendall(part)

    def _read_exact(self, n: int) -> bytes | bytearray:
        if n < 1 << 16:
            data = self.rfile.read(n)
            if len(data) != n:
                raise EOFError
            return data
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            r = self.rfile.readinto(view[got:])
            if not r:
                raise EOFError
            got += r
        return buf

    def recv(self) -> tuple[int, int, bytes, bytes | bytearray]:
        kind, cid, mlen, blen = p.IPC_HEADER.unpack(self._read_exact(p.IPC_HEADER.size))
        meta = bytes(self._read_exact(mlen)) if mlen else b""
        body = self._read_exact(blen) if blen else b""
        return kind, cid, meta, body


class OutputRouter(io.TextIOBase):
    """Replaces sys.stdout/sys.stderr: sends complete lines to the current call.

    Writes outside any call (or from threads the call started, when more than one
    call is in flight) go to the worker's original stream, i.e. the daemon's log.
    """

    def __init__(self, worker: Worker, kind: int, fallback: TextIO | io.TextIOBase) -> None:
        super().__init__()
        self._worker = worker
        self._kind = kind
        self._fallback = fallback
        self._pending: dict[int, str] = {}
        self._lock = threading.Lock()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, s: str) -> int:
        cid = self._worker.output_call()
        if cid is None:
            return self._fallback.write(s)
        if "\n" in s or "\r" in s:
            with self._lock:
                text = self._pending.pop(cid, "") + s
            self._worker.channel.send(self._kind, cid, text.encode("utf-8", "replace"))
        else:
            with self._lock:
                self._pending[cid] = self._pending.get(cid, "") + s
        return len(s)

    def flush(self) -> None:
        cid = self._worker.output_call()
        if cid is None:
            self._fallback.flush()
        else:
            self.flush_call(cid)

    def flush_call(self, cid: int) -> None:
        if cid not in self._pending:
            return
        with self._lock:
            text = self._pending.pop(cid, "")
        if text:
            self._worker.channel.send(self._kind, cid, text.encode("utf-8", "replace"))


class CallLogHandler(logging.Handler):
    """Sends log records emitted during a call to that call's caller."""

    def __init__(self, worker: Worker, fallback: TextIO | io.TextIOBase) -> None:
        super().__init__()
        self._worker = worker
        self._fallback = fallback
        self.setFormatter(
            logging.Formatter("%(asctime)s | %(levelname)s | %(name)s | %(message)s")
        )

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record) + "\n"
            cid = self._worker.output_call()
            if cid is None:
                self._fallback.write(text)
            else:
                self._worker.channel.send(p.LOG, cid, text.encode("utf-8", "replace"))
        except Exception:
            self.handleError(record)


class Obj:
    """One object held by the worker: a function, or a module (class instance)."""

    __slots__ = ("allow", "kind", "name", "target")

    def __init__(self, name: str, kind: str, target: Any,
                 allow: frozenset[str] = frozenset()) -> None:
        self.name = name
        self.kind = kind
        self.target = target
        #: Extra globals its owner lets plain-data callers' pickles name (pickle_allow).
        self.allow = allow


class Worker:
    """Holds the env's objects and serves the daemon's frames until the socket closes."""

    def __init__(self, sock: socket.socket, env: str) -> None:
        self.env = env
        self.channel = Channel(sock)
        self.objects: dict[str, Obj] = {}
        self.inflight: dict[int, int | asyncio.Task[None] | None] = {}
        self.code_dirs: list[str] = []
        #: Results kept as refs (den.Ref), by key; the daemon keeps who may use them.
        self.refs: dict[str, Any] = {}
        #: Calls whose result is kept as a ref: cid -> {"key", "owner", "expires_at"}.
        self._keep: dict[int, dict[str, Any]] = {}
        self.max_threads = max(2, int(os.environ.get("DEN_NODE_WORKER_THREADS", "64")))
        self._leader = threading.Lock()
        self._count_lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self.loop = _new_loop()
        self.stdout = OutputRouter(self, p.STDOUT, sys.__stdout__ or sys.stdout)
        self.stderr = OutputRouter(self, p.STDERR, sys.__stderr__ or sys.stderr)

    # -- output attribution ------------------------------------------------------
    def output_call(self) -> int | None:
        """The call that output written now belongs to, if any."""
        cid = _current_call.get()
        if cid is not None:
            return cid
        if len(self.inflight) == 1:
            try:
                return next(iter(self.inflight))
            except (StopIteration, RuntimeError):
                return None
        return None

    def _flush_output(self, cid: int) -> None:
        self.stdout.flush_call(cid)
        self.stderr.flush_call(cid)

    # -- serving ----------------------------------------------------------------
    def serve(self) -> None:
        sys.stdout = self.stdout
        sys.stderr = self.stderr
        root = logging.getLogger()
        root.addHandler(CallLogHandler(self, sys.__stderr__ or sys.stderr))
        if root.level == logging.NOTSET or root.level > logging.INFO:
            root.setLevel(logging.INFO)
        asyncio.set_event_loop(self.loop)
        self._spawn()
        self._spawn()
        self.channel.send(p.HELLO, 0, json.dumps({"pid": os.getpid()}).encode())
        self.loop.run_forever()

    def _spawn(self) -> None:
        with self._count_lock:
            if self._threads >= self.max_threads:
                return
            self._threads += 1
        threading.Thread(target=self._serve_thread, name="den-call", daemon=True).start()

    def _serve_thread(self) -> None:
        """Lead (read one frame), pass the lead on, handle the frame; repeat."""
        while True:
            with self._count_lock:
                self._idle += 1
            with self._leader:
                with self._count_lock:
                    self._idle -= 1
                    starved = self._idle == 0
                try:
                    kind, cid, meta, body = self.channel.recv()
                except (EOFError, OSError):
                    os._exit(0)  # the daemon went away: nothing left to serve
            if starved:
                self._spawn()
            try:
                self._handle(kind, cid, meta, body)
            except Exception:
                traceback.print_exc(file=sys.__stderr__)

    def _handle(self, kind: int, cid: int, meta: bytes, body: bytes | bytearray) -> None:
        if kind == p.CALL:
            self._on_call(cid, meta, body)
        elif kind == p.PUT:
            self._on_put(cid, meta, body)
        elif kind == p.DELETE:
            self.objects.pop(json.loads(meta)["name"], None)
            self.channel.send(p.RESULT, cid, b"{}")
        elif kind == p.CANCEL:
            self._on_cancel(cid)

    # -- objects ----------------------------------------------------------------
    def _use_code_dir(self, code_dir: str) -> None:
        """Put a code bundle first on sys.path, dropping modules of older bundles."""
        if self.code_dirs and self.code_dirs[-1] == code_dir:
            return
        for old in self.code_dirs:
            while old in sys.path:
                sys.path.remove(old)
            prefix = old.rstrip("/") + "/"
            for mod_name, mod in list(sys.modules.items()):
                f = getattr(mod, "__file__", None) or ""
                if f.startswith(prefix):
                    del sys.modules[mod_name]
        self.code_dirs = [code_dir]
        sys.path.insert(0, code_dir)
        importlib.invalidate_caches()

    def _materialize(self, spec: dict[str, Any], code_dir: str | None) -> Any:
        if code_dir:
            self._use_code_dir(code_dir)
        kind = spec.get("kind", "function")
        if spec.get("by_value"):
            target = pickle.loads(base64.b64decode(spec["by_value"]))  # noqa: S301
        else:
            pointers = spec.get("pointers") or {}
            module_name, qualname = pointers.get("module"), pointers.get("qualname")
            if not module_name or not qualname:
                raise BadCall("an object needs by_value or pointers {module, qualname}")
            target = importlib.import_module(module_name)
            for part in str(qualname).split("."):
                target = getattr(target, part)
        if kind == "module" and isinstance(target, type):
            if spec.get("init"):
                args, kwargs = pickle.loads(base64.b64decode(spec["init"]))  # noqa: S301
            else:
                init = spec.get("init_json") or {}
                args, kwargs = init.get("args", []), init.get("kwargs", {})
            target = target(*args, **kwargs)
        elif kind == "function" and not callable(target):
            raise BadCall(f"{type(target).__name__} object is not callable")
        return target

    def _on_put(self, cid: int, meta_raw: bytes, body: bytes | bytearray) -> None:
        token = _current_call.set(cid)
        self.inflight[cid] = None
        try:
            meta = json.loads(meta_raw)
            spec = json.loads(body)
            kind = spec.get("kind", "function")
            target = self._materialize(spec, meta.get("code_dir"))
            allow = frozenset(spec.get("pickle_allow") or ())
            self.objects[meta["name"]] = Obj(meta["name"], kind, target, allow)
            info: dict[str, Any] = {"kind": kind}
            if kind == "module":
                cls = type(target)
                info["class"] = _type_name(cls)
                info["methods"] = sorted(
                    n for n in dir(cls) if not n.startswith("_") and callable(getattr(cls, n))
                )
            self._flush_output(cid)
            self.channel.send(p.RESULT, cid, json.dumps(info).encode())
        except BaseException as exc:
            self._flush_output(cid)
            self.channel.send(p.ERROR, cid, self._error_payload(exc))
        finally:
            self.inflight.pop(cid, None)
            _current_call.reset(token)

    # -- calls ------------------------------------------------------------------
    def _resolve(self, meta: dict[str, Any]) -> tuple[Callable[..., Any], frozenset[str] | None]:
        """The callable a call names, and what its arguments may unpickle
        (None: anything, for a caller the daemon marked as a writer)."""
        name = meta["o"]
        obj = self.objects.get(name)
        if obj is None:
            raise LookupError(f"no object named {name!r} in this env")
        trusted = bool(meta.get("t"))
        allow = None if trusted else obj.allow
        method = meta.get("m")
        if obj.kind == "function":
            if method not in (None, "call", "__call__"):
                raise BadCall(f"{name!r} is a function: call it with POST /objects/{name}/call")
            return obj.target, allow
        if not method or method == "call":
            method = "__call__"
        if method.startswith("_") and method != "__call__" and not trusted:
            # The daemon refuses these first (403); this is the second lock.
            raise BadCall(f"method {method!r} is private")
        fn = getattr(obj.target, method, None)
        if fn is None or not callable(fn):
            raise BadCall(f"{name!r} ({type(obj.target).__name__}) has no method {method!r}")
        return fn, allow

    def _on_ref(self, cid: int, meta: dict[str, Any]) -> None:
        """Send a kept object (``g``: its key) or free it (``d``)."""
        if "d" in meta:
            self.refs.pop(str(meta["d"]), None)
            self.channel.send_parts(p.RESULT, cid, _encode(None, meta.get("e", "pickle")))
            return
        key = str(meta["g"])
        if key not in self.refs:
            self.channel.send(p.ERROR, cid, p.error_payload("ref_gone", _REF_GONE))
            return
        self.channel.send_parts(p.RESULT, cid, _encode(self.refs[key], meta.get("e", "pickle")))

    def _ref_resolver(self, keys: list[str]) -> Callable[[str], Any]:
        allowed = frozenset(keys)

        def resolve(key: str) -> Any:
            if key not in allowed:  # the daemon checked the declared ones only
                raise BadCall(f"the call's arguments hold a ref ({key[:8]}...) it did not "
                              "declare in X-Den-Refs")
            if key not in self.refs:
                raise RefLost(_REF_GONE)
            return self.refs[key]

        return resolve

    def _on_call(self, cid: int, meta_raw: bytes, body: bytes | bytearray) -> None:
        try:
            meta = json.loads(meta_raw)
            if "g" in meta or "d" in meta:
                self._on_ref(cid, meta)
                return
            fn, allow = self._resolve(meta)
        except LookupError as exc:
            self.channel.send(p.ERROR, cid, p.error_payload("not_found", str(exc)))
            return
        except Exception as exc:
            self.channel.send(p.ERROR, cid, p.error_payload("bad_request", str(exc)))
            return
        enc = meta.get("e", "pickle")
        resolve: Callable[[str], Any] | None = None
        if meta.get("r"):
            resolve = self._ref_resolver(list(meta["r"]))
            if allow is not None:
                allow = allow | {_REF_GLOBAL}
        if meta.get("k"):
            self._keep[cid] = dict(meta["k"])
        self.inflight[cid] = None
        if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
            self.loop.call_soon_threadsafe(self._start_async, cid, fn, body, enc, allow, resolve)
        else:
            self._run_sync(cid, fn, body, enc, allow, resolve)

    def _on_cancel(self, cid: int) -> None:
        handle = self.inflight.get(cid)
        if isinstance(handle, asyncio.Task):
            self.loop.call_soon_threadsafe(handle.cancel)
        elif isinstance(handle, int):
            # Best effort: interrupts pure-Python code; C code finishes first.
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(handle), ctypes.py_object(CallCancelled)
            )

    def _run_sync(self, cid: int, fn: Callable[..., Any], body: bytes | bytearray, enc: str,
                  allow: frozenset[str] | None,
                  resolve: Callable[[str], Any] | None = None) -> None:
        token = _current_call.set(cid)
        self.inflight[cid] = threading.get_ident()
        try:
            args, kwargs = _decode_args(body, enc, allow, resolve)
            result = fn(*args, **kwargs)
            if inspect.isawaitable(result) or inspect.isasyncgen(result):
                fut = asyncio.run_coroutine_threadsafe(
                    self._emit_async(cid, result, enc), self.loop
                )
                fut.result()
            else:
                self._emit(cid, result, enc)
        except CallCancelled:
            pass
        except BaseException as exc:
            self._flush_output(cid)
            self.channel.send(p.ERROR, cid, self._error_payload(exc))
        finally:
            self.inflight.pop(cid, None)
            self._keep.pop(cid, None)
            _current_call.reset(token)

    def _start_async(self, cid: int, fn: Callable[..., Any], body: bytes | bytearray,
                     enc: str, allow: frozenset[str] | None,
                     resolve: Callable[[str], Any] | None = None) -> None:
        ctx = contextvars.copy_context()
        ctx.run(_current_call.set, cid)
        self.inflight[cid] = self.loop.create_task(
            self._run_async(cid, fn, body, enc, allow, resolve), context=ctx)

    async def _run_async(self, cid: int, fn: Callable[..., Any], body: bytes | bytearray,
                         enc: str, allow: frozenset[str] | None,
                         resolve: Callable[[str], Any] | None = None) -> None:
        try:
            args, kwargs = _decode_args(body, enc, allow, resolve)
            await self._emit_async(cid, fn(*args, **kwargs), enc)
        except asyncio.CancelledError:
            pass
        except BaseException as exc:
            self._flush_output(cid)
            self.channel.send(p.ERROR, cid, self._error_payload(exc))
        finally:
            self.inflight.pop(cid, None)
            self._keep.pop(cid, None)

    async def _emit_async(self, cid: int, result: Any, enc: str) -> None:
        """Await a result and send it (or stream it, for an async generator)."""
        _current_call.set(cid)
        while inspect.isawaitable(result):
            result = await result
        if inspect.isasyncgen(result) and cid not in self._keep:
            self.channel.send(p.GENERATOR, cid)
            async for item in result:
                self._flush_output(cid)
                self.channel.send_parts(p.YIELD, cid, _encode(item, enc))
            self._flush_output(cid)
            self.channel.send(p.RESULT, cid)
        else:
            self._emit(cid, result, enc)

    def _emit(self, cid: int, result: Any, enc: str) -> None:
        """Send a plain result, or stream a (sync) generator's items; or keep the
        result as a ref and send its description."""
        keep = self._keep.pop(cid, None)
        if keep is not None:
            self.refs[str(keep["key"])] = result
            info = {**keep, "type": _type_name(type(result)), "size": _size_of(result)}
            self._flush_output(cid)
            self.channel.send_parts(p.RESULT, cid, _encode(info, enc))
            return
        if inspect.isgenerator(result):
            self.channel.send(p.GENERATOR, cid)
            for item in result:
                self._flush_output(cid)
                self.channel.send_parts(p.YIELD, cid, _encode(item, enc))
            self._flush_output(cid)
            self.channel.send(p.RESULT, cid)
        else:
            payload = _encode(result, enc)
            self._flush_output(cid)
            self.channel.send_parts(p.RESULT, cid, payload)

    def _error_payload(self, exc: BaseException) -> bytes:
        """An ``X`` payload for an exception raised by user code (or while loading it)."""
        if isinstance(exc, ArgumentsRefused):
            return p.error_payload("pickle_refused", str(exc))
        if isinstance(exc, RefLost):
            return p.error_payload("ref_gone", str(exc))
        if isinstance(exc, BadCall):
            return p.error_payload("bad_request", str(exc))
        tb_obj = exc.__traceback__
        # Drop this module's own frames: the caller wants to see their code.
        while tb_obj is not None and tb_obj.tb_frame.f_code.co_filename == __file__:
            tb_obj = tb_obj.tb_next
        tb = "".join(traceback.format_exception(type(exc), exc, tb_obj))
        pickled: str | None = None
        try:
            raw = cloudpickle.dumps(exc)
            pickle.loads(raw)  # noqa: S301 - our own bytes; proves the exception round-trips
            pickled = base64.b64encode(raw).decode()
        except Exception:
            pickled = None
        return p.error_payload(
            "remote_exception",
            str(exc),
            type=_type_name(type(exc)),
            traceback=tb,
            pickle=pickled,
            env=self.env,
        )


def _size_of(value: Any) -> int | None:
    """A kept object's size in bytes, when it says (arrays, frames, bytes)."""
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    if isinstance(value, str):
        return len(value)
    try:
        return memoryview(value).nbytes  # bytes, array.array, anything with a buffer
    except TypeError:
        pass
    memory = getattr(value, "memory_usage", None)
    if callable(memory):
        try:
            total = memory(deep=True)
            return int(total.sum()) if hasattr(total, "sum") else int(total)
        except Exception:
            return None
    return None


def _decode_args(body: bytes | bytearray, enc: str, allow: frozenset[str] | None = None,
                 resolve: Callable[[str], Any] | None = None
                 ) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """A call's (args, kwargs). ``allow`` None: any pickle (the caller writes the
    cluster); else plain data plus those dotted names (see den.node.safepickle).
    ``resolve`` turns the refs among them into their kept objects."""
    if not body:
        return (), {}
    if resolve is not None:
        from den.client import refs

        with refs.resolving(resolve):
            return _decode_args(body, enc, allow)
    try:
        if enc == "json":
            data = json.loads(body)
            if isinstance(data, list):
                return tuple(data), {}
            if not isinstance(data, dict):
                raise BadCall('a JSON call body is {"args": [...], "kwargs": {...}}')
            return tuple(data.get("args") or ()), dict(data.get("kwargs") or {})
        if enc == "oob":
            if isinstance(body, bytes):
                body = bytearray(body)  # arrays rebuilt on it must be writable
            pickled, buffers = p.unpack_oob(body)
            if allow is None:
                args, kwargs = pickle.loads(pickled, buffers=buffers)  # noqa: S301 - a writer's
            else:
                args, kwargs = safepickle.loads(pickled, buffers=buffers, extra=allow)
        elif allow is None:
            args, kwargs = pickle.loads(body)  # noqa: S301 - the daemon found a writer
        else:
            args, kwargs = safepickle.loads(body, extra=allow)
    except (BadCall, RefLost):
        raise
    except safepickle.PickleRefused as exc:
        raise ArgumentsRefused(str(exc)) from None
    except Exception as exc:
        raise BadCall(f"could not decode the call's arguments: {exc}") from exc
    return tuple(args), dict(kwargs)


def _json_default(value: Any) -> Any:
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    if isinstance(value, (set, frozenset, tuple)):  # a tuple: unions fail on 3.9
        return list(value)
    raise TypeError(
        f"result of type {type(value).__name__} is not JSON-serialisable; "
        "call with application/x-cloudpickle instead"
    )


def _encode(value: Any, enc: str) -> list[bytes | memoryview]:
    """A result (or yielded item) as the parts of a frame body."""
    if enc == "json":
        return [json.dumps(value, default=_json_default).encode()]
    if enc == "oob":
        buffers: list[pickle.PickleBuffer] = []
        try:
            pickled = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
        except Exception:
            buffers.clear()
            pickled = cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
        return p.pack_oob(pickled, [b.raw() for b in buffers])
    try:
        # The C pickler is several times faster and either pickles a global by a
        # reference that resolves here or fails; cloudpickle handles the rest.
        return [pickle.dumps(value, protocol=5)]
    except Exception:
        return [cloudpickle.dumps(value, protocol=5)]


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> None:
    """Entry point: ``python -c <boot> <socket fd> <env name>`` (see den.node.envs).
    The env name comes as an argument: user code sees no ``DEN_NODE_*`` variable."""
    args = sys.argv[1:] if argv is None else argv
    sock = socket.socket(fileno=int(args[0]))
    sock.setblocking(True)
    Worker(sock, args[1] if len(args) > 1 else "base").serve()


if __name__ == "__main__":
    main()
