"""Writes of the Runhouse-compatible API. Each one calls den's own services
(``registry.services``, ``compute.services``), which write the audit rows;
callers have reached the resource through ``registry.access`` first."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from django.conf import settings
from django.db import transaction

from registry import credentials
from registry import services as registry_services
from registry.errors import InvalidInput, NotAuthenticated, NotFound
from registry.models import AccessLevel, ApiToken, Resource
from registry.models.users import USERNAME_PATTERN
from rhcompat import mapping
from rhcompat.models import ClusterSubToken, RunhouseSettings

#: Never stored: credentials, and the server URL (den always answers its own).
IGNORED_KEYS = frozenset({"token", "username", "secrets", "api_server_url"})
MAX_SETTINGS = 50
MAX_SETTING_LENGTH = 1000


# Settings ----------------------------------------------------------------------


@transaction.atomic
def settings_update(*, user: Any, config: Any) -> dict[str, Any]:
    """Store the runhouse defaults a client uploads (``default_folder``,
    ``default_autostop``, ``launcher``, or any other key a user set in their
    runhouse config); credentials and ``api_server_url`` are dropped."""
    if not isinstance(config, dict):
        raise InvalidInput("The body must be a JSON object of settings.", field="config")
    cleaned: dict[str, Any] = {}
    for key, value in config.items():
        if key in IGNORED_KEYS:
            continue
        if len(key) > 100:
            raise InvalidInput("A setting's name is at most 100 characters.", field=key[:100])
        if value is not None and not isinstance(value, str | int | float | bool):
            raise InvalidInput(f"{key} must be a string, number or true/false.", field=key)
        if isinstance(value, str) and len(value) > MAX_SETTING_LENGTH:
            raise InvalidInput(f"{key} is at most {MAX_SETTING_LENGTH} characters.", field=key)
        cleaned[key] = value
    row, _ = RunhouseSettings.objects.select_for_update().get_or_create(user=user)
    merged = {**row.config, **cleaned}
    if len(merged) > MAX_SETTINGS:
        raise InvalidInput(f"den keeps at most {MAX_SETTINGS} runhouse settings.", field="config")
    if merged != row.config:
        row.config = merged
        row.save(update_fields=["config", "updated_at"])
        registry_services.audit_record(actor=user, action="runhouse.settings",
                                       keys=sorted(cleaned))
    return merged


# Cluster sub-tokens ----------------------------------------------------------------


def _derive(parent: ApiToken, namespace: str) -> str:
    """The sub-token of ``parent`` for ``namespace``: an HMAC under the server's
    key, so minting again gives the same token (runhouse expects one token per
    user and namespace) while only its hash is ever stored."""
    message = f"rhcompat-subtoken\0{parent.token_hash}\0{namespace.lower()}".encode()
    digest = hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).digest()
    return credentials.token_from_digest(digest)


@transaction.atomic
def subtoken_mint(*, parent: ApiToken, namespace: Any, username: Any = None) -> str:
    """The cluster sub-token of the caller's token for clusters in ``namespace``
    (``POST /rh/auth/token/cluster``). Only for the caller themself."""
    if username is not None and username != parent.user.username:
        raise InvalidInput("A cluster token is minted only for yourself: send your own username.",
                           field="username")
    if not isinstance(namespace, str) or not USERNAME_PATTERN.match(namespace):
        raise InvalidInput("resource_address must be the owner of the cluster, such as 'alice'.",
                           field="resource_address")
    plain = _derive(parent, namespace)
    _, created = ClusterSubToken.objects.get_or_create(
        token_hash=credentials.hash_token(plain),
        defaults={"parent": parent, "namespace": namespace, "hint": credentials.token_hint(plain)},
    )
    if created:
        registry_services.audit_record(actor=parent.user, action="token.subtoken",
                                       token_id=parent.pk, namespace=namespace)
    return plain


def subtoken_authenticate(*, plain: str) -> ClusterSubToken | None:
    """The live sub-token for ``plain``, None if there is no such sub-token,
    or NotAuthenticated when its parent token no longer works."""
    if not credentials.token_is_well_formed(plain):
        return None
    row = (
        ClusterSubToken.objects.select_related("parent__user")
        .filter(token_hash=credentials.hash_token(plain))
        .first()
    )
    if row is None:
        return None
    parent = row.parent
    if (not parent.is_active or parent.cluster_id is not None or not parent.user.is_active):
        raise NotAuthenticated(
            "This cluster token's parent token was revoked or expired; log in again.",
            code="authentication_failed",
        )
    return row


# Resources -------------------------------------------------------------------------


def _unchanged(resource: Resource, envelope: mapping.Envelope, visibility: str) -> bool:
    resource_type, data = mapping.runhouse_view(resource.type, resource.config)
    return (resource_type, data) == (envelope.resource_type, envelope.data) and (
        visibility == resource.visibility
    )


@transaction.atomic
def resource_save(
    *, actor: Any, envelope: mapping.Envelope, resource: Resource | None = None, name: str = ""
) -> tuple[Resource, bool]:
    """Create (``resource`` None: ``name`` in the actor's namespace) or update a
    resource from a runhouse envelope; answers the resource and whether anything
    changed (nothing: the client's 422).

    Visibility is the owner's to change. A writer who is not the owner sends
    ``private`` on every save of a loaded cluster or secret (runhouse drops the
    visibility when it loads those), so their visibility is ignored rather than
    the whole save refused.
    """
    den_type = mapping.den_type_for(envelope.resource_type)
    config = mapping.den_config_for(envelope)
    if resource is None:
        created = registry_services.resource_create(
            actor=actor, name=name, type=den_type, config=config,
            visibility=envelope.visibility or "private",
        )
        created.access_level = AccessLevel.OWNER
        return created, True
    is_owner = resource.owner_id == actor.pk
    visibility = envelope.visibility if (is_owner and envelope.visibility) else resource.visibility
    if _unchanged(resource, envelope, visibility):
        return resource, False
    level = resource.access_level
    updated = registry_services.resource_update_config(
        actor=actor, resource=resource, config=config, type=den_type
    )
    if visibility != updated.visibility:
        updated = registry_services.resource_update_meta(
            actor=actor, resource=updated, visibility=visibility
        )
    updated.access_level = level
    return updated, True


@transaction.atomic
def resource_set_access(
    *, actor: Any, resource: Resource, users: Any, access_level: Any
) -> dict[str, Any]:
    """Runhouse's ``PUT /resource/{uri}/users/access``: grant ``read`` or
    ``write`` to usernames or emails, or with ``denied`` take access away.
    ``users`` null changes nothing (runhouse sends it with a visibility-only
    share, whose visibility came with the save before it)."""
    if access_level not in ("read", "write", "denied"):
        raise InvalidInput("access_level must be 'read', 'write' or 'denied'.",
                           field="access_level")
    if users is None or users == []:
        return {"added_users": {}, "new_users": {}, "valid_users": []}
    if not isinstance(users, list) or not all(isinstance(u, str) for u in users) or len(users) > 100:
        raise InvalidInput("users must be a list of up to 100 usernames or emails.", field="users")
    if access_level == "denied":
        removed = []
        for who in dict.fromkeys(u.strip() for u in users):
            try:
                registry_services.resource_revoke(actor=actor, resource=resource, who=who)
                removed.append(who)
            except NotFound:
                continue  # nothing to take away: denied already
        return {"removed_users": removed, "added_users": {}, "new_users": {},
                "valid_users": removed}
    result = registry_services.resource_share(
        actor=actor, resource=resource, users=users, level=access_level
    )
    return {
        "added_users": {name: access_level for name in result["granted"]},
        "new_users": {email: access_level for email in result["invited"]},
        "valid_users": [*result["granted"], *result["invited"]],
    }


# Clusters den does not manage ------------------------------------------------------------


def cluster_report_status(*, actor: Any, resource: Resource, body: Any) -> dict[str, Any]:
    """A runhouse daemon's status post, recorded as a "reported" cluster."""
    from compute import services as compute_services

    if not isinstance(body, dict):
        raise InvalidInput("The body must be a JSON object with daemon_status.", field="body")
    status = mapping.den_status_for_daemon(body.get("daemon_status"))
    if status is None:
        raise InvalidInput(
            f"daemon_status must be one of {', '.join(sorted(mapping.DAEMON_STATUSES))}.",
            field="daemon_status",
        )
    info = body.get("resource_info")
    processes = body.get("processes")
    state = compute_services.cluster_record_report(
        actor=actor, resource=resource, status=status,
        daemon_status=body["daemon_status"],
        processes=len(processes) if isinstance(processes, dict | list) else None,
        server_pid=info.get("server_pid") if isinstance(info, dict) else None,
    )
    return {"cluster_status": mapping.runhouse_cluster_status(state.status),
            "cluster_status_last_checked": _checked(state.last_heartbeat_at)}


def cluster_report_logs(*, actor: Any, resource: Resource, body: Any) -> None:
    """A runhouse daemon's log push, kept as events of the reported cluster."""
    from compute import services as compute_services

    if not isinstance(body, dict) or not isinstance(body.get("logs"), str | list):
        raise InvalidInput("The body must be a JSON object with logs.", field="logs")
    logs = body["logs"]
    text = logs if isinstance(logs, str) else "\n".join(str(line) for line in logs)
    compute_services.cluster_record_report_logs(
        actor=actor, resource=resource, text=text,
        file_name=str(body.get("file_name") or "")[:200],
    )


def _checked(when: Any) -> str | None:
    """Runhouse's timestamp format for ``cluster_status_last_checked``."""
    return str(when) if when is not None else None
