"""What the daemon holds: envs, the objects put into them, and code bundles.

The runtime never unpickles anything: put payloads are JSON (pickled functions and
init arguments travel inside them as base64 strings that only the env's worker
decodes), and call arguments pass through as bytes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import itertools
import json
import logging
import os
import re
import shutil
import tarfile
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from den.node import protocol as p
from den.node.envs import EnvError, EnvSpec, EnvWorker
from den.node.safepickle import DOTTED_NAME_RE

log = logging.getLogger("den.node")

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
ADDRESS_RE = re.compile(r"^/[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)+$")
MAX_PICKLE_ALLOW = 200


class RequestError(Exception):
    """A request the runtime refuses; ``code`` is a protocol error code."""

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra

    @property
    def status(self) -> int:
        return p.ERROR_STATUS.get(self.code, 500)


@dataclass
class RefRecord:
    """A result kept as a ref (den.Ref) in an env's worker: who may use it, until when.

    The object itself is in the worker; this is what the daemon checks first.
    """

    key: str
    env: str
    #: The function or module that made it (None: not saved; the cluster's rules apply).
    address: str | None
    owner: str
    created_at: float
    expires_at: float
    #: Its object was freed (it expired); the record stays a day to say so.
    freed: bool = False


@dataclass
class ObjectRecord:
    """An object put into an env. ``spec`` is the put body, kept to replay it."""

    name: str
    kind: str
    env: str
    address: str | None
    code: str | None
    spec: bytes
    info: dict[str, Any] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    error: str | None = None
    _metas: dict[tuple[str | None, str, bool], bytes] = field(default_factory=dict)

    def call_meta_with(self, method: str | None, enc: str, trusted: bool,
                       extra: dict[str, Any]) -> bytes:
        """The IPC meta of a call that keeps its result or uses refs (not cached)."""
        return json.dumps({"o": self.name, "m": method, "e": enc, "t": trusted,
                           **extra}).encode()

    def call_meta(self, method: str | None, enc: str, trusted: bool) -> bytes:
        """The IPC meta of a call (cached: it is the same for every call).

        ``trusted`` (``"t"``): the caller writes the cluster, so its pickles are
        unpickled in full and it may call private methods; else plain data only.
        """
        key = (method, enc, trusted)
        meta = self._metas.get(key)
        if meta is None:
            meta = json.dumps({"o": self.name, "m": method, "e": enc, "t": trusted}).encode()
            self._metas[key] = meta
        return meta

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "env": self.env,
            "address": self.address,
            "code": self.code,
            "created_at": self.created_at,
            "error": self.error,
            **{k: v for k, v in self.info.items() if k in ("class", "methods")},
        }


def _parse_put(spec: Any) -> dict[str, Any]:
    """Validate a put body; return its fields. Errors name the offending field."""
    if not isinstance(spec, dict):
        raise RequestError("bad_request", "the body must be a JSON object")
    kind = spec.get("kind", "function")
    if kind not in ("function", "module"):
        raise RequestError("bad_request", "kind must be 'function' or 'module'", field="kind")
    by_value, pointers = spec.get("by_value"), spec.get("pointers")
    if by_value is not None:
        if not isinstance(by_value, str):
            raise RequestError("bad_request", "by_value must be base64 text", field="by_value")
        try:
            base64.b64decode(by_value, validate=True)
        except binascii.Error as exc:
            raise RequestError("bad_request", "by_value is not valid base64",
                               field="by_value") from exc
    elif not (
        isinstance(pointers, dict)
        and isinstance(pointers.get("module"), str)
        and isinstance(pointers.get("qualname"), str)
    ):
        raise RequestError(
            "bad_request", "give by_value, or pointers {module, qualname}", field="pointers"
        )
    code = spec.get("code")
    if code is not None and (not isinstance(code, str) or not SHA256_RE.fullmatch(code)):
        raise RequestError("bad_request", "code must be a sha256 hex digest", field="code")
    address = spec.get("address")
    if address is not None and (not isinstance(address, str) or not ADDRESS_RE.fullmatch(address)):
        raise RequestError("bad_request", "address must look like /owner/name", field="address")
    for key in ("init",):
        if spec.get(key) is not None and not isinstance(spec[key], str):
            raise RequestError("bad_request", f"{key} must be base64 text", field=key)
    if spec.get("init_json") is not None and not isinstance(spec["init_json"], dict):
        raise RequestError("bad_request", "init_json must be {args, kwargs}", field="init_json")
    allow = spec.get("pickle_allow")
    if allow is not None and not (
        isinstance(allow, list) and len(allow) <= MAX_PICKLE_ALLOW
        and all(isinstance(n, str) and DOTTED_NAME_RE.fullmatch(n) for n in allow)
    ):
        raise RequestError(
            "bad_request",
            f"pickle_allow must be a list of at most {MAX_PICKLE_ALLOW} dotted names such as "
            "'mypkg.types.Point' (a class or function, never a whole module or a wildcard)",
            field="pickle_allow",
        )
    try:
        env = EnvSpec.from_json(spec.get("env"))
    except ValueError as exc:
        raise RequestError("bad_request", str(exc), field="env") from exc
    return {"kind": kind, "code": code, "address": address, "env": env}


def _extract_bundle(data: bytes, dest: Path) -> None:
    """Unpack a tar(.gz) or zip bundle, refusing paths that leave ``dest``."""
    if data[:2] == b"PK":
        root = dest.resolve()
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for member in zf.namelist():
                # A path check, not a string prefix: /x/code/abc-evil starts with /x/code/abc.
                if not (dest / member).resolve().is_relative_to(root):
                    raise ValueError(f"unsafe path in bundle: {member}")
            zf.extractall(dest)  # noqa: S202 - every member checked above
        return
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tf:
        if hasattr(tarfile, "data_filter"):
            tf.extractall(dest, filter="data")
        else:  # Python before 3.9.17 / 3.10.12 / 3.11.4: no extraction filters
            tf.extractall(dest, members=_data_members(tf, dest))  # noqa: S202 - checked there


def _data_members(tf: tarfile.TarFile, dest: Path) -> list[tarfile.TarInfo]:
    """What tarfile's "data" filter would let through, for interpreters that
    lack it: files, folders and links that stay inside ``dest``, owned by
    whoever unpacks them, without setuid bits or write access for others;
    ValueError for anything else."""
    root = dest.resolve()

    def inside(path: Path) -> bool:
        resolved = path.resolve()
        return resolved == root or root in resolved.parents

    members = []
    for member in tf.getmembers():
        member.name = member.name.lstrip("/" + os.sep)  # as the filter does
        where = root / member.name
        if not inside(where):
            raise ValueError(f"unsafe path in bundle: {member.name}")
        if member.issym() and not inside(where.parent / member.linkname):
            raise ValueError(f"unsafe link in bundle: {member.name}")
        if member.islnk() and not inside(root / member.linkname):
            raise ValueError(f"unsafe link in bundle: {member.name}")
        if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
            raise ValueError(f"unsafe member in bundle: {member.name} is a device or pipe")
        member.mode = (member.mode or 0o644) & 0o755
        member.uid, member.gid, member.uname, member.gname = os.getuid(), os.getgid(), "", ""
        members.append(member)
    return members


class Runtime:
    """Envs, objects and code bundles of one daemon, plus its activity counters."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.code_root = workdir / "code"
        self.code_root.mkdir(parents=True, exist_ok=True)
        (workdir / "envs").mkdir(parents=True, exist_ok=True)
        self.envs: dict[str, EnvWorker] = {}
        self.objects: dict[str, ObjectRecord] = {}
        #: Results kept as refs, by key (their objects live in the envs' workers).
        self.refs: dict[str, RefRecord] = {}
        self._ids = itertools.count(1)
        self.calls_in_flight = 0
        self.last_activity = time.time()
        #: Set when the daemon stops taking calls to stop for autostop (see
        #: den.node.server.DenLink); a call that starts then is refused.
        self.draining = False

    def sweep_refs(self) -> None:
        """Free the objects of expired refs in the workers (best effort); forget refs
        that expired a day ago."""
        now = time.time()
        for key, ref in list(self.refs.items()):
            if ref.expires_at > now:
                continue
            if ref.expires_at < now - 86400:
                del self.refs[key]
            if ref.freed:
                continue
            ref.freed = True
            env = self.envs.get(ref.env)
            if env is not None and env.state == "ready":
                cid, _ = env.open(p.CALL, json.dumps({"d": key}).encode(), b"")
                env.close(cid)  # its answer is not awaited

    def _next_id(self) -> int:
        n = next(self._ids)
        if n >= 0xFFFFFFF0:
            self._ids = itertools.count(1)
        return n

    def touch(self) -> None:
        self.last_activity = time.time()

    # -- envs -------------------------------------------------------------------
    def _new_env(self, spec: EnvSpec) -> EnvWorker:
        env = EnvWorker(spec=spec, workdir=self.workdir, next_id=self._next_id,
                        replay=self._replay)
        self.envs[spec.name] = env
        return env

    async def ensure_env(self, spec: EnvSpec) -> EnvWorker:
        """The running env for ``spec``; a changed spec replaces the env's worker."""
        env = self.envs.get(spec.name)
        if env is not None and (spec.is_bare or env.spec == spec):
            await env.wait_ready()
            return env
        if env is not None:
            log.info("env %s: spec changed; replacing its worker", spec.name)
            await env.stop()
        env = self._new_env(spec)
        await env.start()
        return env

    async def delete_env(self, name: str) -> None:
        env = self.envs.get(name)
        if env is None:
            raise RequestError("not_found", f"no env named {name!r}")
        in_use = sorted(r.name for r in self.objects.values() if r.env == name)
        if in_use:
            raise RequestError("bad_request",
                               f"env {name!r} still holds {', '.join(in_use)}: delete them first")
        await env.stop()
        del self.envs[name]

    async def _replay(self, env: EnvWorker) -> None:
        """Re-create, in a fresh worker, every object that was put into its env."""
        for rec in list(self.objects.values()):
            if rec.env != env.name:
                continue
            kind, payload = await env.request(p.PUT, self._put_meta(rec.name, rec.code),
                                              rec.spec)
            if kind == p.ERROR:
                rec.error = json.loads(payload).get("message", "could not be re-created")
                log.error("env %s: object %s could not be re-created: %s",
                          env.name, rec.name, rec.error)
            else:
                rec.error = None

    async def stop(self) -> None:
        await asyncio.gather(*(env.stop() for env in self.envs.values()),
                             return_exceptions=True)

    # -- objects ----------------------------------------------------------------
    def _put_meta(self, name: str, code: str | None) -> dict[str, Any]:
        return {"name": name, "code_dir": str(self.code_root / code) if code else None}

    async def put_object(self, name: str, body: bytes) -> dict[str, Any]:
        """Create (or replace) an object in its env; return its description."""
        if not NAME_RE.fullmatch(name):
            raise RequestError("bad_request", "object names are letters, digits, '.', '_', '-'")
        try:
            spec = json.loads(body)
        except ValueError as exc:
            raise RequestError("bad_request", f"the body is not JSON: {exc}") from exc
        fields = _parse_put(spec)
        code = fields["code"]
        if code and not self.has_code(code):
            raise RequestError("bad_request",
                               f"code bundle {code} is not on this node: PUT /code/{code} first",
                               field="code")
        try:
            env = await self.ensure_env(fields["env"])
        except EnvError as exc:
            raise RequestError("env_failed", str(exc)) from exc
        old = self.objects.get(name)
        if old is not None and old.env != env.name and old.env in self.envs:
            await self.envs[old.env].request(p.DELETE, {"name": name}, b"")
        output: list[dict[str, str]] = []
        kind, payload = await env.request(p.PUT, self._put_meta(name, code), body, output)
        if kind == p.ERROR:
            err = json.loads(payload)
            raise RequestError(err.pop("code", "internal"), err.pop("message", ""),
                               output=output, **err)
        info = json.loads(payload)
        rec = ObjectRecord(name=name, kind=fields["kind"], env=env.name,
                           address=fields["address"], code=code, spec=bytes(body), info=info)
        self.objects[name] = rec
        self.touch()
        return {**rec.to_json(), "output": output}

    async def delete_object(self, name: str) -> None:
        rec = self.objects.pop(name, None)
        if rec is None:
            raise RequestError("not_found", f"no object named {name!r} on this node")
        env = self.envs.get(rec.env)
        if env is not None and env.state == "ready":
            await env.request(p.DELETE, {"name": name}, b"")

    # -- code bundles -----------------------------------------------------------
    def has_code(self, sha: str) -> bool:
        return bool(SHA256_RE.fullmatch(sha)) and (self.code_root / sha).is_dir()

    def store_code(self, sha: str, data: bytes) -> bool:
        """Verify and unpack a bundle (blocking: run it in a thread). True if new."""
        if not SHA256_RE.fullmatch(sha):
            raise RequestError("bad_request", "the code id must be a sha256 hex digest")
        digest = hashlib.sha256(data).hexdigest()
        if digest != sha:
            raise RequestError("bad_request",
                               f"the body's sha256 is {digest}, not {sha}: upload it again")
        final = self.code_root / sha
        if final.is_dir():
            return False
        tmp = self.code_root / f".tmp-{sha[:12]}-{uuid.uuid4().hex}"
        tmp.mkdir(parents=True)
        try:
            _extract_bundle(data, tmp)
        except Exception as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise RequestError("bad_request", f"could not unpack the bundle: {exc}") from exc
        try:
            os.rename(tmp, final)
        except OSError:  # a concurrent upload of the same bundle won
            shutil.rmtree(tmp, ignore_errors=True)
            return False
        return True
