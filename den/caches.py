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
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
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


class RedisCache(DjangoRedisCache):
    """Django's Redis cache, in which an entry that does not decode is a miss."""

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        value = super().get(key, default, version)
        return default if value is UNDECODABLE else value

    def get_many(self, keys: Any, version: int | None = None) -> dict[Any, Any]:
        found = super().get_many(keys, version)
        return {key: value for key, value in found.items() if value is not UNDECODABLE}


class JSONFileBasedCache(FileBasedCache):
    """Django's file cache, storing JSON: a first line with the expiry time
    (or ``null``), then the value. A file that does not parse is deleted
    and is a miss. Full, it removes expired entries before any live one."""

    cache_suffix = ".json"

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
