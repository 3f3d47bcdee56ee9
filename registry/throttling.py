"""Rate limits and concurrency limits, counted in the ``throttle`` cache.

The ``throttle`` cache alias (``den.settings``) holds nothing else, so no
other traffic can cull a counter: flooding ``auth/check`` fills the default
cache, not this one. Limits here:

- sign-in (``login`` scope, ``DEN_LOGIN_RATE``): one counter per client
  address shared by the API login, accepting an invitation, the web sign-in
  page and the Django admin's;
- invitations a user sends, per hour and per request;
- password-reset emails, per address and per client address, per hour;
- open event streams per user (a counter released when the stream closes).

Counters are read and written without a lock, so two requests racing may
both pass at the very edge of a limit; the limits are about abuse, not
exact accounting.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.utils.connection import ConnectionProxy
from rest_framework.throttling import BaseThrottle, ScopedRateThrottle

from registry.errors import DenError, InvalidInput

THROTTLE_CACHE = "throttle"
HOUR = 3600.0


class Throttled(DenError):
    """Too many requests; ``retry_after`` says when to try again (seconds)."""

    status = 429
    code = "throttled"

    def __init__(self, message: str, *, retry_after: float | None = None,
                 field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.retry_after = None if retry_after is None else max(1, math.ceil(retry_after))


def throttle_cache() -> Any:
    return caches[THROTTLE_CACHE]


class LoginRateThrottle(ScopedRateThrottle):
    """DRF's scoped throttle, counting in the ``throttle`` cache."""

    cache = ConnectionProxy(caches, THROTTLE_CACHE)  # type: ignore[assignment]


_LOGIN_VIEW: Any = SimpleNamespace(throttle_scope="login")  # what DRF reads of a view


def sign_in_wait(request: Any) -> float | None:
    """Count a sign-in attempt from ``request``'s client: None if it may go
    ahead, else the seconds to wait (for pages outside DRF, e.g. the admin's)."""
    throttle = LoginRateThrottle()
    if throttle.allow_request(request, _LOGIN_VIEW):
        return None
    return throttle.wait() or 60.0


def client_ident(request: Any) -> str:
    """The client address that limits count (``DEN_NUM_PROXIES`` decides
    whether X-Forwarded-For is trusted)."""
    return str(BaseThrottle().get_ident(request))


def _take(key: str, *, limit: int, period: float, count: int = 1) -> float | None:
    """Record ``count`` events under ``key`` unless that would make more than
    ``limit`` within ``period`` seconds. None when recorded; otherwise the
    seconds until there is room (nothing is recorded then)."""
    cache = throttle_cache()
    now = time.time()
    stored = cache.get(key)
    history = sorted(t for t in stored if isinstance(t, int | float) and t > now - period) \
        if isinstance(stored, list) else []
    if len(history) + count > limit:
        if count > limit or not history:
            return period
        return max(1.0, history[len(history) + count - limit - 1] + period - now)
    history.extend([now] * count)
    cache.set(key, history, int(period) + 1)
    return None


def _minutes(seconds: float) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return "a minute" if minutes == 1 else f"{minutes} minutes"


def invitations_check(*, actor: Any, count: int, field: str) -> None:
    """May ``actor`` send ``count`` invitation emails now? Counts them if so;
    raises InvalidInput past the per-request limit and Throttled past the
    hourly one (``field`` names the input that holds the addresses)."""
    if count <= 0:
        return
    per_request = settings.DEN_INVITATIONS_PER_REQUEST
    if count > per_request:
        raise InvalidInput(
            f"This would invite {count} new email addresses at once; den sends at most "
            f"{per_request} invitations per request, so share with the rest in another request.",
            field=field)
    per_hour = settings.DEN_INVITATIONS_PER_HOUR
    wait = _take(f"den:invitations:{getattr(actor, 'pk', None)}", limit=per_hour, period=HOUR,
                 count=count)
    if wait is not None:
        raise Throttled(
            f"You may send at most {per_hour} invitations an hour; try again in "
            f"{_minutes(wait)}.", retry_after=wait, field=field)


def password_reset_check(*, request: Any, email: str) -> None:
    """May this client ask for a reset email to ``email`` now? Counted per
    client address and per email address (whether or not it has an
    account, so the answer tells nobody which addresses do)."""
    per_client = settings.DEN_PASSWORD_RESETS_PER_CLIENT
    wait = _take(f"den:reset:client:{client_ident(request)}", limit=per_client, period=HOUR)
    if wait is not None:
        raise Throttled(
            f"Too many password-reset emails were asked for from your address; try again "
            f"in {_minutes(wait)}.", retry_after=wait, field="email")
    digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()
    per_address = settings.DEN_PASSWORD_RESETS_PER_ADDRESS
    wait = _take(f"den:reset:email:{digest}", limit=per_address, period=HOUR)
    if wait is not None:
        raise Throttled(
            f"A reset link was sent to this address {per_address} times in the last hour; "
            f"check that inbox (and its spam folder), or try again in {_minutes(wait)}.",
            retry_after=wait, field="email")


def acquire_slot(key: str, *, limit: int, ttl: float) -> Callable[[], None] | None:
    """Take one of ``limit`` concurrent slots under ``key``: a release
    function (idempotent) or None when all are taken. The count expires
    ``ttl`` seconds after its last change, so a process killed while it held
    a slot cannot keep it forever."""
    cache = throttle_cache()
    timeout = int(ttl) + 1
    cache.add(key, 0, timeout)
    try:
        taken = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout)
        taken = 1
    cache.touch(key, timeout)
    if taken > limit:
        _decrement(cache, key)
        return None
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            _decrement(cache, key)

    return release


def _decrement(cache: Any, key: str) -> None:
    try:
        if cache.decr(key) < 0:
            cache.delete(key)
    except ValueError:
        pass  # expired meanwhile: nothing to give back
