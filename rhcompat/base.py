"""The base of every ``/rh/`` view: runhouse's wire habits on den's API stack.

- Bodies are read as JSON whatever the Content-Type says: the runhouse client
  sends ``data=json.dumps(...)`` with no Content-Type, which DRF's parsers
  would answer with 415.
- Every answer is JSON, errors included (``{"detail": ..., "error": {...}}``);
  no credential, or a bad one, is a 401 JSON answer, never a redirect to the
  sign-in page (``requests`` would follow it and take the HTML for a login).
- Bearer tokens only: den's own tokens, and on the few requests a runhouse
  daemon makes, cluster sub-tokens (``rhcompat.models.ClusterSubToken``).
- Resource views reach resources only through ``RunhouseResourceView.resource``,
  which calls ``registry.access``; ``tests/registry/test_urlconf.py`` enforces it.
"""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from registry import errors, services
from registry.access import Caller, access_resource
from registry.api.authentication import BearerTokenAuthentication
from registry.api.base import DenAPIView, ResourceAPIView
from registry.api.errors import exception_handler as den_exception_handler
from registry.api.parsers import parse_den_json
from registry.models import ApiToken, Resource
from rhcompat import mapping
from rhcompat import services as rh_services
from rhcompat.models import ClusterSubToken


def subtoken_credential(row: ClusterSubToken) -> ApiToken:
    """What a cluster sub-token is worth, as den's access layer reads a
    credential: an unsaved token with its parent's user and scope (a read
    token's sub-token reads only). ``rh_subtoken`` marks it as such."""
    parent = row.parent
    credential = ApiToken(user=parent.user, name=parent.name, scope=parent.scope,
                          token_hash=row.token_hash, expires_at=parent.expires_at)
    credential.rh_subtoken = row  # type: ignore[attr-defined]
    return credential


def subtoken_of(request: Any) -> ClusterSubToken | None:
    return getattr(getattr(request, "auth", None), "rh_subtoken", None)


class RunhouseAuthentication(BearerTokenAuthentication):
    """den's bearer tokens, then runhouse cluster sub-tokens."""

    def authenticate(self, request: Any) -> tuple[Any, Any] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            raise AuthenticationFailed("Send the token as 'Authorization: Bearer den_...'.")
        plain = token.strip()
        try:
            api_token = services.token_authenticate(plain=plain)
            return api_token.user, api_token
        except errors.NotAuthenticated as exc:
            try:
                row = rh_services.subtoken_authenticate(plain=plain)
            except errors.NotAuthenticated as sub_exc:
                raise AuthenticationFailed(sub_exc.message) from None
            if row is None:
                raise AuthenticationFailed(exc.message) from None
        return row.parent.user, subtoken_credential(row)


class ReadTokenMayPost(BasePermission):
    """For POSTs that change no resource (minting a cluster sub-token, whose
    worth is capped at the token's own scope): any user's own token, read
    tokens included; never a den cluster's token."""

    def has_permission(self, request: Any, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        token = request.auth
        if isinstance(token, ApiToken) and token.cluster_id is not None:
            raise errors.PermissionDenied("This is a den cluster's own token; use your own.")
        return True


def _exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    response = den_exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and "error" in response.data:
        # Runhouse prints whatever JSON it gets; hosted Den put the message in "detail".
        response.data = {"detail": response.data["error"]["message"], **response.data}
    return response


class RunhouseAPIView(DenAPIView):
    """A ``/rh/`` endpoint. ``allow_subtoken`` marks the few that a runhouse
    daemon calls with a cluster sub-token; every other refuses one."""

    authentication_classes = [RunhouseAuthentication]
    parser_classes: list[Any] = []
    allow_subtoken = False

    def get_exception_handler(self) -> Any:
        return _exception_handler

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        if self.subtoken is not None and not self.allow_subtoken:
            raise errors.PermissionDenied(
                "A cluster sub-token may only look up users and resources of its namespace "
                "and report its clusters' status; use your own token here."
            )

    @property
    def subtoken(self) -> ClusterSubToken | None:
        return subtoken_of(self.request)

    @property
    def den_token(self) -> ApiToken | None:
        """The caller's own den token (None for a sub-token)."""
        auth = getattr(self.request, "auth", None)
        return auth if isinstance(auth, ApiToken) and self.subtoken is None else None

    def resource_at(self, address: str, level: int) -> Resource:
        """The resource at ``address`` through den's access layer (views whose
        address comes in the body rather than the URL)."""
        return access_resource(self.caller, address, level)

    def body(self) -> Any:
        """The request body as JSON, whatever its Content-Type (None when empty),
        with den's API's checks: text den cannot store (NUL, a lone surrogate),
        numbers past infinity and nesting past 100 levels are a 400 naming the
        field, as in ``registry.api.parsers``, not a 500."""
        raw = self.request._request.body
        if not raw.strip():
            return None
        try:
            return parse_den_json(raw.decode("utf-8"))
        except errors.InvalidInput:
            raise
        except (ValueError, UnicodeDecodeError) as exc:
            raise errors.InvalidInput(f"The request body is not valid JSON: {exc}",
                                      code="malformed_json") from None

    def object_body(self) -> dict[str, Any]:
        body = self.body()
        if not isinstance(body, dict):
            raise errors.InvalidInput("The request body must be a JSON object.", field="body")
        return body


def ok(data: Any = None) -> Response:
    """Runhouse's success shape: the payload under ``data``, always 200."""
    return Response({"data": {} if data is None else data})


class RunhouseResourceView(RunhouseAPIView, ResourceAPIView):
    """An endpoint about one resource, addressed by runhouse's ``uri``
    (``alice:team:x``). A sub-token reaches only its namespace's resources."""

    allow_anonymous_read = False

    @property
    def address(self) -> str:
        return mapping.uri_to_address(self.kwargs["uri"])

    def resource(self, level: int) -> Resource:
        address = self.address
        row = self.subtoken
        if row is not None and mapping.owner_of(address).lower() != row.namespace.lower():
            raise errors.NotFound(f"No resource at {address}, or you may not see it.")
        return access_resource(self.caller, address, level)

    @property
    def caller(self) -> Caller:
        return Caller.from_request(self.request)
