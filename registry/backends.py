"""Password sign-in for people only."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend


class PersonBackend(ModelBackend):
    """Django's username-and-password backend, refusing every user row that is
    not a person: an organisation or a service account never signs in (they
    have no usable password either; this says so a second time)."""

    def user_can_authenticate(self, user: Any) -> bool:
        return super().user_can_authenticate(user) and getattr(user, "kind", "person") == "person"

    def get_user(self, user_id: int) -> Any:
        user = super().get_user(user_id)
        return user if user is not None and getattr(user, "kind", "person") == "person" else None
