"""Reads. Every selector starts from the access layer or from an already
accessed resource; none filters resources by user on its own."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import (
    DateTimeField,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
)

from registry.access import Caller, access_org, access_resource, restrict_listable
from registry.errors import InvalidInput
from registry.models import (
    AccessGrant,
    AccessLevel,
    ApiToken,
    AuditEvent,
    Membership,
    PendingGrant,
    PendingMembership,
    Resource,
    ResourceType,
    ResourceVersion,
    ServiceAccount,
    Team,
    TeamGrant,
    TeamMember,
    UserKind,
    Visibility,
)

MAX_QUERY_LENGTH = 200


def resource_list(
    *,
    caller: Caller,
    type: str | None = None,
    owner: str | None = None,
    q: str | None = None,
    shared_with_me: bool = False,
    visibility: str | None = None,
    org: str | None = None,
) -> QuerySet[Resource]:
    """What the caller may find, filtered: by type, owner, text in name or
    description, visibility, or only what others shared with them. Rows carry
    ``changed_at`` (their last change): order and paginate by it."""
    # Lists never show configs (up to 1 MiB each): leave them in the database.
    queryset = restrict_listable(Resource.objects.defer("config"), caller).select_related("owner")
    if type:
        if type not in ResourceType.values:
            raise InvalidInput(f"Unknown resource type {type!r}.", field="type")
        queryset = queryset.filter(type=type)
    if owner:
        queryset = queryset.filter(owner__username=owner.lstrip("/"))
    if org:
        queryset = queryset.filter(owner__username=org.lstrip("/"), owner__kind=UserKind.ORG)
    if visibility:
        if visibility not in Visibility.values:
            raise InvalidInput(f"Unknown visibility {visibility!r}.", field="visibility")
        queryset = queryset.filter(visibility=visibility)
    if shared_with_me:
        # Nothing is shared with an anonymous visitor (and AnonymousUser is no id).
        queryset = queryset.filter(
            Q(id__in=AccessGrant.objects.filter(user=caller.user).values("resource_id"))
            | Q(id__in=TeamGrant.objects.filter(
                team__members__user=caller.user).values("resource_id"))
        ).exclude(owner=caller.user) if caller.is_authenticated else queryset.none()
    if q:
        if len(q) > MAX_QUERY_LENGTH:
            raise InvalidInput(f"q is at most {MAX_QUERY_LENGTH} characters.", field="q")
        queryset = queryset.filter(Q(name__icontains=q) | Q(description__icontains=q))
        # Order searches by an expression the updated_at index cannot serve.
        # Otherwise PostgreSQL walks every resource newest first, hoping to
        # meet a page of matches soon: 80 ms over 100,000 resources for a rare
        # term. This way it finds the matches through the trigram indexes
        # first and sorts only them: a few ms, whatever the term.
        return queryset.annotate(
            changed_at=ExpressionWrapper(
                F("updated_at") + Value(timedelta(0)), output_field=DateTimeField()
            )
        )
    return queryset.annotate(changed_at=F("updated_at"))


def resource_get(*, caller: Caller, address: str, level: int = AccessLevel.READ) -> Resource:
    """The resource at ``address``, for an action needing ``level``."""
    return access_resource(caller, address, level)


def resource_access_check(*, caller: Caller, address: str, level: int) -> str:
    """May the caller act on ``address`` at ``level``? Answers the caller's
    effective level, or raises as ``access_resource`` does. For token callers
    the answer is cached briefly, as daemons ask before every call; see
    ``registry.authcache``."""
    from registry import authcache, errors

    if caller.token is None:
        return AccessLevel(access_resource(caller, address, level).access_level or 0).label
    key = f"den:check:{caller.token.token_hash}:{level}:{address}"
    epoch, answer = authcache.cached(key)
    if answer is None:
        try:
            resource = access_resource(caller, address, level)
            answer = ("ok", AccessLevel(resource.access_level or 0).label)
        except errors.DenError as exc:
            answer = ("error", type(exc).__name__, exc.message, exc.code)
        authcache.remember(key, epoch, answer)
    if answer[0] == "ok":
        return str(answer[1])
    error_class = getattr(errors, answer[1])
    raise error_class(answer[2], code=answer[3])


def resource_versions(*, resource: Resource) -> QuerySet[ResourceVersion]:
    return ResourceVersion.objects.filter(resource=resource).select_related("author")


def resource_version_get(*, resource: Resource, number: int) -> ResourceVersion:
    from registry.errors import NotFound

    version = resource_versions(resource=resource).filter(number=number).first()
    if version is None:
        raise NotFound(
            f"{resource.address} has no version {number}; its versions are 1 to {resource.version}."
        )
    return version


def resource_access_list(*, resource: Resource) -> dict[str, Any]:
    """Who has access to a resource, and who is invited to it."""
    grants = AccessGrant.objects.filter(resource=resource).select_related("user", "granted_by")
    pending = PendingGrant.objects.filter(resource=resource).select_related("invited_by")
    teams = TeamGrant.objects.filter(resource=resource).select_related("team__org", "granted_by")
    return {"grants": list(grants.order_by("user__username")),
            "pending": list(pending.order_by("email")),
            "teams": list(teams.order_by("team__org__username", "team__name"))}


def token_list(*, user: Any) -> QuerySet[ApiToken]:
    """The user's active tokens, newest first (not their clusters' own tokens,
    which den mints and revokes with the cluster)."""
    return ApiToken.objects.active().filter(user=user, cluster__isnull=True)


def audit_list(*, caller: Caller, resource: Resource | None = None, org: Any = None
               ) -> QuerySet[AuditEvent]:
    """A resource's audit log (the caller holds write access to it), an
    organisation's (the caller is its admin), or else the caller's own actions."""
    if resource is not None:
        return AuditEvent.objects.filter(resource_id=resource.pk)
    if org is not None:
        return AuditEvent.objects.filter(org=org)
    return AuditEvent.objects.filter(actor=caller.user)


def grant_levels(*, caller: Caller, resource_ids: list[int]) -> dict[int, int]:
    """The caller's grant level on each of these resources (absent: no grant),
    in one query, for lists that show the caller's level per row."""
    if not caller.is_authenticated or not resource_ids:
        return {}
    return dict(
        AccessGrant.objects.filter(user=caller.user, resource_id__in=resource_ids)
        .values_list("resource_id", "level")
    )


def code_bundle_exists(*, sha: str) -> bool:
    """Whether den keeps the code bundle with this SHA-256."""
    from registry.models import CodeBundle

    return CodeBundle.objects.filter(sha256=sha).exists()


def code_bundle_get(*, sha: str) -> bytes | None:
    """The bytes of a kept code bundle; callers have checked who may read it."""
    from registry.models import CodeBundle

    data = CodeBundle.objects.filter(sha256=sha).values_list("data", flat=True).first()
    return bytes(data) if data is not None else None



# Organisations ---------------------------------------------------------------------


def org_list(*, caller: Caller) -> list[Any]:
    """The organisations the caller belongs to, each with ``role`` (theirs)."""
    if not caller.is_authenticated or caller.cluster_id is not None:
        return []
    memberships = (Membership.objects.filter(user=caller.user, org__kind=UserKind.ORG)
                   .select_related("org").order_by("org__username"))
    orgs = []
    for membership in memberships:
        membership.org.role = membership.role  # type: ignore[attr-defined]
        orgs.append(membership.org)
    return orgs


def org_get(*, caller: Caller, name: str, admin: bool = False) -> Any:
    """An organisation the caller belongs to (is an admin of, with ``admin``)."""
    return access_org(caller, name, admin=admin)


def org_members(*, org: Any) -> dict[str, Any]:
    """An organisation's people with their roles, and who is invited to join."""
    members = (Membership.objects.filter(org=org, user__kind=UserKind.PERSON)
               .select_related("user").order_by("user__username"))
    pending = PendingMembership.objects.filter(org=org).order_by("email")
    return {"members": list(members), "pending": list(pending)}


def org_teams(*, org: Any) -> QuerySet[Team]:
    return Team.objects.filter(org=org).select_related("org").order_by("name")


def org_team_get(*, org: Any, name: str) -> Team:
    from registry.errors import NotFound

    team = Team.objects.select_related("org").filter(org=org, name__iexact=name).first()
    if team is None:
        raise NotFound(f"{org.username} has no team {name!r}.")
    return team


def team_members(*, team: Team) -> list[Any]:
    return [m.user for m in TeamMember.objects.filter(team=team).select_related("user")
            .order_by("user__username")]


def service_accounts(*, org: Any) -> QuerySet[ServiceAccount]:
    """An organisation's service accounts, each with ``role`` (its org role)."""
    role = Membership.objects.filter(org=OuterRef("org"), user=OuterRef("user")).values("role")
    return (ServiceAccount.objects.filter(org=org).select_related("user", "org", "created_by")
            .annotate(role=Subquery(role[:1])).order_by("name"))


def service_account_get(*, org: Any, name: str) -> ServiceAccount:
    from registry.errors import NotFound

    account = service_accounts(org=org).filter(name__iexact=name).first()
    if account is None:
        raise NotFound(f"{org.username} has no service account {name!r}.")
    return account


def service_account_tokens(*, account: ServiceAccount) -> QuerySet[ApiToken]:
    return ApiToken.objects.active().filter(user=account.user, cluster__isnull=True)
