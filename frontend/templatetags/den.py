"""Template helpers: relative times, type icons, and cluster event logs."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.timesince import timesince

from registry.models import AccessLevel

register = template.Library()

TYPE_ICONS = {"cluster", "function", "module", "env", "secret", "resource"}


@register.filter
def ago(moment: datetime | None) -> str:
    """``<time>`` saying how long ago, with the exact time on hover and for machines."""
    if moment is None:
        return mark_safe('<span class="muted">never</span>')
    now = timezone.now()
    if abs((now - moment).total_seconds()) < 60:
        words = "just now"
    elif moment > now:
        words = f"in {timesince(now, moment, depth=1)}"
    else:
        words = f"{timesince(moment, now, depth=1)} ago"
    exact = timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S %Z")
    return format_html('<time datetime="{}" title="{}">{}</time>', moment.isoformat(), exact, words)


@register.simple_tag
def type_icon(kind: str) -> str:
    """The icon of a resource type, with its name for screen readers."""
    symbol = kind if kind in TYPE_ICONS else "resource"
    return format_html(
        '<span class="type-icon type-{0}" title="{1}"><svg aria-hidden="true" focusable="false">'
        '<use href="#icon-{0}"></use></svg><span class="visually-hidden">{1}</span></span>',
        symbol,
        kind,
    )


@register.filter
def level_name(level: int | None) -> str:
    return AccessLevel(level).label if level else ""


@register.filter
def clock(moment: datetime | None) -> str:
    """``<time>`` with the time of day (the date and zone on hover), for event logs."""
    if moment is None:
        return ""
    local = timezone.localtime(moment)
    return format_html('<time datetime="{}" title="{}">{}</time>', moment.isoformat(),
                       local.strftime("%Y-%m-%d %H:%M:%S %Z"), local.strftime("%H:%M:%S"))


#: Keys of a cluster event's data that hold log output (a string or a list of lines).
LOG_KEYS = ("lines", "log", "logs", "output", "stdout", "stderr", "tail")
LOG_LINES_SHOWN = 50


@register.filter
def log_lines(data: Any) -> str:
    """The log output carried in an event's data, its last lines only."""
    if not isinstance(data, dict):
        return ""
    lines: list[str] = []
    for key in LOG_KEYS:
        value = data.get(key)
        if isinstance(value, str):
            lines.extend(value.splitlines())
        elif isinstance(value, list):
            lines.extend(str(line).rstrip("\n") for line in value)
    if len(lines) > LOG_LINES_SHOWN:
        skipped = len(lines) - LOG_LINES_SHOWN
        lines = [f"… {skipped} earlier line{'s' if skipped != 1 else ''}", *lines[-LOG_LINES_SHOWN:]]
    return "\n".join(lines)


@register.filter
def event_details(data: Any) -> list[tuple[str, str]]:
    """An event's other data, as short ``(key, value)`` pairs."""
    if not isinstance(data, dict):
        return []
    pairs = []
    for key, value in data.items():
        if key in LOG_KEYS or value in (None, "", [], {}):
            continue
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        pairs.append((key, text if len(text) <= 120 else text[:119] + "…"))
    return pairs


@register.filter
def event_tone(kind: str) -> str:
    """How an event reads at a glance: ``bad`` (failures), ``ok`` (up again), or plain."""
    if kind in ("failed", "unreachable", "up.retry", "up.cancelled") or kind.endswith(".error"):
        return "bad"
    if kind in ("up", "reachable"):
        return "ok"
    return ""
