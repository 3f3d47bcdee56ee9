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
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

EPOCH_KEY = "den:access-epoch"


def _new_epoch() -> None:
    cache.set(EPOCH_KEY, uuid.uuid4().hex, None)


def bump_access_epoch() -> None:
    """Invalidate every cached token and access answer (now and on commit)."""
    _new_epoch()
    transaction.on_commit(_new_epoch)


def cached(key: str) -> tuple[str | None, Any]:
    """The current epoch and the value cached under ``key`` in it (or None)."""
    found = cache.get_many([EPOCH_KEY, key])
    epoch = found.get(EPOCH_KEY)
    entry = found.get(key)
    if epoch is None or entry is None or entry[0] != epoch:
        return epoch, None
    return epoch, entry[1]


def remember(key: str, epoch: str | None, value: Any) -> None:
    """Cache ``value`` under ``key`` for the epoch it was computed in."""
    if epoch is None:
        epoch = uuid.uuid4().hex
        if not cache.add(EPOCH_KEY, epoch, None):
            return  # someone set an epoch meanwhile; skip rather than race
    cache.set(key, (epoch, value), settings.DEN_AUTH_CACHE_SECONDS)


def connect_invalidation_signals() -> None:
    """Any saved or deleted grant, token, user or resource starts a new epoch,
    whichever code path (services, admin, compute) made the change."""
    from django.db.models.signals import post_delete, post_save

    from registry.models import AccessGrant, ApiToken, Resource, User

    for model in (AccessGrant, ApiToken, Resource, User):
        post_save.connect(_on_access_change, sender=model,
                          dispatch_uid=f"den-epoch-save-{model.__name__}")
        post_delete.connect(_on_access_change, sender=model,
                            dispatch_uid=f"den-epoch-delete-{model.__name__}")


def _on_access_change(**kwargs: Any) -> None:
    bump_access_epoch()
