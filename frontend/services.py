"""Writes the pages need that ``registry.services`` does not offer yet. Each
runs in a transaction with its audit row, through ``registry.services.audit_record``.
They are candidates to move into ``registry.services``."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from registry import services
from registry.errors import InvalidInput

MAX_NAME_LENGTH = 150


@transaction.atomic
def profile_update(*, user: Any, first_name: str, last_name: str) -> Any:
    """Change the display name. The email stays: shares and invitations bind
    to it, so changing it needs a verified address (ask an administrator)."""
    first_name, last_name = first_name.strip(), last_name.strip()
    for field, value in (("first_name", first_name), ("last_name", last_name)):
        if len(value) > MAX_NAME_LENGTH:
            raise InvalidInput(f"A name is at most {MAX_NAME_LENGTH} characters.", field=field)
    if (first_name, last_name) != (user.first_name, user.last_name):
        user.first_name, user.last_name = first_name, last_name
        user.save(update_fields=["first_name", "last_name"])
        services.audit_record(actor=user, action="user.profile")
    return user


@transaction.atomic
def password_change(*, user: Any, form: Any) -> Any:
    """Save a validated ``PasswordChangeForm`` (which checked the old password
    and the new one's strength) and record that the password changed."""
    user = form.save()
    services.audit_record(actor=user, action="user.password")
    return user
