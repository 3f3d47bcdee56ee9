"""The one place that decides who may do what to a resource.

Every view, API or page, reaches resources through ``restrict_resources``
(``Resource.objects.visible_to(caller, level)``) or ``access_resource``;
nothing else filters resources by user. The rules (DESIGN.md, "Access"):

- levels: read < write < owner; a read-scoped token caps the caller at read;
- private: owner and grantees; unlisted: also any signed-in user who has the
  address, but never listed; public: listed for signed-in users, and readable
  anonymously only when ``DEN_ANONYMOUS_READ_PUBLIC`` is on;
- a cluster's own token (``ApiToken.cluster``, minted by compute for its node
  daemon) reaches only that cluster, at read level, and lists nothing; beyond
  it, only the functions and modules set to run on that cluster, and only
  through ``access_runs_on_cluster`` (for the daemon to put them back after a
  restart);
- a caller who may not read gets NotFound, exactly as for a missing resource;
  one who may read but not act at the level needed gets PermissionDenied.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db.models import Q, QuerySet

from registry.errors import InvalidInput, NotAuthenticated, NotFound, PermissionDenied
from registry.models import (
    AccessGrant,
    AccessLevel,
    Resource,
    ResourceType,
    TokenScope,
    Visibility,
)
from registry.validation import config_references, parse_address

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


class _AccessQuery:
    """The hot path's one query: a resource by address, with its owner and the
    caller's grant. Every API call about a resource and every node daemon's
    token check runs it, so it is plain SQL built once; the ORM spent several
    times longer compiling the equivalent queryset than PostgreSQL spent
    running it. Rows become model instances through the ORM's own converters."""

    def __init__(self) -> None:
        from django.db import connection
        from django.db.models.expressions import Col

        from registry.models import User

        quote = connection.ops.quote_name
        self.resource_fields = list(Resource._meta.concrete_fields)
        self.user_fields = list(User._meta.concrete_fields)
        columns = [f"r.{quote(f.column)}" for f in self.resource_fields]
        columns += [f"u.{quote(f.column)}" for f in self.user_fields]
        # Identifiers come from model metadata; every value is a parameter.
        self.sql = (
            f"SELECT {', '.join(columns)}, g.{quote('level')} "  # noqa: S608
            f"FROM {quote(Resource._meta.db_table)} r "
            f"JOIN {quote(User._meta.db_table)} u ON u.{quote('id')} = r.{quote('owner_id')} "
            f"LEFT JOIN {quote(AccessGrant._meta.db_table)} g "
            f"ON g.{quote('resource_id')} = r.{quote('id')} AND g.{quote('user_id')} = %s "
            f"WHERE u.{quote('username')} = %s AND r.{quote('name')} = %s"
        )
        self.converters = []
        for alias, fields in (("r", self.resource_fields), ("u", self.user_fields)):
            for field in fields:
                expression = Col(alias, field)
                found = field.get_db_converters(connection) + connection.ops.get_db_converters(  # type: ignore[attr-defined]
                    expression
                )
                self.converters.append((expression, found))
        self.user_model = User

    def fetch(self, owner: str, name: str, user_id: int | None) -> Resource | None:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(self.sql, [user_id, owner, name])
            row = cursor.fetchone()
        if row is None:
            return None
        values = list(row[:-1])
        for index, (expression, converters) in enumerate(self.converters):
            for converter in converters:
                values[index] = converter(values[index], expression, connection)
        split = len(self.resource_fields)
        resource = Resource.from_db(
            connection.alias, [f.attname for f in self.resource_fields], values[:split]
        )
        resource.owner = self.user_model.from_db(
            connection.alias, [f.attname for f in self.user_fields], values[split:]
        )
        resource.grant_level = row[-1] or 0
        return resource


_access_query: _AccessQuery | None = None


def _fetch_for_access(owner: str, name: str, user_id: int | None) -> Resource | None:
    global _access_query
    if _access_query is None:
        _access_query = _AccessQuery()
    return _access_query.fetch(owner, name, user_id)


def access_resource(caller: Caller, address: str, level: int) -> Resource:
    """Fetch the resource at ``address`` for an action needing ``level``.

    One query: the resource, its owner and the caller's grant; ``level_of``
    then applies the same rules as ``restrict_resources``. Raises NotFound when
    the caller may not read it (or it does not exist) and PermissionDenied when
    they may read it but not act at ``level``. The returned resource carries
    ``access_level``, the caller's effective level.
    """
    owner, name = parse_address(address)
    if not caller.is_authenticated and not settings.DEN_ANONYMOUS_READ_PUBLIC:
        raise NotAuthenticated("Sign in or send a token: Authorization: Bearer den_...")
    user_id = caller.user.pk if caller.is_authenticated else None
    resource = _fetch_for_access(owner, name, user_id)
    if resource is not None and caller.cluster_id is not None and resource.pk != caller.cluster_id:
        resource = None  # a cluster's token sees its own cluster only
    effective = level_of(caller, resource, resource.grant_level) if resource else AccessLevel.NONE
    if resource is None or effective == AccessLevel.NONE:
        if not caller.is_authenticated:
            raise NotAuthenticated("Sign in or send a token: Authorization: Bearer den_...")
        raise NotFound(f"No resource at /{owner}/{name}, or you may not see it.")
    resource.access_level = effective
    if effective < level:
        if not caller.is_authenticated:
            raise NotAuthenticated("Sign in or send a token: Authorization: Bearer den_...")
        if caller.max_level < level:
            raise PermissionDenied("This token is read-only; create a write token to change things.")
        raise PermissionDenied(
            f"You have {effective.label} access to {resource.address}; "
            f"this needs {AccessLevel(level).label}."
        )
    return resource


def access_system_of(caller: Caller, callable_resource: Resource) -> Resource:
    """The cluster a function or module runs on (its config's ``system``), for
    a caller who may read the function or module.

    Sharing a function shares the right to call it where it runs, so the
    caller may see its cluster's runtime (daemon URL, status) when the cluster
    belongs to the function's owner, even without access to the cluster
    itself; calls are still checked by the daemon against the function's
    address. A cluster of anyone else needs the caller's own read access, so
    a writer cannot point a function at a stranger's cluster to peek at it.
    """
    system = (callable_resource.config or {}).get("system")
    if not isinstance(system, str) or not system:
        raise NotFound(f"{callable_resource.address} is not set to run on a cluster.")
    try:
        return access_resource(caller, system, READ)
    except NotFound:
        owner, _ = parse_address(system)
        if owner != callable_resource.owner.username:
            raise
    cluster = access_resource(Caller(user=callable_resource.owner), system, READ)
    cluster.access_level = READ  # what the caller gets: seeing it, not managing it
    return cluster


def require_readable_references(
    caller: Caller,
    *,
    type: str,
    config: Any,
    current: tuple[str, Any] | None = None,
) -> None:
    """Refuse a write whose config names a resource the writer may not read.

    Which fields are references depends on the type *being saved* (a function's
    or module's ``system`` and ``env``, a cluster's ``creds``), never on the
    stored type: otherwise a writer could save ``system`` under type
    ``resource`` and then re-type it into a function that runs on, and shows
    its readers, a cluster the writer cannot see. Every write path calls this:
    create, update (type changes included) and restore.

    A reference that ``current`` (the stored type and config) already holds
    under the same meaning is left alone, so a writer may edit a shared
    function without access to its cluster. A missing target and one the
    writer may not read get the same 400, naming the field, so existence never
    leaks; a readable target of the wrong type is named as such.
    """
    before = config_references(*current) if current is not None else {}
    for field, (address, wanted) in config_references(type, config).items():
        if before.get(field) == (address, wanted):
            continue
        try:
            target = access_resource(caller, address, READ)
        except (NotFound, NotAuthenticated, PermissionDenied):
            raise InvalidInput(
                f"config.{field}: there is no {wanted} at {address}, or you may not see it; "
                f"name a {wanted} you can read.",
                field=f"config.{field}",
                code="invalid_config",
            ) from None
        if target.type != wanted:
            raise InvalidInput(
                f"config.{field}: {address} is a {target.type}, not a {wanted}.",
                field=f"config.{field}",
                code="invalid_config",
            )


def access_runs_on_cluster(caller: Caller, address: str) -> Resource:
    """The function or module at ``address`` whose ``system`` is the cluster of
    the caller's own cluster token: what that cluster's daemon may read to put
    it back after a restart (``compute``'s deployment endpoint).

    Nothing else: any other caller, another type of resource, or one set to
    run elsewhere is NotFound, as for a missing resource. Visibility and
    grants play no part: what runs on a cluster is its daemon's business, and
    every call of it is still checked against the caller's own access.
    """
    missing = NotFound(f"No function or module at {address} runs on this cluster.")
    if caller.cluster_id is None or not caller.is_authenticated:
        raise missing
    owner, name = parse_address(address)
    resource = (Resource.objects.select_related("owner")
                .filter(owner__username=owner, name=name,
                        type__in=(ResourceType.FUNCTION, ResourceType.MODULE)).first())
    cluster = Resource.objects.select_related("owner").filter(id=caller.cluster_id).first()
    if resource is None or cluster is None or \
            (resource.config or {}).get("system") != cluster.address:
        raise missing
    resource.access_level = READ
    return resource


def may_create_in_namespace(caller: Caller, owner: str) -> bool:
    """Only a user (with a write-capable credential) creates in their own namespace."""
    return (
        caller.is_authenticated and caller.max_level >= WRITE and caller.user.username == owner
        and caller.cluster_id is None
    )
