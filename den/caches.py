# django-stubs leave out FileBasedCache's private helpers, which the subclass
# below uses and overrides as Django's own subclasses do.
# mypy: disable-error-code="attr-defined, misc"
"""Cache backends that store JSON and nothing that decodes into code.

Django's Redis and file caches pickle their values, and unpickling runs
whatever the pickle names: anyone who can write one entry (user code that
reaches the Redis server, or the cache directory on one machine) could run
code in every web process. Here values are JSON (ints stay raw, for Redis's
atomic ``incr``), and an entry that does not decode is a miss, never an
error: den's caches hold only plain values (ids, names, flags, levels,
epochs, counters), so nothing needs more.

Used from ``den.settings``: ``RedisCache`` with ``JSONSerializer`` when
``REDIS_URL`` is set, ``JSONFileBasedCache`` under ``DEN_HOME`` otherwise.

den's caches only save work: every answer in them can be had from the
database. So ``RedisCache`` treats an unreachable Redis as a cache that
misses: reads answer "not found", writes are skipped, and after a failure
Redis is left alone for ``RETRY_SECONDS`` (no request waits on a dead
server meanwhile). It logs the outage once per ``LOG_INTERVAL`` and again
when Redis answers. An invalidation skipped meanwhile could leave an older
entry in a Redis that kept its data; so when Redis is back, every process
that found it unreachable runs the ``on_recovery`` callbacks (the access
cache starts a new epoch) before it reads from it again. A process that made
no cache call during the outage does not know of it: what it reads then may
be as old as the entries' timeout (``DEN_AUTH_CACHE_SECONDS``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.filebased import FileBasedCache
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.files import locks

#: What ``JSONSerializer.loads`` answers for bytes that are not JSON.
UNDECODABLE: Any = type("Undecodable", (), {"__repr__": lambda self: "<undecodable>"})()


class JSONSerializer:
    """Redis values as JSON; integers as Redis integers, as Django stores them."""

    def dumps(self, obj: Any) -> Any:
        if type(obj) is int:
            return obj
        return json.dumps(obj, separators=(",", ":")).encode()

    def loads(self, data: bytes) -> Any:
        try:
            return int(data)
        except ValueError:
            pass
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError):
            return UNDECODABLE


log = logging.getLogger("den.caches")

#: After a failed call, how long Redis is left alone before it is tried again (s).
RETRY_SECONDS = 2.0
#: An outage is logged at most once in this many seconds (and when it ends).
LOG_INTERVAL = 60.0
#: Redis errors that make den carry on without the cache. Imported lazily in
#: ``_unavailable_errors``, so that loading this module does not import redis.
_UNAVAILABLE: tuple[type[BaseException], ...] | None = None

_recovery_callbacks: list[Callable[[], None]] = []
_recovering = threading.local()


def on_recovery(callback: Callable[[], None]) -> None:
    """Run ``callback`` when a Redis cache answers again after this process
    found it unreachable, before anything is read from it
    (``registry.authcache`` starts a new access epoch)."""
    if callback not in _recovery_callbacks:
        _recovery_callbacks.append(callback)


def _unavailable_errors() -> tuple[type[BaseException], ...]:
    global _UNAVAILABLE
    if _UNAVAILABLE is None:
        from redis.exceptions import RedisError

        _UNAVAILABLE = (RedisError, OSError)
    return _UNAVAILABLE


class _Outage:
    """Whether one Redis cache (server and key prefix) is reachable, shared by
    every thread of a process (Django makes a cache object per thread)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lock = threading.Lock()
        self.recovery_lock = threading.Lock()
        self.down_until = 0.0
        self.since: float | None = None  # when the current outage began
        self.logged_at = 0.0
        self.failures = 0

    def waiting(self) -> bool:
        """True while Redis is being left alone after a failure."""
        return time.monotonic() < self.down_until

    def failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        with self.lock:
            self.down_until = now + RETRY_SECONDS
            self.failures += 1
            if self.since is None:
                self.since = now
            if now - self.logged_at < LOG_INTERVAL:
                return
            self.logged_at = now
            failures, self.failures = self.failures, 0
        log.warning("The cache %s is unavailable (%s: %s); den answers from the database "
                    "until it is back (%d failed calls since the last message).",
                    self.name, type(exc).__name__, exc, failures)

    def recovered(self) -> None:
        """Redis answered a PING after an outage: run the recovery callbacks
        before anything is read from it (other threads wait for them), then
        say that it is back."""
        if getattr(_recovering, "active", False):
            return  # a callback's own cache call
        with self.recovery_lock:
            if self.since is None:
                return  # another thread did it
            self.down_until = 0.0
            _recovering.active = True
            try:
                for callback in list(_recovery_callbacks):
                    try:
                        callback()
                    except Exception:
                        log.exception("A cache recovery callback failed")
            finally:
                _recovering.active = False
            if self.waiting():
                return  # a callback found it down again: still an outage
            lasted = time.monotonic() - self.since
            with self.lock:
                self.since = None
                self.logged_at = 0.0
                self.failures = 0
        log.warning("The cache %s is reachable again after %.1f s.", self.name, lasted)


_outages: dict[str, _Outage] = {}
_outages_lock = threading.Lock()


def _outage_for(name: str) -> _Outage:
    with _outages_lock:
        if name not in _outages:
            _outages[name] = _Outage(name)
        return _outages[name]


class RedisCache(DjangoRedisCache):
    """Django's Redis cache, in which an entry that does not decode is a miss,
    and an unreachable Redis is a cache that misses (see the module's doc)."""

    def __init__(self, server: Any, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        servers = ",".join(s.rpartition("@")[2] for s in self._servers)  # no password
        self._outage = _outage_for(f"redis://{servers} (prefix {self.key_prefix!r})")

    def _guard(self, fallback: Any, call: Callable[[], Any]) -> Any:
        """``call()``, or ``fallback`` when Redis is unreachable. The first
        call after an outage PINGs first and runs the recovery callbacks."""
        outage = self._outage
        try:
            if outage.since is not None:
                if outage.waiting():
                    return fallback
                self.check()
                outage.recovered()
            return call()
        except _unavailable_errors() as exc:
            outage.failed(exc)
            return fallback

    def check(self) -> None:
        """Raise unless Redis answers a PING (readiness checks; not guarded)."""
        self._cache.get_client(None, write=True).ping()

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        value = self._guard(default, lambda: super(RedisCache, self).get(
            key, default, version))
        return default if value is UNDECODABLE else value

    def get_many(self, keys: Any, version: int | None = None) -> dict[Any, Any]:
        found = self._guard({}, lambda: super(RedisCache, self).get_many(keys, version))
        return {key: value for key, value in found.items() if value is not UNDECODABLE}

    def has_key(self, key: Any, version: int | None = None) -> bool:
        return bool(self._guard(False, lambda: super(RedisCache, self).has_key(
            key, version)))

    def add(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT,
            version: int | None = None) -> bool:
        return bool(self._guard(False, lambda: super(RedisCache, self).add(
            key, value, timeout, version)))

    def set(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT,
            version: int | None = None) -> None:
        self._guard(None, lambda: super(RedisCache, self).set(key, value, timeout, version))

    def set_many(self, data: dict[Any, Any], timeout: Any = DEFAULT_TIMEOUT,
                 version: int | None = None) -> list[Any]:
        failed = self._guard(None, lambda: super(RedisCache, self).set_many(
            data, timeout, version))
        return list(data) if failed is None else failed

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        return bool(self._guard(False, lambda: super(RedisCache, self).touch(
            key, timeout, version)))

    def delete(self, key: Any, version: int | None = None) -> bool:
        return bool(self._guard(False, lambda: super(RedisCache, self).delete(
            key, version)))

    def delete_many(self, keys: Any, version: int | None = None) -> None:
        self._guard(None, lambda: super(RedisCache, self).delete_many(keys, version))

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        """As Django's; while Redis is unreachable, raises ValueError as for a
        missing key (what every caller handles already)."""
        missing = object()
        value = self._guard(missing, lambda: super(RedisCache, self).incr(
            key, delta, version))
        if value is missing:
            raise ValueError(f"Key '{key}' not found (the cache is unavailable).")
        return int(value)

    def clear(self) -> None:
        self._guard(None, lambda: super(RedisCache, self).clear())


class JSONFileBasedCache(FileBasedCache):
    """Django's file cache, storing JSON: a first line with the expiry time
    (or ``null``), then the value. A file that does not parse is deleted
    and is a miss. Full, it removes expired entries before any live one."""

    cache_suffix = ".json"

    def check(self) -> None:
        """Raise unless an entry can be written and read back (readiness)."""
        probe = f"den:ready:{os.getpid()}:{threading.get_ident()}"
        self.set(probe, 1, 30)
        if self.get(probe) != 1:
            raise OSError(f"the cache under {self._dir} did not keep what was written")
        self.delete(probe)

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        fname = self._key_to_file(key, version)
        try:
            with open(fname, "rb") as handle:
                if not self._is_expired(handle):
                    return json.loads(handle.read())
        except FileNotFoundError:
            pass
        except (ValueError, UnicodeDecodeError):
            self._delete(fname)
        return default

    def _write_content(self, file: Any, timeout: Any, value: Any) -> None:
        expiry = self.get_backend_timeout(timeout)
        file.write(json.dumps(expiry).encode() + b"\n")
        file.write(json.dumps(value, separators=(",", ":")).encode())

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        fname = self._key_to_file(key, version)
        try:
            with open(fname, "r+b") as handle:
                try:
                    locks.lock(handle, locks.LOCK_EX)
                    if self._is_expired(handle):
                        return False
                    value = json.loads(handle.read())
                    handle.seek(0)
                    self._write_content(handle, timeout, value)
                    handle.truncate()
                    return True
                finally:
                    with contextlib.suppress(ValueError):  # closed by _is_expired
                        locks.unlock(handle)
        except FileNotFoundError:
            return False
        except (ValueError, UnicodeDecodeError):
            self._delete(fname)
            return False

    def _is_expired(self, f: Any) -> bool:
        """Whether the open cache file ``f`` is expired (or unreadable); such
        a file is deleted. Leaves ``f`` positioned at the value."""
        try:
            expiry = json.loads(f.readline())
            if expiry is not None and not isinstance(expiry, int | float):
                raise ValueError(expiry)
        except (ValueError, UnicodeDecodeError):
            expiry = 0  # an empty or malformed file is expired
        if expiry is not None and expiry < time.time():
            f.close()
            self._delete(f.name)
            return True
        return False

    def _cull(self) -> None:
        filelist = self._list_cache_files()
        if len(filelist) < self._max_entries:
            return
        live = []
        for fname in filelist:
            try:
                with open(fname, "rb") as handle:
                    if not self._is_expired(handle):
                        live.append(fname)
            except FileNotFoundError:
                pass
        if len(live) < self._max_entries:
            return
        if self._cull_frequency == 0:
            self.clear()
            return
        for fname in random.sample(live, int(len(live) / self._cull_frequency)):
            self._delete(fname)

    def _createdir(self) -> None:
        super()._createdir()
        os.chmod(self._dir, 0o700)
