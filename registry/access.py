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
  one who may read but not act at the level needed gets PermissionDenied;
- organisations (``User`` rows of kind ``org``) own resources like people: every
  member reads the org's resources, its admins own them, and grants to users
  and to teams (``TeamGrant``, through ``TeamMember``) add levels. A service
  account is a member with its role and nothing else: no user grant or team
  ever names one, so it sees the org's resources and, like any signed-in
  caller, public and unlisted ones, never a person's private one.

Whatever a level depends on lives in a table whose manager bumps the access
epoch on every write (``registry.models.querysets``), so no cached answer
outlives a change.
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
    Membership,
    OrgRole,
    Resource,
    ResourceType,
    TeamGrant,
    TeamMember,
    TokenScope,
    UserKind,
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


def _team_granted_ids(user: Any, level: AccessLevel) -> QuerySet:
    teams = TeamMember.objects.filter(user=user).values("team_id")
    return TeamGrant.objects.filter(team_id__in=teams, level__gte=level).values("resource_id")


def _org_ids(user: Any, *, admin: bool = False) -> QuerySet:
    memberships = Membership.objects.filter(user=user)
    if admin:
        memberships = memberships.filter(role=OrgRole.ADMIN)
    return memberships.values("org_id")


def _reachable(user: Any, level: AccessLevel) -> Q:
    """Resources ``user`` reaches at ``level`` through ownership, an org role or a grant."""
    if level >= OWNER:
        return Q(owner=user) | Q(owner_id__in=_org_ids(user, admin=True))
    orgs = _org_ids(user, admin=level > READ)
    return (Q(owner=user) | Q(owner_id__in=orgs) | Q(id__in=_granted_ids(user, level))
            | Q(id__in=_team_granted_ids(user, level)))


def role_level(role: str | None) -> AccessLevel:
    """What an org role gives on the org's resources: admins own, members read."""
    if role == OrgRole.ADMIN:
        return OWNER
    if role == OrgRole.MEMBER:
        return READ
    return AccessLevel.NONE


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
            _reachable(user, READ) | Q(visibility__in=(Visibility.PUBLIC, Visibility.UNLISTED))
        )
    return queryset.filter(_reachable(user, AccessLevel(level)))


def restrict_listable(queryset: QuerySet, caller: Caller) -> Any:
    """Resources the caller may find by listing or search: their own, those
    shared with them, and public ones. Others' unlisted resources never appear."""
    if not caller.is_authenticated:
        if settings.DEN_ANONYMOUS_READ_PUBLIC:
            return queryset.filter(visibility=Visibility.PUBLIC)
        return queryset.none()
    if caller.cluster_id is not None:
        return queryset.none()
    return queryset.filter(_reachable(caller.user, READ) | Q(visibility=Visibility.PUBLIC))


def level_of(
    caller: Caller,
    resource: Resource,
    grant_level: int | None = None,
    role: str | None = None,
) -> AccessLevel:
    """The caller's effective level on a resource: ownership, else the best of
    their org role on its owner and their grants (their own and their teams');
    any signed-in caller reads what is not private. ``grant_level`` and
    ``role`` come from the hot path's query; without them, they are looked up."""
    if not caller.is_authenticated:
        level = READ if resource.visibility == Visibility.PUBLIC else AccessLevel.NONE
    elif resource.owner_id == caller.user.pk:
        level = OWNER
    else:
        if grant_level is None:
            grant_level, role = _levels_of(caller.user, resource)
        level = AccessLevel(max(grant_level or 0, role_level(role)))
        if level == AccessLevel.NONE and resource.visibility != Visibility.PRIVATE:
            level = READ
    return AccessLevel(min(level, caller.max_level))


def _levels_of(user: Any, resource: Resource) -> tuple[int, str | None]:
    """The best grant (the user's or a team's) and the org role of ``user`` on
    ``resource``, for a resource that did not come through the hot path."""
    grant = (AccessGrant.objects.filter(resource=resource, user=user)
             .values_list("level", flat=True).first()) or 0
    team = (TeamGrant.objects.filter(resource=resource, team__members__user=user)
            .order_by("-level").values_list("level", flat=True).first()) or 0
    role = (Membership.objects.filter(org_id=resource.owner_id, user=user)
            .values_list("role", flat=True).first())
    return max(grant, team), role


class _AccessQuery:
    """The hot path's one query: a resource by address, with its owner, the
    caller's grant, their teams' best grant and their role in the owning org.
    Every API call about a resource and every node daemon's token check runs
    it, so it is plain SQL built once; the ORM spent several times longer
    compiling the equivalent queryset than PostgreSQL spent running it. Rows
    become model instances through the ORM's own converters. The team grant is
    a scalar subquery over two indexed tables (team_grant by resource, team
    member by team and user): a caller in no team costs one index probe."""

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
        team_grants = quote(TeamGrant._meta.db_table)
        team_members = quote(TeamMember._meta.db_table)
        self.sql = (
            f"SELECT {', '.join(columns)}, g.{quote('level')}, "  # noqa: S608
            f"(SELECT MAX(tg.{quote('level')}) FROM {team_grants} tg "
            f"JOIN {team_members} tm ON tm.{quote('team_id')} = tg.{quote('team_id')} "
            f"AND tm.{quote('user_id')} = %s WHERE tg.{quote('resource_id')} = r.{quote('id')}), "
            f"m.{quote('role')} "
            f"FROM {quote(Resource._meta.db_table)} r "
            f"JOIN {quote(User._meta.db_table)} u ON u.{quote('id')} = r.{quote('owner_id')} "
            f"LEFT JOIN {quote(AccessGrant._meta.db_table)} g "
            f"ON g.{quote('resource_id')} = r.{quote('id')} AND g.{quote('user_id')} = %s "
            f"LEFT JOIN {quote(Membership._meta.db_table)} m "
            f"ON m.{quote('org_id')} = r.{quote('owner_id')} AND m.{quote('user_id')} = %s "
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
            cursor.execute(self.sql, [user_id, user_id, user_id, owner, name])
            row = cursor.fetchone()
        if row is None:
            return None
        values = list(row[:-3])
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
        resource.grant_level = max(row[-3] or 0, row[-2] or 0)
        resource.org_role = row[-1]
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
    effective = (level_of(caller, resource, resource.grant_level, resource.org_role)
                 if resource else AccessLevel.NONE)
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
    """A person creates in their own namespace, and an org admin (a person or a
    service account with the admin role) in the org's; always with a
    write-capable credential that is not a cluster's."""
    if not (caller.is_authenticated and caller.max_level >= WRITE and caller.cluster_id is None):
        return False
    if caller.user.username == owner:
        return bool(getattr(caller.user, "kind", UserKind.PERSON) == UserKind.PERSON)
    return Membership.objects.filter(
        org__username=owner, org__kind=UserKind.ORG, user=caller.user, role=OrgRole.ADMIN
    ).exists()


def namespace_owner(caller: Caller, owner: str) -> Any:
    """The user row (the caller, or an organisation) of namespace ``owner``,
    for a caller that ``may_create_in_namespace``."""
    from registry.models import User

    if caller.user.username == owner:
        return caller.user
    return User.objects.get(username=owner, kind=UserKind.ORG)


def access_org(caller: Caller, name: str, *, admin: bool = False) -> Any:
    """The organisation ``name`` for a caller who is a member (an admin, with
    ``admin``): NotFound for a non-member and a missing org alike (orgs are
    private like resources), PermissionDenied for a member who is no admin
    (read-only tokens are refused every write by the API's permission). The
    org carries ``role``, the caller's role in it."""
    from registry.models import User

    if not caller.is_authenticated:
        raise NotAuthenticated("Sign in or send a token: Authorization: Bearer den_...")
    missing = NotFound(f"There is no organisation {name!r}, or you are not a member.")
    if caller.cluster_id is not None or not isinstance(name, str):
        raise missing
    org = User.objects.filter(username=name, kind=UserKind.ORG).first()
    role = (Membership.objects.filter(org=org, user=caller.user).values_list("role", flat=True)
            .first()) if org is not None else None
    if org is None or role is None:
        raise missing
    org.role = role
    if admin and role != OrgRole.ADMIN:
        raise PermissionDenied(f"Only admins of {name} may do this; you are a {role}.")
    return org
