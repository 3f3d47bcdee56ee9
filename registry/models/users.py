"""Users: Django users whose usernames are also the first segment of addresses."""

from __future__ import annotations

import re

from django.contrib.auth.models import AbstractUser, UserManager
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Lower

from registry.models.querysets import AccessQuerySet

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


class UserKind(models.TextChoices):
    """What a ``User`` row is. Organisations and service accounts are rows of
    the user table so that a resource's owner, its address and the one
    uniqueness space of names stay what they were; neither kind has a
    password, an email or a web sign-in."""

    PERSON = "person"
    ORG = "org"
    SERVICE = "service"


class DenUserManager(UserManager.from_queryset(AccessQuerySet)):  # type: ignore[misc]
    """Django's user manager, on a queryset whose bulk writes bump the access epoch."""


class User(AbstractUser):
    """A den user; the username is the namespace of everything they own.

    ``kind`` tells people from organisations (namespaces with members) and
    service accounts (an organisation's non-human callers, named
    ``<org>:<name>``, which is no valid address segment: they own nothing).
    """

    username = models.CharField(
        "username",
        max_length=80,
        unique=True,
        # Checked in clean(), by kind: a service account's name has a ':'.
        help_text="Letters, digits, '.', '_' and '-'. Also the first segment of your addresses.",
        error_messages={"unique": "A user with that username already exists."},
    )
    kind = models.CharField(max_length=8, choices=UserKind.choices, default=UserKind.PERSON)
    #: What an organisation says about itself on its page.
    description = models.TextField(blank=True, default="")

    objects = DenUserManager()  # type: ignore[misc]

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("username"), name="user_username_ci_unique"),
        ]

    def clean(self) -> None:
        super().clean()
        if self.kind != UserKind.SERVICE:
            validate_username(self.username)

    @property
    def is_person(self) -> bool:
        return self.kind == UserKind.PERSON

    @property
    def is_org(self) -> bool:
        return self.kind == UserKind.ORG
