"""Template helpers: relative times and type icons."""

from __future__ import annotations

from datetime import datetime

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
