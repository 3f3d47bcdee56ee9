"""Bearer-token authentication for the API (``Authorization: Bearer den_...``)."""

from __future__ import annotations

from typing import Any

from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed

from registry import errors, services


class BearerTokenAuthentication(BaseAuthentication):
    """Look a token up by its hash. Tokens are accepted in the header only, so
    they never land in URLs, proxies' logs or browser history."""

    keyword = "Bearer"

    def authenticate(self, request: Any) -> tuple[Any, Any] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            raise AuthenticationFailed("Send the token as 'Authorization: Bearer den_...'.")
        try:
            api_token = services.token_authenticate(plain=token.strip())
        except errors.NotAuthenticated as exc:
            raise AuthenticationFailed(exc.message) from None
        return api_token.user, api_token

    def authenticate_header(self, request: Any) -> str:
        return 'Bearer realm="den"'
