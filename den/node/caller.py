"""Caller side of the node daemon: what the den client uses to run code on a cluster.

Only httpx and cloudpickle: importing this never imports starlette or uvicorn.

    node = NodeClient("http://10.0.0.5:32300", token="den_...")
    node.put_function("add", add)                  # by value
    sha = node.sync_code(".")                      # or by code bundle + pointers
    node.put_function("train", train, code=sha, env={"name": "sk", "reqs": ["scikit-learn"]})
    node.call("add", args=(1, 2))                  # -> 3; remote prints appear here
    node.put_module("model", Model, init_args=(3,))
    node.call("model", "predict", args=(x,))

Remote exceptions are re-raised as their own type (else :class:`RemoteError`) with
the remote traceback attached as a note; daemon-side failures raise the classes of
:mod:`den.node.errors` (``WorkerCrashed``, ``CallTimeout``, ...). A call of a
generator function returns an iterator that yields items as the remote side
produces them.
"""

from __future__ import annotations

import base64
import collections
import json
import os
import pickle
import sys
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import cloudpickle
import httpx

from den.client.refs import collecting
from den.node import protocol as p
from den.node.bundle import DEFAULT_MAX_BYTES, bundle_project
from den.node.errors import CallTimeout, NodeError, NodeUnreachable, error_from_payload

__all__ = [
    "AsyncNodeClient",
    "FrameReader",
    "NodeClient",
    "bundle_project",
    "function_spec",
    "module_spec",
    "pointers_for",
    "print_output",
]

#: ``callback(stream, text)``: stream is "stdout", "stderr" or "log".
OutputCallback = Callable[[str, str], None]
if TYPE_CHECKING:
    # Only for annotations: ``X | Y`` of types fails at run time on Python 3.9, where
    # code on a node (its runtime may be a 3.9) can use this module too.
    Frame = tuple[int, bytes | bytearray | memoryview]
    EnvLike = str | Mapping[str, Any] | None

_HEADER = p.HTTP_HEADER
_HSIZE = _HEADER.size


def print_output(stream: str, text: str) -> None:
    """Default output callback: remote stdout to local stdout, the rest to stderr."""
    out = sys.stdout if stream == "stdout" else sys.stderr
    out.write(text)
    out.flush()


def pointers_for(obj: Any) -> dict[str, str] | None:
    """Import pointers of a function or class, or None if it must go by value
    (defined in ``__main__``, a notebook, or inside another function)."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "<" in qualname:
        return None
    return {"module": module, "qualname": qualname}


def _b64pickle(value: Any) -> str:
    return base64.b64encode(cloudpickle.dumps(value, protocol=5)).decode()


def _env_json(env: EnvLike | Any) -> Any:
    if env is None or isinstance(env, str):
        return env
    if isinstance(env, Mapping):
        return dict(env)
    to_json = getattr(env, "to_json", None) or getattr(env, "to_dict", None)
    if callable(to_json):
        return to_json()
    raise TypeError("env must be a name, a dict {name, reqs, env_vars, setup_cmds, python}, "
                    "or an object with to_json()")


def _target_spec(kind: str, obj: Any, *, env: EnvLike, code: str | None,
                 pointers: Mapping[str, str] | None, address: str | None,
                 pickle_allow: Sequence[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"kind": kind, "env": _env_json(env), "code": code,
                            "address": address}
    if pickle_allow:
        spec["pickle_allow"] = [str(name) for name in pickle_allow]
    if pointers is None and code is not None and obj is not None:
        pointers = pointers_for(obj)
    if pointers is not None:
        spec["pointers"] = dict(pointers)
    elif obj is not None:
        spec["by_value"] = _b64pickle(obj)
    else:
        raise ValueError("give the object itself, or pointers {module, qualname} with code")
    return spec


def function_spec(fn: Callable[..., Any] | None = None, *, env: EnvLike = None,
                  code: str | None = None, pointers: Mapping[str, str] | None = None,
                  address: str | None = None,
                  pickle_allow: Sequence[str] | None = None) -> dict[str, Any]:
    """The ``PUT /objects/<name>`` body for a function: by import pointers into the
    code bundle when ``code`` is given and the function is importable, else by value.
    ``pickle_allow``: dotted names of the extra classes callers with read access may
    send in their pickled arguments (see den.node.safepickle)."""
    return _target_spec("function", fn, env=env, code=code, pointers=pointers, address=address,
                        pickle_allow=pickle_allow)


def module_spec(obj: Any = None, *, init_args: Sequence[Any] = (),
                init_kwargs: Mapping[str, Any] | None = None, env: EnvLike = None,
                code: str | None = None, pointers: Mapping[str, str] | None = None,
                address: str | None = None,
                pickle_allow: Sequence[str] | None = None) -> dict[str, Any]:
    """The ``PUT /objects/<name>`` body for a module: a class (instantiated remotely
    with ``init_args``/``init_kwargs``) or an instance (sent by value, state and all)."""
    spec = _target_spec("module", obj, env=env, code=code, pointers=pointers, address=address,
                        pickle_allow=pickle_allow)
    if obj is None or isinstance(obj, type):
        spec["init"] = _b64pickle((tuple(init_args), dict(init_kwargs or {})))
    return spec


class FrameReader:
    """Incremental parser of an ``application/x-den-frames`` stream."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> list[Frame]:
        buf = self._buf
        buf += chunk
        frames: list[Frame] = []
        pos = 0
        end = len(buf)
        while end - pos >= _HSIZE:
            kind, n = _HEADER.unpack_from(buf, pos)
            if end - pos - _HSIZE < n:
                break
            start = pos + _HSIZE
            frames.append((kind, buf[start:start + n]))  # a copy, and writable
            pos = start + n
        if pos:
            del buf[:pos]
        return frames


async def _next_chunk(chunks: AsyncIterator[bytes]) -> bytes | None:
    """The next chunk, or None at the end (``anext(it, None)`` is Python 3.10+)."""
    try:
        return await chunks.__anext__()
    except StopAsyncIteration:
        return None


def _frames_of(data: bytes | bytearray | memoryview) -> Iterator[Frame]:
    """Frames of a complete body, as zero-copy views."""
    view = memoryview(data)
    pos = 0
    while pos < len(view):
        kind, n = _HEADER.unpack_from(view, pos)
        start = pos + _HSIZE
        yield kind, view[start:start + n]
        pos = start + n


def _raise_error(payload: bytes | bytearray | memoryview) -> None:
    raise error_from_payload(json.loads(bytes(payload)))


def _response_error(resp: httpx.Response) -> BaseException:
    try:
        err = resp.json()["error"]
    except (ValueError, KeyError, TypeError):
        return NodeError(f"the node answered HTTP {resp.status_code}: {resp.text[:300]}",
                         status=resp.status_code)
    return error_from_payload(err, resp.status_code)


def _dumps_call(args: Sequence[Any], kwargs: Mapping[str, Any] | None
                ) -> tuple[list[bytes | memoryview], int]:
    """Pickle call arguments with out-of-band buffers: arrays are not copied."""
    buffers: list[pickle.PickleBuffer] = []
    pickled = cloudpickle.dumps((tuple(args), dict(kwargs or {})), protocol=5,
                                buffer_callback=buffers.append)
    parts = p.pack_oob(pickled, [b.raw() for b in buffers])
    return parts, sum(len(x) if isinstance(x, bytes) else x.nbytes for x in parts)


def _loads(payload: bytes | bytearray | memoryview) -> Any:
    pickled, buffers = p.unpack_oob(payload)
    return pickle.loads(pickled, buffers=buffers)  # noqa: S301 - our daemon's answer


def _call_headers(timeout: float | None, size: int, address: str | None = None
                  ) -> dict[str, str]:
    headers = {"content-type": p.OOB_PICKLE, "accept": p.FRAMES,
               "content-length": str(size)}
    if timeout:
        headers[p.TIMEOUT_HEADER] = repr(float(timeout))
    if address:
        # Which saved resource the object is: a daemon that restarted since it
        # was put asks den for its saved copy (den.node.restore).
        headers[p.ADDRESS_HEADER] = address
    return headers


_BIG = 1 << 20


def _content(parts: list[bytes | memoryview], size: int) -> bytes | Iterator[bytes]:
    """A request body as httpx should send it.

    httpx's sync transport re-slices (copies) the rest of a bytes body after every
    partial socket send, which takes ~1 s for 100 MB; views of at most 1 MB avoid
    that, and sending the parts one by one avoids joining them. The caller sets
    Content-Length so the body is not sent chunked.
    """
    if size < _BIG:
        return b"".join(parts)

    def views() -> Iterator[memoryview]:
        for part in parts:
            view = memoryview(part).cast("B")
            for i in range(0, len(view), _BIG):
                yield view[i:i + _BIG]

    # memoryviews are bytes-like, which is all httpx needs of them.
    return cast(Iterator[bytes], views())


# The 9-byte frame header starts 7 bytes into the buffer, so that the payload (and
# the arrays rebuilt on it) are 16-byte aligned.
_SKEW = 16 - _HSIZE


def _read_sized(chunks: Iterator[bytes], length: int) -> memoryview:
    """Read a sized body into one buffer (httpx's read() is several times slower)."""
    data = bytearray(length + _SKEW)
    pos = _SKEW
    for chunk in chunks:
        data[pos:pos + len(chunk)] = chunk
        pos += len(chunk)
    if pos != length + _SKEW:
        raise NodeError(f"the node's answer was cut short ({pos - _SKEW} of {length} bytes)")
    return memoryview(data)[_SKEW:]


async def _aread_sized(chunks: AsyncIterator[bytes], length: int) -> memoryview:
    data = bytearray(length + _SKEW)
    pos = _SKEW
    async for chunk in chunks:
        data[pos:pos + len(chunk)] = chunk
        pos += len(chunk)
    if pos != length + _SKEW:
        raise NodeError(f"the node's answer was cut short ({pos - _SKEW} of {length} bytes)")
    return memoryview(data)[_SKEW:]


def _http_timeout(timeout: float | None) -> httpx.Timeout:
    # The daemon enforces the call's timeout; the HTTP read waits a little longer.
    return httpx.Timeout(connect=10.0, read=timeout + 10.0 if timeout else None,
                         write=None, pool=None)


def _handle_frame(kind: int, payload: bytes | bytearray | memoryview,
                  stream: OutputCallback | None) -> None:
    name = p.OUTPUT_KINDS.get(kind)
    if name is not None:
        if stream is not None:
            stream(name, bytes(payload).decode("utf-8", "replace"))
    elif kind == p.ERROR:
        _raise_error(payload)


def _client_kwargs(base_url: str, token: str | None, timeout: float | None,
                   tls: tuple[str, str] | None = None) -> dict[str, Any]:
    """httpx settings for one daemon; ``tls`` is (certificate PEM, fingerprint)
    as den hands them out for an HTTPS daemon, which is then the only server
    the client trusts (:mod:`den.node.pinning`)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    extra: dict[str, Any] = {}
    if tls is not None:
        from den.node.pinning import pinned_context

        extra["verify"] = pinned_context(*tls)
    return {**extra,
        "base_url": base_url.rstrip("/"),
        "headers": headers,
        "timeout": httpx.Timeout(timeout, connect=10.0),
        "limits": httpx.Limits(max_connections=256, max_keepalive_connections=64),
    }


#: Every live node client, so a forked child can drop the connections it inherited.
_clients: weakref.WeakSet[NodeClient | AsyncNodeClient] = weakref.WeakSet()


def _forget_connections_after_fork() -> None:
    """In a forked child: inherited keep-alive connections belong to the parent (two
    processes reading one socket take each other's answers, or hang), so every
    client opens its own on next use. Nothing is closed: that would be the parent's."""
    for client in list(_clients):
        client._pool = None


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_forget_connections_after_fork)


class NodeClient:
    """Talks to one node daemon. Thread-safe; keep one per daemon and reuse it.
    Fork-safe: a forked child opens connections of its own.

    ``timeout`` bounds control requests (puts, uploads, listings); calls run as long
    as their own ``timeout`` (or the daemon's default) allows.
    """

    def __init__(self, base_url: str, token: str | None = None, timeout: float | None = 600.0,
                 *, stream: OutputCallback | None = print_output,
                 tls: tuple[str, str] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.stream = stream
        self._kwargs = _client_kwargs(base_url, token, timeout, tls)
        self._pool: httpx.Client | None = httpx.Client(**self._kwargs)
        _clients.add(self)

    @property
    def _http(self) -> httpx.Client:
        pool = self._pool
        if pool is None:
            pool = self._pool = httpx.Client(**self._kwargs)
        return pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, request: httpx.Request, stream: bool = False) -> httpx.Response:
        try:
            return self._http.send(request, stream=stream)
        except httpx.TimeoutException as exc:
            raise CallTimeout(f"no answer from the node at {self.base_url} in time ({exc})"
                              ) from exc
        except httpx.TransportError as exc:
            raise NodeUnreachable(f"could not reach the node at {self.base_url} ({exc}); "
                                  "is the cluster up?") from exc

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        resp = self._send(self._http.build_request(method, path, **kwargs))
        if resp.status_code >= 400:
            raise _response_error(resp)
        return resp

    # -- info -------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """``{"status": "ok", "version": ...}``; raises NodeUnreachable if it is down."""
        return self._request("GET", "/health").json()  # type: ignore[no-any-return]

    def list_objects(self) -> list[dict[str, Any]]:
        return self._request("GET", "/objects").json()["objects"]  # type: ignore[no-any-return]

    def run_command(self, command: str | list[str], timeout: float | None = None,
                    stream: OutputCallback | None = None) -> tuple[int, str, str]:
        """Run a shell command on the node (``POST /run``; write access to the
        cluster); its output goes to ``stream`` as it arrives. Returns
        (exit code, stdout, stderr); a command past ``timeout`` is killed and
        its exit code is -9."""
        body: dict[str, Any] = {"command": command}
        if timeout is not None:
            body["timeout"] = timeout
        request = self._http.build_request("POST", "/run", json=body,
                                           timeout=httpx.Timeout(None, connect=10.0))
        resp = self._send(request, stream=True)
        out: dict[str, list[str]] = {"stdout": [], "stderr": []}
        code = -1
        try:
            if resp.status_code >= 400:
                resp.read()
                raise _response_error(resp)
            for line in resp.iter_lines():
                if not line.strip():
                    continue
                item = json.loads(line)
                if "exit_code" in item:
                    code = int(item["exit_code"]) if item["exit_code"] is not None else -1
                    continue
                name = "stderr" if item.get("stream") == "stderr" else "stdout"
                out[name].append(str(item.get("text", "")))
                if stream is not None:
                    stream(name, str(item.get("text", "")))
        finally:
            resp.close()
        return code, "".join(out["stdout"]), "".join(out["stderr"])

    def get_object(self, name: str) -> dict[str, Any]:
        return self._request("GET", f"/objects/{name}").json()  # type: ignore[no-any-return]

    def list_envs(self) -> list[dict[str, Any]]:
        return self._request("GET", "/envs").json()["envs"]  # type: ignore[no-any-return]

    # -- code -------------------------------------------------------------------
    def has_code(self, sha: str) -> bool:
        resp = self._send(self._http.build_request("HEAD", f"/code/{sha}"))
        if resp.status_code in (200, 404):
            return resp.status_code == 200
        raise _response_error(resp)

    def put_code(self, sha: str, data: bytes) -> bool:
        """Upload a bundle; True if the node did not have it yet."""
        resp = self._request("PUT", f"/code/{sha}", content=_content([data], len(data)),
                             headers={"content-type": "application/gzip",
                                      "content-length": str(len(data))})
        return bool(resp.json().get("created"))

    def sync_code(self, path: str | os.PathLike[str] = ".",
                  max_bytes: int = DEFAULT_MAX_BYTES) -> str:
        """Bundle a project directory and upload it unless the node has it; its sha."""
        sha, data = bundle_project(path, max_bytes=max_bytes)
        if not self.has_code(sha):
            self.put_code(sha, data)
        return sha

    # -- objects and envs -------------------------------------------------------
    def put_object(self, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Put an object from a raw spec (see den.node's docstring); print its output."""
        info: dict[str, Any] = self._request("PUT", f"/objects/{name}", json=dict(spec)).json()
        if self.stream is not None:
            for chunk in info.get("output", []):
                self.stream(chunk["stream"], chunk["text"])
        return info

    def put_function(self, name: str, fn: Callable[..., Any] | None = None, *,
                     env: EnvLike = None, code: str | None = None,
                     pointers: Mapping[str, str] | None = None,
                     address: str | None = None,
                     pickle_allow: Sequence[str] | None = None) -> dict[str, Any]:
        return self.put_object(name, function_spec(fn, env=env, code=code, pointers=pointers,
                                                   address=address, pickle_allow=pickle_allow))

    def put_module(self, name: str, obj: Any = None, *, init_args: Sequence[Any] = (),
                   init_kwargs: Mapping[str, Any] | None = None, env: EnvLike = None,
                   code: str | None = None, pointers: Mapping[str, str] | None = None,
                   address: str | None = None,
                   pickle_allow: Sequence[str] | None = None) -> dict[str, Any]:
        return self.put_object(name, module_spec(obj, init_args=init_args,
                                                 init_kwargs=init_kwargs, env=env, code=code,
                                                 pointers=pointers, address=address,
                                                 pickle_allow=pickle_allow))

    def delete_object(self, name: str) -> None:
        self._request("DELETE", f"/objects/{name}")

    def put_env(self, env: Mapping[str, Any]) -> dict[str, Any]:
        """Create an env (or replace it, if its description changed) and start it."""
        return self._request("POST", "/envs", json=dict(env)).json()  # type: ignore[no-any-return]

    def delete_env(self, name: str) -> None:
        self._request("DELETE", f"/envs/{name}")

    # -- calls ------------------------------------------------------------------
    def call(self, name: str, method: str | None = None, args: Sequence[Any] = (),
             kwargs: Mapping[str, Any] | None = None, *,
             stream: OutputCallback | bool | None = True,
             timeout: float | None = None, address: str | None = None,
             keep: float | None = None,
             refs_check: Callable[[list[Any]], None] | None = None) -> Any:
        """Call a function (``method=None``) or a module's method; return its result.

        ``stream`` receives remote output as it arrives (True: this client's default,
        printing it; None or False: drop it). ``timeout`` is enforced by the daemon.
        ``address``: the saved resource the object is, so that a daemon that lost
        it (it restarted) can put it back from den's saved copy. ``keep``: keep the
        result on the cluster for that many seconds and return the ref's
        description (``{"key", "type", "size", "owner", "expires_at"}``) instead.
        The refs (:class:`den.Ref`) among the arguments are declared to the daemon,
        after ``refs_check(refs)`` (which may refuse them) when given.
        """
        cb = self.stream if stream is True else (stream or None)
        with collecting() as used:
            parts, size = _dumps_call(args, kwargs)
        headers = _call_headers(timeout, size, address)
        if used:
            if refs_check is not None:
                refs_check(used)
            headers[p.REFS_HEADER] = ",".join(dict.fromkeys(ref.key for ref in used))
        if keep is not None:
            headers[p.KEEP_HEADER] = repr(float(keep))
        request = self._http.build_request(
            "POST", f"/objects/{name}/{method or 'call'}", content=_content(parts, size),
            headers=headers, timeout=_http_timeout(timeout),
        )
        return self._result(request, cb)

    def ref_get(self, key: str, *, stream: OutputCallback | bool | None = True) -> Any:
        """The object kept as the ref ``key`` on this daemon."""
        cb = self.stream if stream is True else (stream or None)
        request = self._http.build_request("GET", f"/refs/{key}",
                                           headers={"accept": p.FRAMES})
        return self._result(request, cb)

    def ref_delete(self, key: str) -> None:
        """Free the object kept as the ref ``key`` on this daemon."""
        self._request("DELETE", f"/refs/{key}")

    def _result(self, request: httpx.Request, cb: OutputCallback | None) -> Any:
        """Send a call (or a ref fetch) and read its framed answer."""
        resp = self._send(request, stream=True)
        handed_over = False
        try:
            if resp.status_code != 200:
                resp.read()
                raise _response_error(resp)
            length = resp.headers.get("content-length")
            if length is not None:
                # The result came first: one frame, read whole.
                for kind, payload in _frames_of(_read_sized(resp.iter_raw(), int(length))):
                    if kind == p.RESULT:
                        return _loads(payload)
                    _handle_frame(kind, payload, cb)
                raise NodeError("the node's answer held no result")
            chunks = resp.iter_raw()
            reader = FrameReader()
            frames: collections.deque[Frame] = collections.deque()
            while True:
                if not frames:
                    chunk = next(chunks, None)
                    if chunk is None:
                        raise NodeError("the node closed the call before sending its result")
                    frames.extend(reader.feed(chunk))
                    continue
                kind, payload = frames.popleft()
                if kind == p.RESULT:
                    return _loads(payload)
                if kind == p.GENERATOR:
                    handed_over = True
                    return self._iterate(resp, chunks, reader, frames, cb)
                _handle_frame(kind, payload, cb)
        except httpx.TransportError as exc:
            raise NodeUnreachable(f"lost the connection to the node at {self.base_url} "
                                  f"during the call ({exc})") from exc
        finally:
            if not handed_over:
                resp.close()

    def _iterate(self, resp: httpx.Response, chunks: Iterator[bytes], reader: FrameReader,
                 frames: collections.deque[Frame], cb: OutputCallback | None) -> Iterator[Any]:
        try:
            while True:
                if not frames:
                    chunk = next(chunks, None)
                    if chunk is None:
                        raise NodeError("the node closed the generator's stream early")
                    frames.extend(reader.feed(chunk))
                    continue
                kind, payload = frames.popleft()
                if kind == p.YIELD:
                    yield _loads(payload)
                elif kind == p.RESULT:
                    return
                else:
                    _handle_frame(kind, payload, cb)
        finally:
            resp.close()


class AsyncNodeClient:
    """The asyncio twin of :class:`NodeClient` (calls, puts and code uploads)."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float | None = 600.0,
                 *, stream: OutputCallback | None = print_output,
                 tls: tuple[str, str] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.stream = stream
        self._kwargs = _client_kwargs(base_url, token, timeout, tls)
        self._pool: httpx.AsyncClient | None = httpx.AsyncClient(**self._kwargs)
        _clients.add(self)

    @property
    def _http(self) -> httpx.AsyncClient:
        pool = self._pool
        if pool is None:
            pool = self._pool = httpx.AsyncClient(**self._kwargs)
        return pool

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()

    async def __aenter__(self) -> AsyncNodeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _send(self, request: httpx.Request, stream: bool = False) -> httpx.Response:
        try:
            return await self._http.send(request, stream=stream)
        except httpx.TimeoutException as exc:
            raise CallTimeout(f"no answer from the node at {self.base_url} in time ({exc})"
                              ) from exc
        except httpx.TransportError as exc:
            raise NodeUnreachable(f"could not reach the node at {self.base_url} ({exc}); "
                                  "is the cluster up?") from exc

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        resp = await self._send(self._http.build_request(method, path, **kwargs))
        if resp.status_code >= 400:
            raise _response_error(resp)
        return resp

    async def health(self) -> dict[str, Any]:
        return (await self._request("GET", "/health")).json()  # type: ignore[no-any-return]

    async def has_code(self, sha: str) -> bool:
        resp = await self._send(self._http.build_request("HEAD", f"/code/{sha}"))
        if resp.status_code in (200, 404):
            return resp.status_code == 200
        raise _response_error(resp)

    async def put_code(self, sha: str, data: bytes) -> bool:
        resp = await self._request("PUT", f"/code/{sha}", content=data,
                                   headers={"content-type": "application/gzip"})
        return bool(resp.json().get("created"))

    async def put_object(self, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        info: dict[str, Any] = (
            await self._request("PUT", f"/objects/{name}", json=dict(spec))
        ).json()
        if self.stream is not None:
            for chunk in info.get("output", []):
                self.stream(chunk["stream"], chunk["text"])
        return info

    async def call(self, name: str, method: str | None = None, args: Sequence[Any] = (),
                   kwargs: Mapping[str, Any] | None = None, *,
                   stream: OutputCallback | bool | None = True,
                   timeout: float | None = None, address: str | None = None) -> Any:
        """Like NodeClient.call; a remote generator comes back as an async iterator."""
        cb = self.stream if stream is True else (stream or None)
        parts, size = _dumps_call(args, kwargs)
        request = self._http.build_request(
            "POST", f"/objects/{name}/{method or 'call'}", content=b"".join(parts),
            headers=_call_headers(timeout, size, address), timeout=_http_timeout(timeout),
        )
        resp = await self._send(request, stream=True)
        handed_over = False
        try:
            if resp.status_code != 200:
                await resp.aread()
                raise _response_error(resp)
            length = resp.headers.get("content-length")
            if length is not None:
                for kind, payload in _frames_of(await _aread_sized(resp.aiter_raw(),
                                                                    int(length))):
                    if kind == p.RESULT:
                        return _loads(payload)
                    _handle_frame(kind, payload, cb)
                raise NodeError("the node's answer held no result")
            chunks = resp.aiter_raw()
            reader = FrameReader()
            frames: collections.deque[Frame] = collections.deque()
            while True:
                if not frames:
                    chunk = await _next_chunk(chunks)
                    if chunk is None:
                        raise NodeError("the node closed the call before sending its result")
                    frames.extend(reader.feed(chunk))
                    continue
                kind, payload = frames.popleft()
                if kind == p.RESULT:
                    return _loads(payload)
                if kind == p.GENERATOR:
                    handed_over = True
                    return self._iterate(resp, chunks, reader, frames, cb)
                _handle_frame(kind, payload, cb)
        finally:
            if not handed_over:
                await resp.aclose()

    async def _iterate(self, resp: httpx.Response, chunks: AsyncIterator[bytes],
                       reader: FrameReader, frames: collections.deque[Frame],
                       cb: OutputCallback | None) -> AsyncIterator[Any]:
        try:
            while True:
                if not frames:
                    chunk = await _next_chunk(chunks)
                    if chunk is None:
                        raise NodeError("the node closed the generator's stream early")
                    frames.extend(reader.feed(chunk))
                    continue
                kind, payload = frames.popleft()
                if kind == p.YIELD:
                    yield _loads(payload)
                elif kind == p.RESULT:
                    return
                else:
                    _handle_frame(kind, payload, cb)
        finally:
            await resp.aclose()
