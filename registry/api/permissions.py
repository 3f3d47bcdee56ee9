"""API-wide permission: a user is needed (unless the view says otherwise) and
read-scoped tokens are refused every write (but the few a reader may make,
which a view allows with ``allow_read_scope``: revoking the token itself,
reporting a dead daemon), and a cluster's own token is refused
everywhere but the few views that allow it. Per-resource rules live in
``registry.access``, never here."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import SAFE_METHODS, BasePermission

from registry.models import ApiToken, TokenScope


class TokenScopePermission(BasePermission):
    def has_permission(self, request: Any, view: Any) -> bool:
        if getattr(view, "allow_anonymous", False):
            return True
        safe = request.method in SAFE_METHODS
        if not (request.user and request.user.is_authenticated):
            # Public resources may be read anonymously when the server opts in;
            # the access layer decides per resource.
            return (
                safe
                and getattr(view, "allow_anonymous_read", False)
                and settings.DEN_ANONYMOUS_READ_PUBLIC
            )
        token = request.auth
        if (
            isinstance(token, ApiToken)
            and token.cluster_id is not None
            and not getattr(view, "allow_cluster_token", False)
        ):
            raise PermissionDenied(
                "This is a cluster's own token: it may only send that cluster's heartbeats "
                "and check tokens. Use your own token here."
            )
        if (
            not safe
            and isinstance(token, ApiToken)
            and token.scope == TokenScope.READ
            and not getattr(view, "allow_read_scope", False)
        ):
            raise PermissionDenied("This token is read-only; create a write token to change things.")
        return True
