"""Cursor (keyset) pagination for pages: "after this row" rather than "page
n", so a page costs one indexed query however deep it is, and rows added
meanwhile do not shift what the next page shows."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import models
from django.db.models import Q, QuerySet


@dataclass
class Page:
    items: list[Any]
    next_cursor: str | None


def _encode(values: list[Any]) -> str:
    plain = [value.isoformat() if isinstance(value, datetime) else value for value in values]
    return base64.urlsafe_b64encode(json.dumps(plain).encode()).decode().rstrip("=")


def _decode(cursor: str, queryset: QuerySet, fields: tuple[str, ...]) -> list[Any] | None:
    """The values a cursor carries, or None for a cursor that is not ours
    (which then simply starts from the top)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
        if not isinstance(values, list) or len(values) != len(fields):
            return None
        decoded = []
        for name, value in zip(fields, values, strict=True):
            annotation = queryset.query.annotations.get(name)
            field = (
                annotation.output_field if annotation is not None
                else queryset.model._meta.get_field(name)
            )
            if isinstance(field, models.DateTimeField):
                decoded.append(datetime.fromisoformat(value))
            elif isinstance(value, int) and not isinstance(value, bool):
                decoded.append(value)
            else:
                return None
        return decoded
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        return None


def _after(fields: tuple[str, ...], values: list[Any]) -> Q:
    """Rows strictly after ``values`` in descending order of ``fields``."""
    condition = Q()
    for index, name in enumerate(fields):
        step = Q(**{f"{name}__lt": values[index]})
        for earlier, value in zip(fields[:index], values[:index], strict=True):
            step &= Q(**{earlier: value})
        condition |= step
    return condition


def keyset_page(
    queryset: QuerySet, *, cursor: str | None, size: int, fields: tuple[str, ...]
) -> Page:
    """``size`` rows of ``queryset`` in descending order of ``fields`` (which
    together must be unique), after ``cursor``."""
    queryset = queryset.order_by(*(f"-{name}" for name in fields))
    if cursor:
        values = _decode(cursor, queryset, fields)
        if values is not None:
            queryset = queryset.filter(_after(fields, values))
    rows = list(queryset[: size + 1])
    items = rows[:size]
    next_cursor = None
    if len(rows) > size:
        last = items[-1]
        next_cursor = _encode([getattr(last, name) for name in fields])
    return Page(items=items, next_cursor=next_cursor)
