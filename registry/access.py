"""The one place that decides who may do what to a resource.

Every view, API or page, reaches resources through ``restrict_resources``
(``Resource.objects.visible_to(caller, level)``) or ``access_resource``;
nothing else filters resources by user. The rules (DESIGN.md, "Access"):

- levels: read < write < owner; a read-scoped token caps the caller at read;
- private: owner and grantees; unlisted: also any signed-in user who has the
  address, but never listed; public: listed for signed-in users, and readable
  anonymously only when ``DEN_ANONYMOUS_READ_PUBLIC`` is on;
- a cluster's own token (``ApiToken.cluster``, minted by compute for its node
  daemon) reaches only that cluster, at read level, and lists nothing;
- a caller who may not read gets NotFound, exactly as for a missing resource;
  one who may read but not act at the level needed gets PermissionDenied.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db.models import OuterRef, Q, QuerySet, Subquery

from registry.errors import NotAuthenticated, NotFound, PermissionDenied
from registry.models import AccessGrant, AccessLevel, Resource, TokenScope, Visibility
from registry.validation import parse_address

if TYPE_CHECKING:
    from registry.models import ApiToken

READ, WRITE, OWNER = AccessLevel.READ, AccessLevel.WRITE, AccessLevel.OWNER


@dataclass(frozen=True)
class Caller:
    """Who is asking: a user (or anonymous), and the most their credential allows."""

    user: Any
    token: ApiToken | None = None

    @property
    def is_authenticated(self) -> bool:
        return bool(self.user is not None and self.user.is_authenticated)

    @property
    def max_level(self) -> AccessLevel:
        if self.token is not None and (
            self.token.scope == TokenScope.READ or self.token.cluster_id is not None
        ):
            return READ
        return OWNER

    @property
    def cluster_id(self) -> int | None:
        """The cluster a cluster's own token is bound to; it sees nothing else."""
        return self.token.cluster_id if self.token is not None else None

    @classmethod
    def from_request(cls, request: Any) -> Caller:
        auth = getattr(request, "auth", None)
        from registry.models import ApiToken

        return cls(user=request.user, token=auth if isinstance(auth, ApiToken) else None)


def _granted_ids(user: Any, level: AccessLevel) -> QuerySet:
    return AccessGrant.objects.filter(user=user, level__gte=level).values("resource_id")


def restrict_resources(queryset: QuerySet, caller: Caller, level: int) -> Any:
    """Narrow ``queryset`` to resources the caller may act on at ``level``."""
    if not caller.is_authenticated:
        if level <= READ and settings.DEN_ANONYMOUS_READ_PUBLIC:
            return queryset.filter(visibility=Visibility.PUBLIC)
        return queryset.none()
    if level > caller.max_level:
        return queryset.none()
    if caller.cluster_id is not None:
        queryset = queryset.filter(id=caller.cluster_id)
    user = caller.user
    if level <= READ:
        return queryset.filter(
            Q(owner=user)
            | Q(visibility__in=(Visibility.PUBLIC, Visibility.UNLISTED))
            | Q(id__in=_granted_ids(user, READ))
        )
    if level == WRITE:
        return queryset.filter(Q(owner=user) | Q(id__in=_granted_ids(user, WRITE)))
    return queryset.filter(owner=user)


def restrict_listable(queryset: QuerySet, caller: Caller) -> Any:
    """Resources the caller may find by listing or search: their own, those
    shared with them, and public ones. Others' unlisted resources never appear."""
    if not caller.is_authenticated:
        if settings.DEN_ANONYMOUS_READ_PUBLIC:
            return queryset.filter(visibility=Visibility.PUBLIC)
        return queryset.none()
    if caller.cluster_id is not None:
        return queryset.none()
    user = caller.user
    return queryset.filter(
        Q(owner=user) | Q(visibility=Visibility.PUBLIC) | Q(id__in=_granted_ids(user, READ))
    )


def level_of(caller: Caller, resource: Resource, grant_level: int | None = None) -> AccessLevel:
    """The caller's effective level on a resource they may already read."""
    if not caller.is_authenticated:
        level = READ if resource.visibility == Visibility.PUBLIC else AccessLevel.NONE
    elif resource.owner_id == caller.user.pk:
        level = OWNER
    else:
        if grant_level is None:
            grant_level = (
                AccessGrant.objects.filter(resource=resource, user=caller.user)
                .values_list("level", flat=True)
                .first()
            )
        level = AccessLevel(grant_level) if grant_level else AccessLevel.NONE
        if level == AccessLevel.NONE and resource.visibility != Visibility.PRIVATE:
            level = READ
    return AccessLevel(min(level, caller.max_level))


def access_resource(caller: Caller, address: str, level: int) -> Resource:
    """Fetch the resource at ``address`` for an action needing ``level``.

    One query: the resource, its owner and the caller's grant. Raises NotFound
    when the caller may not read it (or it does not exist) and PermissionDenied
    when they may read it but not act at ``level``. The returned resource
    carries ``access_level``, the caller's effective level.
    """
    owner, name = parse_address(address)
    if not caller.is_authenticated and not settings.DEN_ANONYMOUS_READ_PUBLIC:
        raise NotAuthenticated("Sign in or send a token: Authorization: Bearer den_...")
    queryset = Resource.objects.visible_to(caller, READ).select_related("owner")
    if caller.is_authenticated:
        queryset = queryset.annotate(
            grant_level=Subquery(
                AccessGrant.objects.filter(resource=OuterRef("pk"), user=caller.user).values(
                    "level"
                )[:1]
            )
        )
    resource = queryset.filter(owner__username=owner, name=name).first()
    if resource is None:
        if not caller.is_authenticated:
            raise NotAuthenticated("Sign in or send a token: Authorization: Bearer den_...")
        raise NotFound(f"No resource at /{owner}/{name}, or you may not see it.")
    resource.access_level = level_of(caller, resource, getattr(resource, "grant_level", None))
    if resource.access_level < level:
        if not caller.is_authenticated:
            raise NotAuthenticated("Sign in or send a token: Authorization: Bearer den_...")
        if caller.max_level < level:
            raise PermissionDenied("This token is read-only; create a write token to change things.")
        raise PermissionDenied(
            f"You have {resource.access_level.label} access to {resource.address}; "
            f"this needs {AccessLevel(level).label}."
        )
    return resource


def may_create_in_namespace(caller: Caller, owner: str) -> bool:
    """Only a user (with a write-capable credential) creates in their own namespace."""
    return (
        caller.is_authenticated and caller.max_level >= WRITE and caller.user.username == owner
        and caller.cluster_id is None
    )
