"""The registry's data model, one module per concept."""

from registry.models.audit import AuditEvent
from registry.models.code import CodeBundle
from registry.models.orgs import (
    Membership,
    OrgRole,
    PendingMembership,
    ServiceAccount,
    Team,
    TeamGrant,
    TeamMember,
)
from registry.models.resources import Resource, ResourceType, Visibility
from registry.models.secrets import SecretValue
from registry.models.sharing import AccessGrant, AccessLevel, Invitation, PendingGrant
from registry.models.tokens import ApiToken, TokenScope
from registry.models.users import User, UserKind
from registry.models.versions import ResourceVersion

__all__ = [
    "AccessGrant",
    "AccessLevel",
    "ApiToken",
    "AuditEvent",
    "CodeBundle",
    "Invitation",
    "Membership",
    "OrgRole",
    "PendingGrant",
    "PendingMembership",
    "Resource",
    "ResourceType",
    "ResourceVersion",
    "SecretValue",
    "ServiceAccount",
    "Team",
    "TeamGrant",
    "TeamMember",
    "TokenScope",
    "User",
    "UserKind",
    "Visibility",
]
