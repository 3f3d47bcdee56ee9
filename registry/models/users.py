"""Users: Django users whose usernames are also the first segment of addresses."""

from __future__ import annotations

import re

from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Lower

# First path segments that belong to den itself. A user with one of these names
# would shadow a route, so they are refused wherever a user is created.
RESERVED_USERNAMES = frozenset(
    {
        "-", "_", ".", "..", "about", "account", "accounts", "admin", "api", "assets",
        "audit", "auth", "dashboard", "den", "docs", "explore", "favicon.ico", "health",
        "healthz", "help", "invitations", "invite", "join", "livez", "login", "logout",
        "me", "media", "metrics", "new", "password", "password-reset", "readyz",
        "register", "reset", "rh", "robots.txt", "root", "search", "settings", "signup",
        "static", "system", "tokens", "user", "users",
    }
)
# Matched with fullmatch: ``$`` would also match before a trailing newline.
USERNAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,38}")


def validate_username(value: str) -> None:
    """Refuse usernames that are not a valid address segment or shadow a route."""
    if not isinstance(value, str) or not USERNAME_PATTERN.fullmatch(value):
        raise ValidationError(
            "A username is 1 to 39 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit.",
            code="invalid_username",
        )
    if value.lower() in RESERVED_USERNAMES:
        raise ValidationError(f"'{value}' is reserved; choose another username.", code="reserved")


class User(AbstractUser):
    """A den user; the username is the namespace of everything they own."""

    username = models.CharField(
        "username",
        max_length=39,
        unique=True,
        validators=[validate_username],
        help_text="Letters, digits, '.', '_' and '-'. Also the first segment of your addresses.",
        error_messages={"unique": "A user with that username already exists."},
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("username"), name="user_username_ci_unique"),
        ]

    def clean(self) -> None:
        super().clean()
        validate_username(self.username)
