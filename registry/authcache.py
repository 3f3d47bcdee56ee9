"""Short-lived caches on the authentication hot path.

Every API request looks its token up, and every node daemon asks
``/api/v1/auth/check`` before a call, so both answers are cached for a few
seconds (``DEN_AUTH_CACHE_SECONDS``). Each cached value carries the *access
epoch* it was computed in; any change that could alter an answer (a grant,
a revoke, a visibility change, a resource created or deleted, a token or user
changed) sets a new epoch, which turns every older entry into a miss. The
epoch and the entry are read in one ``get_many``, so a hit costs one cache
round trip and no database query.

The epoch changes twice for a write: at once (so the writer's own
transaction sees it) and again on commit (so no request that read the old
rows before the commit can cache them under the new epoch).

Entries are plain JSON (the cache backends store nothing else, see
``den.caches``): a token is cached as its fields and its user's (ids, name,
flags, scope, expiry, cluster id; never the password hash) and rebuilt into
model instances without a query. Each entry also carries an HMAC under the
secret key over its key, epoch and value, so that whoever can write to the
cache server (but does not hold ``DEN_SECRET_KEY``) cannot forge an answer
such as "this made-up token is the admin's": a forged entry is a miss.
"""

from __future__ import annotations

import hmac
import json
import uuid
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DEFAULT_DB_ALIAS, models, transaction
from django.utils.crypto import salted_hmac

from den.caches import on_recovery

EPOCH_KEY = "den:access-epoch"


def _new_epoch() -> None:
    cache.set(EPOCH_KEY, uuid.uuid4().hex, None)


# An epoch bump skipped while Redis was unreachable would leave older entries
# valid in a Redis that kept them: the process that skipped it bumps when
# Redis answers again (den.caches).
on_recovery(_new_epoch)


def bump_access_epoch() -> None:
    """Invalidate every cached token and access answer (now and on commit)."""
    _new_epoch()
    transaction.on_commit(_new_epoch)


def _mac(key: str, epoch: str, value: Any) -> str:
    message = json.dumps([key, epoch, value], sort_keys=True, separators=(",", ":"))
    return salted_hmac("den.authcache", message, algorithm="sha256").hexdigest()


def cached(key: str) -> tuple[str | None, Any]:
    """The current epoch and the value cached under ``key`` in it (or None)."""
    found = cache.get_many([EPOCH_KEY, key])
    epoch = found.get(EPOCH_KEY)
    entry = found.get(key)
    if not isinstance(epoch, str) or not isinstance(entry, list) or len(entry) != 3:
        return epoch if isinstance(epoch, str) else None, None
    entry_epoch, value, mac = entry
    if entry_epoch != epoch or not isinstance(mac, str) \
            or not hmac.compare_digest(mac, _mac(key, epoch, value)):
        return epoch, None
    return epoch, value


def remember(key: str, epoch: str | None, value: Any) -> None:
    """Cache ``value`` (plain JSON: dicts, lists, strings, numbers) under
    ``key`` for the epoch it was computed in."""
    if epoch is None:
        epoch = uuid.uuid4().hex
        if not cache.add(EPOCH_KEY, epoch, None):
            return  # someone set an epoch meanwhile; skip rather than race
    cache.set(key, [epoch, value, _mac(key, epoch, value)], settings.DEN_AUTH_CACHE_SECONDS)


# Tokens --------------------------------------------------------------------------

#: The user fields a cached token carries; others (the password hash above
#: all) stay out of the cache and load from the database if ever read.
USER_FIELDS = ("id", "username", "email", "is_active", "is_staff", "is_superuser",
               "date_joined")


def _token_key(token_hash: str) -> str:
    return f"den:token:{token_hash}"


def _fields(instance: models.Model, names: tuple[str, ...] | None = None) -> dict[str, Any]:
    values = {}
    for field in instance._meta.concrete_fields:
        if names is None or field.attname in names:
            value = getattr(instance, field.attname)
            values[field.attname] = value.isoformat() if hasattr(value, "isoformat") else value
    return values


def _rebuild(model: type[models.Model], values: dict[str, Any]) -> Any:
    """A model instance from plain field values, as if loaded from the
    database; fields not given are deferred (a save never overwrites them)."""
    names, row = [], []
    for field in model._meta.concrete_fields:
        if field.attname in values:
            names.append(field.attname)
            value = values[field.attname]
            row.append(None if value is None else field.to_python(value))
    return model.from_db(DEFAULT_DB_ALIAS, names, row)


def cached_token(token_hash: str) -> tuple[str | None, Any]:
    """The current epoch and the cached ``ApiToken`` (with its user) for
    ``token_hash``, or None."""
    from registry.models import ApiToken, User

    epoch, entry = cached(_token_key(token_hash))
    if entry is None:
        return epoch, None
    try:
        token = _rebuild(ApiToken, entry["token"])
        token.user = _rebuild(User, entry["user"])
    except (KeyError, TypeError, ValueError, DjangoValidationError):
        return epoch, None
    return epoch, token


def remember_token(epoch: str | None, token: Any) -> None:
    """Cache a token and its user as plain fields."""
    entry = {"token": _fields(token), "user": _fields(token.user, USER_FIELDS)}
    remember(_token_key(token.token_hash), epoch, entry)


def connect_invalidation_signals() -> None:
    """Any saved or deleted grant, token, user, resource, membership or team
    starts a new epoch, whichever code path (services, admin, compute) made
    the change. Bulk writes bump through their querysets
    (``registry.models.querysets.AccessQuerySet``)."""
    from django.db.models.signals import post_delete, post_save

    from registry.models import (
        AccessGrant,
        ApiToken,
        Membership,
        Resource,
        Team,
        TeamGrant,
        TeamMember,
        User,
    )

    for model in (AccessGrant, ApiToken, Resource, User, Membership, Team, TeamGrant, TeamMember):
        post_save.connect(_on_access_change, sender=model,
                          dispatch_uid=f"den-epoch-save-{model.__name__}")
        post_delete.connect(_on_access_change, sender=model,
                            dispatch_uid=f"den-epoch-delete-{model.__name__}")


def _on_access_change(**kwargs: Any) -> None:
    bump_access_epoch()
