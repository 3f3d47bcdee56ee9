"""Writes. Every state change of the registry happens here, inside a
transaction, together with its audit row. Callers have already fetched the
resource through ``registry.access`` at the level the change needs."""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models.functions import Lower
from django.utils import timezone

from registry import authcache, credentials, throttling
from registry.access import Caller, require_readable_references
from registry.errors import (
    AlreadyExists,
    Conflict,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    PermissionDenied,
    TooLarge,
    VersionConflict,
)
from registry.models import (
    AccessGrant,
    AccessLevel,
    ApiToken,
    AuditEvent,
    Invitation,
    Membership,
    OrgRole,
    PendingGrant,
    PendingMembership,
    Resource,
    ResourceType,
    ResourceVersion,
    SecretValue,
    ServiceAccount,
    Team,
    TeamGrant,
    TeamMember,
    TokenScope,
    UserKind,
    Visibility,
)
from registry.models.users import RESERVED_USERNAMES, USERNAME_PATTERN, validate_username
from registry.validation import parse_resource_type, validate_config

logger = logging.getLogger(__name__)
User = get_user_model()


def audit_record(
    *, actor: Any, action: str, resource: Resource | None = None, org: Any = None, **data: Any
) -> AuditEvent:
    """Write one audit row; call it inside the transaction of the change it
    records. A row about an organisation's resource belongs to the org too
    (its admins read it with ``GET /api/v1/audit?org=``)."""
    if org is None and resource is not None and resource.owner.kind == UserKind.ORG:
        org = resource.owner
    return AuditEvent.objects.create(
        actor=actor if actor is not None and actor.is_authenticated else None,
        actor_username=getattr(actor, "username", "") or "",
        action=action,
        resource=resource,
        address=resource.address if resource is not None else data.pop("address", ""),
        org=org,
        data=data,
    )


# Resources ------------------------------------------------------------------


def _parse_visibility(value: Any) -> str:
    if value not in Visibility.values:
        raise InvalidInput(
            f"visibility must be one of {', '.join(Visibility.values)}.", field="visibility"
        )
    return str(value)


@transaction.atomic
def resource_create(
    *,
    actor: Any,
    name: str,
    type: str,
    config: Any,
    visibility: str = Visibility.PRIVATE,
    description: str = "",
    owner: Any = None,
) -> Resource:
    """Create a resource in the actor's namespace (or ``owner``'s, an
    organisation the caller checked the actor may create in) with its first version."""
    owner = owner if owner is not None else actor
    resource_type = parse_resource_type(type)
    config = validate_config(resource_type, config)
    visibility = _parse_visibility(visibility)
    _require_readable_references(actor=actor, type=resource_type, config=config)
    resource = Resource(
        owner=owner,
        name=name,
        type=resource_type,
        config=config,
        visibility=visibility,
        description=description or "",
        version=1,
    )
    try:
        with transaction.atomic():
            resource.save()
    except IntegrityError:
        raise AlreadyExists(
            f"/{owner.username}/{name} already exists; PUT to update it.", field="address"
        ) from None
    ResourceVersion.objects.create(
        resource=resource, number=1, type=resource_type, config=config, author=actor
    )
    audit_record(actor=actor, action="resource.create", resource=resource, type=resource_type,
                 visibility=visibility)
    return resource


def _lock(resource: Resource) -> Resource:
    """Re-read the row under a lock so version checks and bumps are atomic."""
    locked = Resource.objects.select_for_update().select_related("owner").get(pk=resource.pk)
    locked.access_level = getattr(resource, "access_level", None)
    return locked


def _new_version(
    *, resource: Resource, actor: Any, type: str, config: dict, restored_from: int | None = None
) -> Resource:
    resource.version += 1
    resource.type = type
    resource.config = config
    resource.save(update_fields=["version", "type", "config", "updated_at"])
    ResourceVersion.objects.create(
        resource=resource,
        number=resource.version,
        type=type,
        config=config,
        author=actor,
        restored_from=restored_from,
    )
    return resource


def _require_readable_references(
    *, actor: Any, type: str, config: dict, current: Resource | None = None
) -> None:
    """See ``registry.access.require_readable_references``: the one rule for
    references, applied to the type being saved."""
    require_readable_references(
        Caller(user=actor),
        type=type,
        config=config,
        current=(current.type, current.config) if current is not None else None,
    )


@transaction.atomic
def resource_update_config(
    *,
    actor: Any,
    resource: Resource,
    config: Any,
    type: str | None = None,
    description: str | None = None,
    if_match: int | None = None,
) -> Resource:
    """Replace the config; a changed config or type makes a new version.

    ``if_match`` is the version the caller last saw: a different current
    version means someone else saved in between, and nothing is written.
    """
    resource_type = parse_resource_type(type) if type is not None else resource.type
    config = validate_config(resource_type, config)
    resource = _lock(resource)
    if if_match is not None and if_match != resource.version:
        raise VersionConflict(
            f"{resource.address} is at version {resource.version}, not {if_match}: "
            "someone saved it since you loaded it. Load it again and retry.",
        )
    _require_readable_references(actor=actor, type=resource_type, config=config, current=resource)
    changed = config != resource.config or resource_type != resource.type
    if changed:
        _new_version(resource=resource, actor=actor, type=resource_type, config=config)
    if description is not None and description != resource.description:
        resource.description = description
        resource.save(update_fields=["description", "updated_at"])
        changed = True
    if changed:
        audit_record(actor=actor, action="resource.update", resource=resource,
                     version=resource.version)
    return resource


@transaction.atomic
def resource_update_meta(
    *, actor: Any, resource: Resource, visibility: str | None = None, description: str | None = None
) -> Resource:
    """Change visibility (owner level, checked by the caller) and description."""
    resource = _lock(resource)
    changed = False
    if visibility is not None:
        visibility = _parse_visibility(visibility)
        if visibility != resource.visibility:
            audit_record(actor=actor, action="resource.visibility", resource=resource,
                         old=resource.visibility, new=visibility)
            resource.visibility = visibility
            changed = True
    if description is not None and description != resource.description:
        audit_record(actor=actor, action="resource.describe", resource=resource)
        resource.description = description
        changed = True
    if changed:
        resource.save(update_fields=["visibility", "description", "updated_at"])
    return resource


@transaction.atomic
def resource_delete(*, actor: Any, resource: Resource) -> None:
    """Delete a resource with its versions, grants, pending grants and secret values."""
    audit_record(actor=actor, action="resource.delete", resource=resource, type=resource.type)
    resource.delete()


@transaction.atomic
def resource_restore_version(*, actor: Any, resource: Resource, number: int) -> Resource:
    """Make a new version whose config is version ``number``'s."""
    resource = _lock(resource)
    old = ResourceVersion.objects.filter(resource=resource, number=number).first()
    if old is None:
        raise NotFound(
            f"{resource.address} has no version {number}; its versions are 1 to {resource.version}."
        )
    _require_readable_references(actor=actor, type=old.type, config=old.config, current=resource)
    _new_version(resource=resource, actor=actor, type=old.type, config=old.config,
                 restored_from=number)
    audit_record(actor=actor, action="resource.restore", resource=resource,
                 restored_from=number, version=resource.version)
    return resource


# Sharing ----------------------------------------------------------------------


def _parse_level(level: Any) -> AccessLevel:
    if level not in ("read", "write"):
        raise InvalidInput("level must be 'read' or 'write'.", field="level")
    return AccessLevel.from_name(level)


@transaction.atomic
def resource_share(
    *, actor: Any, resource: Resource, users: list[str] | None = None, level: str,
    teams: list[str] | None = None,
) -> dict[str, list[str]]:
    """Grant ``level`` to usernames or emails, and to teams (``<org>/<team>``);
    an email without an account gets a pending grant and an invitation. Every
    name is checked before anything is written, so one bad name changes nothing."""
    access_level = _parse_level(level)
    users = [] if users is None else users
    teams = [] if teams is None else teams
    if not isinstance(users, list) or not all(isinstance(u, str) for u in users):
        raise InvalidInput("users must be a list of usernames or emails.", field="users")
    if not isinstance(teams, list) or not all(isinstance(t, str) for t in teams):
        raise InvalidInput("teams must be a list of team names such as acme/ml.", field="teams")
    if not users and not teams:
        raise InvalidInput("users must be a non-empty list of usernames or emails.", field="users")
    team_targets = [_team_for_share(actor=actor, text=text) for text in dict.fromkeys(teams)]
    targets: list[Any] = []
    emails: list[str] = []
    for entry in dict.fromkeys(item.strip() for item in users):
        if "@" in entry:
            user = User.objects.filter(email__iexact=entry, is_active=True).first()
            if user is None:
                try:
                    from django.core.validators import validate_email

                    validate_email(entry)
                except DjangoValidationError:
                    raise InvalidInput(f"'{entry}' is not a valid email address.", field="users") from None
                emails.append(entry.lower())
                continue
        else:
            user = User.objects.filter(username=entry, is_active=True).first()
            if user is None:
                raise InvalidInput(
                    f"There is no user '{entry}'. Share with their email address to invite them.",
                    field="users",
                )
        if user.pk == resource.owner_id:
            raise InvalidInput(f"{user.username} owns {resource.address} already.", field="users")
        if user.kind != UserKind.PERSON:
            raise InvalidInput(
                f"{user.username} is an organisation or a service account: share with one of "
                "its teams (teams=[\"org/team\"]) instead.", field="users")
        targets.append(user)

    # Each email below gets an invitation mail: limited per request and hour.
    throttling.invitations_check(actor=actor, count=len(emails), field="users")

    granted: list[str] = []
    for user in targets:
        AccessGrant.objects.update_or_create(
            resource=resource, user=user, defaults={"level": access_level, "granted_by": actor}
        )
        audit_record(actor=actor, action="access.grant", resource=resource,
                     user=user.username, level=access_level.label)
        granted.append(user.username)
    for email in emails:
        PendingGrant.objects.update_or_create(
            resource=resource, email=email, defaults={"level": access_level, "invited_by": actor}
        )
        audit_record(actor=actor, action="access.invite", resource=resource, email=email,
                     level=access_level.label)
        invitation_send(actor=actor, email=email, resource=resource)
    shared_teams: list[str] = []
    for team in team_targets:
        TeamGrant.objects.update_or_create(
            resource=resource, team=team, defaults={"level": access_level, "granted_by": actor}
        )
        label = f"{team.org.username}/{team.name}"
        audit_record(actor=actor, action="access.grant.team", resource=resource, team=label,
                     level=access_level.label)
        shared_teams.append(label)
    result = {"granted": granted, "invited": emails}
    if team_targets:
        result["teams"] = shared_teams
    return result


def _team_for_share(*, actor: Any, text: str) -> Team:
    """The team ``<org>/<team>`` named in a share, if the actor is a member of
    its org (a non-member learns nothing of the org's teams)."""
    org_name, _, team_name = text.strip().partition("/")
    team = (Team.objects.select_related("org")
            .filter(org__username=org_name, org__kind=UserKind.ORG, name__iexact=team_name,
                    org__memberships__user=actor).first()) if team_name else None
    if team is None:
        raise InvalidInput(
            f"There is no team {text!r} in an organisation you belong to; name teams as org/team.",
            field="teams")
    return team


@transaction.atomic
def resource_revoke_team(*, actor: Any, resource: Resource, org: str, team: str) -> None:
    """Remove a team's grant on a resource."""
    deleted, _ = TeamGrant.objects.filter(
        resource=resource, team__org__username=org, team__name__iexact=team).delete()
    if not deleted:
        raise NotFound(f"The team {org}/{team} has no access to {resource.address} to revoke.")
    audit_record(actor=actor, action="access.revoke.team", resource=resource, team=f"{org}/{team}")


@transaction.atomic
def resource_transfer(*, actor: Any, resource: Resource, to: Any) -> Resource:
    """Move a resource the actor owns to a namespace they control: an
    organisation they admin (or back to themselves). Its id stays, so its
    grants, versions and audit rows stay with it; a cluster's own tokens move
    to the new owner. The caller fetched it at owner level."""
    if actor.kind != UserKind.PERSON:
        raise PermissionDenied("Only a person moves resources between namespaces.")
    if not isinstance(to, str) or not to:
        raise InvalidInput("to must be the name of an organisation you admin.", field="to")
    if to == actor.username and actor.kind == UserKind.PERSON:
        target = actor
    else:
        target = User.objects.filter(
            username=to, kind=UserKind.ORG, memberships__user=actor,
            memberships__role=OrgRole.ADMIN).first()
        if target is None:
            raise InvalidInput(f"You are not an admin of an organisation {to!r}; you can move a "
                               "resource only to an organisation you admin.", field="to")
    resource = _lock(resource)
    old_address, old_owner = resource.address, resource.owner
    if target.pk == old_owner.pk:
        raise InvalidInput(f"{old_address} belongs to {to} already.", field="to")
    if Resource.objects.filter(owner=target, name=resource.name).exists():
        raise AlreadyExists(f"/{target.username}/{resource.name} exists already; rename or "
                            "delete it first.", field="to")
    resource.owner = target
    resource.save(update_fields=["owner", "updated_at"])
    AccessGrant.objects.filter(resource=resource, user=target).delete()  # the owner needs none
    ApiToken.objects.filter(cluster=resource).update(user=target)
    audit_record(actor=actor, action="resource.transfer", resource=resource,
                 old=old_address, new=resource.address)
    if old_owner.kind == UserKind.ORG:
        audit_record(actor=actor, action="resource.transfer", org=old_owner, address=old_address,
                     old=old_address, new=resource.address)
    return resource


@transaction.atomic
def resource_revoke(*, actor: Any, resource: Resource, who: str) -> None:
    """Remove a user's grant, or a pending grant to an email."""
    if "@" in who:
        deleted, _ = PendingGrant.objects.filter(resource=resource, email__iexact=who).delete()
        if deleted:  # a cancelled invitation's link must not still make an account
            Invitation.objects.filter(
                resource=resource, email__iexact=who, accepted_at__isnull=True
            ).update(expires_at=timezone.now())
        else:
            user = User.objects.filter(email__iexact=who).first()
            deleted, _ = AccessGrant.objects.filter(resource=resource, user=user).delete() if user else (0, {})
    else:
        deleted, _ = AccessGrant.objects.filter(resource=resource, user__username=who).delete()
    if not deleted:
        raise NotFound(f"{who} has no access to {resource.address} to revoke.")
    audit_record(actor=actor, action="access.revoke", resource=resource, user=who)


# Secrets ----------------------------------------------------------------------


def _require_secret(resource: Resource) -> None:
    if resource.type != ResourceType.SECRET:
        raise InvalidInput(
            f"{resource.address} is a {resource.type}, not a secret; only secrets hold values.",
            code="not_a_secret",
        )


@transaction.atomic
def secret_set_values(*, actor: Any, resource: Resource, values: Any) -> None:
    """Encrypt and store a secret's values, replacing the old ones."""
    _require_secret(resource)
    if not isinstance(values, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in values.items()
    ):
        raise InvalidInput("values must be an object of string names to string values.", field="values")
    SecretValue.objects.update_or_create(
        resource=resource,
        defaults={"ciphertext": credentials.encrypt_values(values), "updated_by": actor},
    )
    audit_record(actor=actor, action="secret.write", resource=resource, names=sorted(values))


@transaction.atomic
def secret_read_values_audited(*, actor: Any, resource: Resource) -> dict[str, str]:
    """Decrypt a secret's values for a write-access holder; every read is audited."""
    _require_secret(resource)
    stored = SecretValue.objects.filter(resource=resource).first()
    values = credentials.decrypt_values(stored.ciphertext) if stored else {}
    audit_record(actor=actor, action="secret.read", resource=resource, names=sorted(values))
    return values


@transaction.atomic
def secret_delete_values(*, actor: Any, resource: Resource) -> bool:
    """Delete a secret's stored values (the resource stays); True if there were any."""
    _require_secret(resource)
    deleted, _ = SecretValue.objects.filter(resource=resource).delete()
    if deleted:
        audit_record(actor=actor, action="secret.delete", resource=resource)
    return bool(deleted)


# Tokens -------------------------------------------------------------------------


def _token_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise InvalidInput("name must be 1 to 100 characters.", field="name")
    return name.strip()


@transaction.atomic
def token_create(
    *, user: Any, name: Any, scope: Any = TokenScope.WRITE, expires_in_days: Any = None
) -> tuple[ApiToken, str]:
    """Create a token; the plain token is returned here and never again."""
    if scope not in TokenScope.values:
        raise InvalidInput("scope must be 'read' or 'write'.", field="scope")
    if expires_in_days is None:
        expires_in_days = settings.DEN_TOKEN_DEFAULT_EXPIRY_DAYS
    if isinstance(expires_in_days, bool) or not isinstance(expires_in_days, int) or not (
        1 <= expires_in_days <= 3650
    ):
        raise InvalidInput("expires_in_days must be a whole number from 1 to 3650.",
                           field="expires_in_days")
    plain = credentials.new_token()
    token = ApiToken.objects.create(
        user=user,
        name=_token_name(name),
        scope=scope,
        token_hash=credentials.hash_token(plain),
        hint=credentials.token_hint(plain),
        expires_at=timezone.now() + timedelta(days=expires_in_days),
    )
    audit_record(actor=user, action="token.create", token_id=token.pk, name=token.name,
                 scope=token.scope)
    return token, plain


def token_create_own(*, user: Any, name: Any, scope: Any = TokenScope.WRITE,
                     expires_in_days: Any = None) -> tuple[ApiToken, str]:
    """``POST /api/v1/tokens``: a person makes a token for themselves. A
    service account may not: its tokens are made by its org's admins (so
    a leaked token cannot mint the siblings that would outlive its revoking)."""
    if getattr(user, "kind", UserKind.PERSON) != UserKind.PERSON:
        account = ServiceAccount.objects.select_related("org").filter(user=user).first()
        where = (f"POST /api/v1/orgs/{account.org.username}/service-accounts/{account.name}/tokens"
                 if account is not None else "its organisation's settings")
        raise PermissionDenied(f"A service account's tokens are made by an admin of its "
                               f"organisation: {where}.")
    return token_create(user=user, name=name, scope=scope, expires_in_days=expires_in_days)


@transaction.atomic
def token_revoke(*, user: Any, token_id: int) -> None:
    """Revoke one of the user's own tokens; anyone else's is "not found"."""
    token = ApiToken.objects.select_for_update().filter(
        pk=token_id, user=user, revoked_at__isnull=True
    ).first()
    if token is None:
        raise NotFound(f"You have no active token {token_id}.")
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    audit_record(actor=user, action="token.revoke", token_id=token.pk, name=token.name)


@transaction.atomic
def token_revoke_as_admin(*, actor: Any, token_id: int) -> ApiToken:
    """Revoke anyone's token, for an administrator (the Django admin)."""
    if not getattr(actor, "is_staff", False):
        raise NotFound(f"There is no active token {token_id}.")
    token = ApiToken.objects.select_for_update().select_related("user").filter(
        pk=token_id, revoked_at__isnull=True
    ).first()
    if token is None:
        raise NotFound(f"There is no active token {token_id}.")
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    audit_record(actor=actor, action="token.revoke", token_id=token.pk, name=token.name,
                 user=token.user.username, by_admin=True)
    return token


def _tokens_revoke_all(*, user: Any) -> int:
    """Revoke every active API token of ``user`` (not their clusters' own
    tokens, which den mints for node daemons and revokes with the cluster)."""
    now = timezone.now()
    count = ApiToken.objects.filter(
        user=user, revoked_at__isnull=True, cluster__isnull=True
    ).update(revoked_at=now)
    if count:
        authcache.bump_access_epoch()  # an update() sends no signal: end cached lookups now
    return count


LAST_USED_PRECISION = timedelta(minutes=1)


def token_authenticate(*, plain: str) -> ApiToken:
    """The active token for ``plain``, or NotAuthenticated saying why not.

    ``last_used_at`` is stamped at most once a minute, so authenticating does
    not cost a write on every request.
    """
    if not credentials.token_is_well_formed(plain):
        raise NotAuthenticated("This is not a den token: its format or checksum is wrong.",
                               code="authentication_failed")
    token_hash = credentials.hash_token(plain)
    epoch, token = authcache.cached_token(token_hash)
    if token is None:
        token = ApiToken.objects.select_related("user").filter(token_hash=token_hash).first()
        if token is None:
            raise NotAuthenticated("Unknown token.", code="authentication_failed")
        authcache.remember_token(epoch, token)
    now = timezone.now()
    if token.revoked_at is not None:
        raise NotAuthenticated("This token was revoked; create a new one.",
                               code="authentication_failed")
    if token.expires_at is not None and token.expires_at <= now:
        raise NotAuthenticated(
            f"This token expired on {token.expires_at:%Y-%m-%d}; create a new one.",
            code="authentication_failed",
        )
    if not token.user.is_active:
        raise NotAuthenticated("This account is disabled.", code="authentication_failed")
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_PRECISION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
        authcache.remember_token(epoch, token)
    return token


def token_login(*, username: Any, password: Any, token_name: Any = None) -> tuple[ApiToken, str]:
    """Exchange a username and password for a new write token (``den login``)."""
    if not isinstance(username, str) or not isinstance(password, str):
        raise InvalidInput("username and password are required.", field="username")
    user = authenticate(username=username, password=password)
    if user is None:
        raise NotAuthenticated("Wrong username or password.", code="invalid_credentials")
    return token_create(user=user, name=token_name or "den login", scope=TokenScope.WRITE)


# Invitations ----------------------------------------------------------------------


def invitation_url(token: str) -> str:
    return f"{settings.DEN_PUBLIC_URL}/invite/{token}"


def invitation_send(
    *, actor: Any, email: str, resource: Resource | None = None, org: Any = None
) -> Invitation:
    """Create an invitation for ``email`` and mail its link (after commit)."""
    plain = credentials.new_token()
    invitation = Invitation.objects.create(
        email=email.lower(),
        token_hash=credentials.hash_token(plain),
        invited_by=actor,
        resource=resource,
        expires_at=timezone.now() + timedelta(days=settings.DEN_INVITATION_EXPIRY_DAYS),
    )
    inviter = getattr(actor, "username", "an administrator")
    what = f" and shared {resource.address} with you" if resource is not None else ""
    if org is not None:
        what = f" to join the organisation {org.username}"
    body = (
        f"{inviter} invited you to den{what}.\n\n"
        f"Choose a username and password here:\n{invitation_url(plain)}\n\n"
        f"The link works once and expires in {settings.DEN_INVITATION_EXPIRY_DAYS} days."
    )
    transaction.on_commit(
        lambda: send_mail("You are invited to den", body, None, [email], fail_silently=True)
    )
    invitation.plain_token = plain  # available to the creator only, right now
    return invitation


@transaction.atomic
def invitation_create(*, actor: Any, email: Any) -> Invitation:
    """An administrator invites someone to create an account."""
    from django.core.validators import validate_email

    try:
        validate_email(email)
    except DjangoValidationError:
        raise InvalidInput("email must be a valid email address.", field="email") from None
    throttling.invitations_check(actor=actor, count=1, field="email")
    invitation = invitation_send(actor=actor, email=email)
    audit_record(actor=actor, action="invitation.create", email=invitation.email)
    return invitation


def invitation_get(*, token: str) -> Invitation:
    invitation = Invitation.objects.filter(
        token_hash=credentials.hash_token(token),
        accepted_at__isnull=True,
        expires_at__gt=timezone.now(),
    ).first()
    if invitation is None:
        raise NotFound("This invitation link is unknown, used or expired; ask for a new one.")
    return invitation


@transaction.atomic
def invitation_accept(*, token: Any, username: Any, password: Any) -> Any:
    """Create the invited account and bind every pending grant to its email."""
    if not isinstance(token, str):
        raise NotFound("This invitation link is unknown, used or expired; ask for a new one.")
    invitation = invitation_get(token=token)
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if invitation.accepted_at is not None:
        raise NotFound("This invitation link is unknown, used or expired; ask for a new one.")
    if not isinstance(username, str) or not isinstance(password, str):
        raise InvalidInput("username and password are required.", field="username")
    # One account per email: a second would let a disabled account's owner back
    # in through a teammate's share, and make later shares by email ambiguous.
    if User.objects.filter(email__iexact=invitation.email).exists():
        raise AlreadyExists(
            f"{invitation.email} has an account already; sign in with it, or ask an "
            "administrator if it is disabled.",
            field="email",
        )
    try:
        validate_username(username)
    except DjangoValidationError as exc:
        raise InvalidInput(exc.messages[0], field="username") from None
    if User.objects.annotate(lower=Lower("username")).filter(lower=username.lower()).exists():
        raise AlreadyExists(f"The username '{username}' is taken.", field="username")
    candidate = User(username=username, email=invitation.email)
    try:
        validate_password(password, user=candidate)
    except DjangoValidationError as exc:
        raise InvalidInput(" ".join(exc.messages), field="password") from None
    user = User.objects.create_user(username=username, email=invitation.email, password=password)
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    for pending in PendingGrant.objects.filter(email__iexact=invitation.email).select_related(
        "resource__owner"
    ):
        AccessGrant.objects.update_or_create(
            resource=pending.resource,
            user=user,
            defaults={"level": pending.level, "granted_by": pending.invited_by},
        )
        audit_record(actor=user, action="access.bind", resource=pending.resource,
                     user=user.username, level=AccessLevel(pending.level).label)
        pending.delete()
    for promised in PendingMembership.objects.filter(email__iexact=invitation.email).select_related(
        "org"
    ):
        Membership.objects.get_or_create(
            org=promised.org, user=user,
            defaults={"role": promised.role, "added_by": promised.invited_by})
        audit_record(actor=user, action="org.member.bind", org=promised.org,
                     address=f"/{promised.org.username}", user=user.username, role=promised.role)
        promised.delete()
    audit_record(actor=user, action="invitation.accept", email=invitation.email)
    return user


# Users ------------------------------------------------------------------------

MAX_DISPLAY_NAME_LENGTH = 150


@transaction.atomic
def user_profile_update(*, user: Any, first_name: str, last_name: str) -> Any:
    """Change the display name. The email stays: shares and invitations bind
    to it, so changing it needs a verified address (ask an administrator)."""
    first_name, last_name = first_name.strip(), last_name.strip()
    for field, value in (("first_name", first_name), ("last_name", last_name)):
        if len(value) > MAX_DISPLAY_NAME_LENGTH:
            raise InvalidInput(f"A name is at most {MAX_DISPLAY_NAME_LENGTH} characters.", field=field)
    if (first_name, last_name) != (user.first_name, user.last_name):
        user.first_name, user.last_name = first_name, last_name
        user.save(update_fields=["first_name", "last_name"])
        audit_record(actor=user, action="user.profile")
    return user


@transaction.atomic
def user_password_changed(*, actor: Any, user: Any, how: str) -> int:
    """After ``user``'s password was set (``how``: ``change``, ``reset`` or
    ``admin``): revoke their API tokens, so that whoever held one (perhaps
    the reason for the change) is locked out with the old password, and write
    the audit row. Cluster tokens stay: they are the daemons' own. Call it in
    the transaction that saved the password. Returns how many were revoked."""
    revoked = _tokens_revoke_all(user=user)
    audit_record(actor=actor, action="user.password", user=user.username, how=how,
                 tokens_revoked=revoked)
    return revoked


@transaction.atomic
def user_password_change(*, user: Any, form: Any) -> Any:
    """Save a validated ``PasswordChangeForm`` (which checked the old password
    and the new one's strength); this ends the user's API tokens."""
    user = form.save()
    user.tokens_revoked = user_password_changed(actor=user, user=user, how="change")
    return user


@transaction.atomic
def user_password_reset(*, form: Any) -> Any:
    """Save a validated ``SetPasswordForm`` from a password-reset link; this
    ends the user's API tokens, like any password change."""
    user = form.save()
    user.tokens_revoked = user_password_changed(actor=user, user=user, how="reset")
    return user


# Code bundles ---------------------------------------------------------------------

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def code_bundle_store(*, actor: Any, sha: Any, data: bytes) -> bool:
    """Keep a code bundle by its SHA-256 (checked here) so that den can put a
    saved function back on a cluster that restarted; True when it is new.

    Content-addressed: storing what is already there changes nothing, and
    nobody but a cluster's daemon reads it back (see ``compute``), so any
    signed-in user with a write token may store one. Capped at
    ``DEN_CODE_BUNDLE_MAX_MB``, the client's own cap on a bundle.
    """
    from registry.models import CodeBundle

    if not isinstance(sha, str) or not _SHA256_RE.match(sha):
        raise InvalidInput("The code id must be a SHA-256 hex digest (64 characters 0-9a-f).",
                           field="sha256")
    limit = settings.DEN_CODE_BUNDLE_MAX_MB * 1024 * 1024
    if len(data) > limit:
        raise TooLarge(f"The code bundle is {len(data)} bytes; den keeps bundles of at most "
                       f"{settings.DEN_CODE_BUNDLE_MAX_MB} MB.")
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha:
        raise InvalidInput(f"The body's SHA-256 is {digest}, not {sha}: upload the bundle again.",
                           field="sha256")
    _, created = CodeBundle.objects.get_or_create(
        sha256=sha, defaults={"data": data, "size": len(data), "uploaded_by": actor})
    return bool(created)



# Organisations ---------------------------------------------------------------------
#
# Callers fetch the organisation through ``registry.access.access_org`` (as a
# member, or as an admin for every change here); these functions check input
# and invariants (the last admin stays) and write the audit rows.


def _name_in_namespace(name: Any, *, field: str, what: str, reserved: bool = True) -> str:
    """A name that is a valid address segment (and, for names that are one, not reserved)."""
    if not isinstance(name, str) or not USERNAME_PATTERN.fullmatch(name):
        raise InvalidInput(
            f"A {what} name is 1 to 39 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit.", field=field, code="invalid_name")
    if reserved and name.lower() in RESERVED_USERNAMES:
        raise InvalidInput(f"'{name}' is reserved; choose another {what} name.", field=field,
                           code="reserved")
    return name


def _name_taken(name: str) -> bool:
    """Usernames and organisation names are one space, compared case-insensitively."""
    return User.objects.annotate(lower=Lower("username")).filter(lower=name.lower()).exists()


def _admin_count(org: Any) -> int:
    return Membership.objects.filter(org=org, role=OrgRole.ADMIN, user__kind=UserKind.PERSON).count()


def _parse_role(role: Any, *, field: str = "role") -> str:
    if role not in OrgRole.values:
        raise InvalidInput("role must be 'admin' or 'member'.", field=field)
    return str(role)


@transaction.atomic
def org_create(*, actor: Any, name: Any, description: Any = "") -> Any:
    """Create an organisation named ``name`` (one name space with usernames);
    the actor, a person, becomes its first admin."""
    if actor.kind != UserKind.PERSON:
        raise InvalidInput("Only a person creates organisations.", field="name")
    name = _name_in_namespace(name, field="name", what="organisation")
    if description is not None and not isinstance(description, str):
        raise InvalidInput("description must be a string.", field="description")
    if _name_taken(name):
        raise AlreadyExists(f"The name '{name}' is taken by a user or an organisation.",
                            field="name")
    org = User(username=name, kind=UserKind.ORG, email="", description=description or "")
    org.set_unusable_password()
    try:
        with transaction.atomic():
            org.save()
    except IntegrityError:
        raise AlreadyExists(f"The name '{name}' is taken by a user or an organisation.",
                            field="name") from None
    Membership.objects.create(org=org, user=actor, role=OrgRole.ADMIN, added_by=actor)
    audit_record(actor=actor, action="org.create", org=org, address=f"/{name}")
    return org


@transaction.atomic
def org_members_add(*, actor: Any, org: Any, users: Any, role: Any = OrgRole.MEMBER
                    ) -> dict[str, list[str]]:
    """Add people (usernames or emails) with ``role``, or change the role of
    those already in. An email without an account gets an invitation and a
    pending membership that binds when it is accepted. Every name is checked
    first: one bad name changes nothing; demoting the last admin is refused."""
    role = _parse_role(role)
    if not isinstance(users, list) or not users or not all(isinstance(u, str) for u in users):
        raise InvalidInput("users must be a non-empty list of usernames or emails.", field="users")
    people: list[Any] = []
    emails: list[str] = []
    for entry in dict.fromkeys(item.strip() for item in users):
        if "@" in entry:
            person = User.objects.filter(email__iexact=entry, is_active=True,
                                         kind=UserKind.PERSON).first()
            if person is None:
                from django.core.validators import validate_email

                try:
                    validate_email(entry)
                except DjangoValidationError:
                    raise InvalidInput(f"'{entry}' is not a valid email address.",
                                       field="users") from None
                emails.append(entry.lower())
                continue
        else:
            person = User.objects.filter(username=entry, is_active=True).first()
            if person is None or person.kind != UserKind.PERSON:
                raise InvalidInput(
                    f"There is no user '{entry}'. Add them by email address to invite them.",
                    field="users")
        people.append(person)
    throttling.invitations_check(actor=actor, count=len(emails), field="users")
    list(Membership.objects.select_for_update().filter(org=org, role=OrgRole.ADMIN))
    address = f"/{org.username}"
    added: list[str] = []
    for person in people:
        membership, created = Membership.objects.get_or_create(
            org=org, user=person, defaults={"role": role, "added_by": actor})
        if created:
            audit_record(actor=actor, action="org.member.add", org=org, address=address,
                         user=person.username, role=role)
        elif membership.role != role:
            old = membership.role
            membership.role = role
            membership.save(update_fields=["role"])
            audit_record(actor=actor, action="org.member.role", org=org, address=address,
                         user=person.username, old=old, new=role)
        added.append(person.username)
    if _admin_count(org) == 0:
        raise Conflict(f"{org.username} would have no admin left; make someone else an admin "
                       "first.", field="role")
    for email in emails:
        PendingMembership.objects.update_or_create(
            org=org, email=email, defaults={"role": role, "invited_by": actor})
        audit_record(actor=actor, action="org.member.invite", org=org, address=address,
                     email=email, role=role)
        invitation_send(actor=actor, email=email, org=org)
    return {"added": added, "invited": emails}


@transaction.atomic
def org_member_remove(*, actor: Any, org: Any, who: Any) -> None:
    """Remove a member (and their place in the org's teams), or a pending
    invitation by email. The last admin stays (409). A service account leaves
    by being deleted."""
    address = f"/{org.username}"
    if isinstance(who, str) and "@" in who:
        deleted, _ = PendingMembership.objects.filter(org=org, email__iexact=who).delete()
        if not deleted:
            raise NotFound(f"{who} is not invited to {org.username}.")
        audit_record(actor=actor, action="org.member.uninvite", org=org, address=address,
                     email=who)
        return
    membership = (Membership.objects.select_for_update().select_related("user")
                  .filter(org=org, user__username=who).first())
    if membership is None:
        raise NotFound(f"{who} is not a member of {org.username}.")
    if membership.user.kind == UserKind.SERVICE:
        raise InvalidInput(f"{who} is a service account: delete it instead.", field="username")
    if membership.role == OrgRole.ADMIN:
        list(Membership.objects.select_for_update().filter(org=org, role=OrgRole.ADMIN))
        if _admin_count(org) <= 1:
            raise Conflict(f"{who} is the last admin of {org.username}; make someone else an "
                           "admin first.", field="username")
    TeamMember.objects.filter(team__org=org, user=membership.user).delete()
    membership.delete()
    audit_record(actor=actor, action="org.member.remove", org=org, address=address, user=who)


def _team_name(name: Any) -> str:
    if not isinstance(name, str) or "/" in name:
        raise InvalidInput("A team name is 1 to 39 letters, digits, '.', '_' or '-' (no '/'); "
                           "it is shared with as org/team.", field="name")
    return _name_in_namespace(name, field="name", what="team", reserved=False)


@transaction.atomic
def team_create(*, actor: Any, org: Any, name: Any, description: Any = "") -> Team:
    """A new, empty team in ``org``."""
    name = _team_name(name)
    if Team.objects.filter(org=org, name__iexact=name).exists():
        raise AlreadyExists(f"{org.username} has a team {name} already.", field="name")
    team = Team.objects.create(org=org, name=name,
                               description=description if isinstance(description, str) else "")
    audit_record(actor=actor, action="org.team.create", org=org, address=f"/{org.username}",
                 team=name)
    return team


@transaction.atomic
def team_delete(*, actor: Any, team: Team) -> None:
    """Delete a team with its members and its grants."""
    audit_record(actor=actor, action="org.team.delete", org=team.org,
                 address=f"/{team.org.username}", team=team.name)
    team.delete()


@transaction.atomic
def team_members_add(*, actor: Any, team: Team, users: Any) -> list[str]:
    """Put members of the team's org into it (people only: a service account
    acts with its org role and joins no team)."""
    if not isinstance(users, list) or not users or not all(isinstance(u, str) for u in users):
        raise InvalidInput("users must be a non-empty list of usernames.", field="users")
    people = []
    for name in dict.fromkeys(item.strip() for item in users):
        membership = (Membership.objects.select_related("user")
                      .filter(org=team.org, user__username=name).first())
        if membership is None or membership.user.kind != UserKind.PERSON:
            raise InvalidInput(
                f"'{name}' is not a member of {team.org.username}; add them to the "
                "organisation first.", field="users")
        people.append(membership.user)
    added = []
    for person in people:
        _, created = TeamMember.objects.get_or_create(team=team, user=person,
                                                      defaults={"added_by": actor})
        if created:
            audit_record(actor=actor, action="org.team.member.add", org=team.org,
                         address=f"/{team.org.username}", team=team.name, user=person.username)
        added.append(person.username)
    return added


@transaction.atomic
def team_member_remove(*, actor: Any, team: Team, username: str) -> None:
    deleted, _ = TeamMember.objects.filter(team=team, user__username=username).delete()
    if not deleted:
        raise NotFound(f"{username} is not in the team {team.org.username}/{team.name}.")
    audit_record(actor=actor, action="org.team.member.remove", org=team.org,
                 address=f"/{team.org.username}", team=team.name, user=username)


@transaction.atomic
def service_account_create(*, actor: Any, org: Any, name: Any, role: Any = OrgRole.MEMBER,
                           description: Any = "") -> ServiceAccount:
    """A service account of ``org`` acting with ``role``: a user row of kind
    ``service`` named ``<org>:<name>``, without a password (it never signs
    in), holding tokens made with ``service_account_token_create``."""
    name = _name_in_namespace(name, field="name", what="service account", reserved=False)
    role = _parse_role(role)
    if ServiceAccount.objects.filter(org=org, name__iexact=name).exists():
        raise AlreadyExists(f"{org.username} has a service account {name} already.", field="name")
    user = User(username=f"{org.username}:{name}", kind=UserKind.SERVICE, email="")
    user.set_unusable_password()
    user.save()
    Membership.objects.create(org=org, user=user, role=role, added_by=actor)
    account = ServiceAccount.objects.create(
        org=org, user=user, name=name, created_by=actor,
        description=description if isinstance(description, str) else "")
    audit_record(actor=actor, action="org.service_account.create", org=org,
                 address=f"/{org.username}", name=name, role=role)
    return account


@transaction.atomic
def service_account_delete(*, actor: Any, account: ServiceAccount) -> None:
    """Delete a service account: its tokens are refused (401) from the next request on."""
    org = account.org
    audit_record(actor=actor, action="org.service_account.delete", org=org,
                 address=f"/{org.username}", name=account.name)
    account.user.delete()  # its tokens and membership go with it


@transaction.atomic
def service_account_token_create(*, actor: Any, account: ServiceAccount, name: Any,
                                 scope: Any = TokenScope.WRITE, expires_in_days: Any = None
                                 ) -> tuple[ApiToken, str]:
    """A token for a service account, made by an admin of its org; returned once."""
    token, plain = token_create(user=account.user, name=name, scope=scope,
                                expires_in_days=expires_in_days)
    audit_record(actor=actor, action="org.service_account.token.create", org=account.org,
                 address=f"/{account.org.username}", name=account.name, token_id=token.pk,
                 scope=token.scope)
    return token, plain


@transaction.atomic
def service_account_token_revoke(*, actor: Any, account: ServiceAccount, token_id: int) -> None:
    token = ApiToken.objects.select_for_update().filter(
        pk=token_id, user=account.user, revoked_at__isnull=True).first()
    if token is None:
        raise NotFound(f"{account.name} has no active token {token_id}.")
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    audit_record(actor=actor, action="org.service_account.token.revoke", org=account.org,
                 address=f"/{account.org.username}", name=account.name, token_id=token.pk)
