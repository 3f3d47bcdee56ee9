"""Querysets whose bulk writes end cached access answers.

Every row that can change an access answer (users, tokens, resources, grants,
memberships, teams) lives in a table whose manager is built on
:class:`AccessQuerySet`. Its ``update()``, ``delete()``, ``bulk_create()`` and
``bulk_update()`` bump the access epoch (``registry.authcache``) themselves:
Django sends no ``post_save`` for them, and the next bulk write must not depend
on its author remembering to bump by hand. Saves and deletes of single rows
bump through the signals that ``connect_invalidation_signals`` connects.

A model lists in ``access_neutral_fields`` the columns that answer nothing
about access (a token's ``last_used_at``): an ``update()`` of only those
leaves the cache alone, which keeps the hot path's cache warm.
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.db import models

_M = TypeVar("_M", bound=models.Model)


def _bump() -> None:
    from registry.authcache import bump_access_epoch

    bump_access_epoch()


class AccessQuerySet(models.QuerySet[_M]):
    """A queryset whose bulk writes start a new access epoch."""

    def update(self, **kwargs: Any) -> int:
        count = super().update(**kwargs)
        neutral: frozenset[str] = getattr(self.model, "access_neutral_fields", frozenset())
        if count and not set(kwargs) <= set(neutral):
            _bump()
        return count

    def delete(self) -> tuple[int, dict[str, int]]:
        deleted = super().delete()
        if deleted[0]:
            _bump()
        return deleted

    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> list[_M]:
        created = super().bulk_create(objs, *args, **kwargs)
        if created:
            _bump()
        return created

    def bulk_update(self, objs: Any, fields: Any, *args: Any, **kwargs: Any) -> int:
        count = super().bulk_update(objs, fields, *args, **kwargs)
        if count:
            _bump()
        return count
