"""Request and response shapes of API v1 (DESIGN.md, "REST API (v1)").

Input serializers only check shapes; services check meaning and say which
field is wrong.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from registry.models import AccessLevel


class LoginSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=1024, trim_whitespace=False)
    token_name = serializers.CharField(max_length=100, required=False)


class TokenCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    scope = serializers.ChoiceField(choices=["read", "write"], default="write")
    expires_in_days = serializers.IntegerField(min_value=1, max_value=3650, required=False)


class TokenSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    scope = serializers.CharField()
    expires_at = serializers.DateTimeField(allow_null=True)
    last_used_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    hint = serializers.CharField()


class NewTokenSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    scope = serializers.CharField()
    expires_at = serializers.DateTimeField(allow_null=True)
    token = serializers.CharField(help_text="Shown in this response only.")


class AuthCheckSerializer(serializers.Serializer):
    username = serializers.CharField()
    level = serializers.CharField(allow_null=True)


class MeSerializer(serializers.Serializer):
    username = serializers.CharField()
    email = serializers.EmailField()
    is_staff = serializers.BooleanField()
    date_joined = serializers.DateTimeField()


class ResourceCreateSerializer(serializers.Serializer):
    address = serializers.CharField(max_length=1000)
    type = serializers.CharField()
    config = serializers.JSONField()
    visibility = serializers.CharField(required=False)
    description = serializers.CharField(required=False, allow_blank=True, max_length=10000)


class ResourcePutSerializer(serializers.Serializer):
    type = serializers.CharField(required=False)
    config = serializers.JSONField()
    description = serializers.CharField(required=False, allow_blank=True, max_length=10000)
    visibility = serializers.CharField(required=False, help_text="Used only when PUT creates.")


class ResourcePatchSerializer(serializers.Serializer):
    visibility = serializers.CharField(required=False)
    description = serializers.CharField(required=False, allow_blank=True, max_length=10000)


class ResourceSerializer(serializers.Serializer):
    """A resource as the caller sees it, with their access level."""

    address = serializers.CharField()
    type = serializers.CharField()
    owner = serializers.CharField(source="owner.username")
    visibility = serializers.CharField()
    description = serializers.CharField()
    version = serializers.IntegerField()
    config = serializers.JSONField()
    access_level = serializers.SerializerMethodField()
    url = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_access_level(self, resource: Any) -> str | None:
        level = getattr(resource, "access_level", None)
        return AccessLevel(level).label if level is not None else None

    def to_representation(self, resource: Any) -> dict[str, Any]:
        # The hot path of the API: build the body directly instead of
        # deep-copying eleven field objects per response. Same shape as the
        # declared fields above, which the OpenAPI schema is generated from.
        body = _resource_summary(resource)
        body["config"] = resource.config
        body["access_level"] = self.get_access_level(resource)
        return body


def _resource_summary(resource: Any) -> dict[str, Any]:
    """A resource without its config (lists defer it) or the caller's level."""
    return {
        "address": resource.address,
        "type": resource.type,
        "owner": resource.owner.username,
        "visibility": resource.visibility,
        "description": resource.description,
        "version": resource.version,
        "url": resource.url,
        "created_at": _iso(resource.created_at),
        "updated_at": _iso(resource.updated_at),
    }


def _iso(value: Any) -> str:
    """DRF's datetime format: ISO 8601 with 'Z' for UTC."""
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class ResourceListItemSerializer(ResourceSerializer):
    """List items leave the config out: it may be up to 1 MiB each."""

    config = None  # type: ignore[assignment]
    access_level = None  # type: ignore[assignment]

    def to_representation(self, resource: Any) -> dict[str, Any]:
        return _resource_summary(resource)


class VersionSerializer(serializers.Serializer):
    version = serializers.IntegerField(source="number")
    type = serializers.CharField()
    author = serializers.CharField(source="author.username", allow_null=True, default=None)
    restored_from = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()


class VersionDetailSerializer(VersionSerializer):
    config = serializers.JSONField()


class ShareSerializer(serializers.Serializer):
    users = serializers.ListField(child=serializers.CharField(max_length=254), max_length=100,
                                  required=False)
    teams = serializers.ListField(child=serializers.CharField(max_length=100), max_length=100,
                                  required=False, help_text="teams as org/team")
    level = serializers.ChoiceField(choices=["read", "write"], default="read")


class ShareResultSerializer(serializers.Serializer):
    granted = serializers.ListField(child=serializers.CharField())
    invited = serializers.ListField(child=serializers.CharField())
    teams = serializers.ListField(child=serializers.CharField())


class TransferSerializer(serializers.Serializer):
    to = serializers.CharField(max_length=80, help_text="an organisation you admin, or yourself")


class TeamGrantSerializer(serializers.Serializer):
    team = serializers.SerializerMethodField()
    level = serializers.CharField(source="get_level_display")
    granted_by = serializers.CharField(source="granted_by.username", allow_null=True, default=None)
    created_at = serializers.DateTimeField()

    def get_team(self, grant: Any) -> str:
        return f"{grant.team.org.username}/{grant.team.name}"


class OrgCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True, max_length=10000)


class OrgSerializer(serializers.Serializer):
    name = serializers.CharField(source="username")
    description = serializers.CharField()
    role = serializers.CharField(help_text="your role: admin or member")
    url = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField(source="date_joined")

    def get_url(self, org: Any) -> str:
        from django.conf import settings

        return f"{settings.DEN_PUBLIC_URL}/{org.username}"


class MembersAddSerializer(serializers.Serializer):
    users = serializers.ListField(child=serializers.CharField(max_length=254), max_length=100)
    role = serializers.ChoiceField(choices=["admin", "member"], default="member")


class MembersAddResultSerializer(serializers.Serializer):
    added = serializers.ListField(child=serializers.CharField())
    invited = serializers.ListField(child=serializers.CharField())


class MemberSerializer(serializers.Serializer):
    username = serializers.CharField(source="user.username")
    role = serializers.CharField()
    added_by = serializers.CharField(source="added_by.username", allow_null=True, default=None)
    created_at = serializers.DateTimeField()


class PendingMemberSerializer(serializers.Serializer):
    email = serializers.EmailField()
    role = serializers.CharField()
    invited_by = serializers.CharField(source="invited_by.username", allow_null=True, default=None)
    created_at = serializers.DateTimeField()


class MemberListSerializer(serializers.Serializer):
    members = MemberSerializer(many=True)
    pending = PendingMemberSerializer(many=True)


class TeamCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True, max_length=10000)


class TeamSerializer(serializers.Serializer):
    name = serializers.SerializerMethodField(help_text="org/team, as it is shared with")
    team = serializers.CharField(source="name")
    description = serializers.CharField()
    created_at = serializers.DateTimeField()

    def get_name(self, team: Any) -> str:
        return f"{team.org.username}/{team.name}"


class TeamDetailSerializer(TeamSerializer):
    members = serializers.ListField(child=serializers.CharField())


class TeamMembersAddSerializer(serializers.Serializer):
    users = serializers.ListField(child=serializers.CharField(max_length=254), max_length=100)


class ServiceAccountCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    role = serializers.ChoiceField(choices=["admin", "member"], default="member")
    description = serializers.CharField(required=False, allow_blank=True, max_length=10000)


class ServiceAccountSerializer(serializers.Serializer):
    name = serializers.CharField()
    username = serializers.CharField(source="user.username",
                                     help_text="how it appears as a caller: org:name")
    role = serializers.CharField()
    description = serializers.CharField()
    created_by = serializers.CharField(source="created_by.username", allow_null=True, default=None)
    created_at = serializers.DateTimeField()


class GrantSerializer(serializers.Serializer):
    username = serializers.CharField(source="user.username")
    level = serializers.CharField(source="get_level_display")
    granted_by = serializers.CharField(source="granted_by.username", allow_null=True, default=None)
    created_at = serializers.DateTimeField()


class PendingGrantSerializer(serializers.Serializer):
    email = serializers.EmailField()
    level = serializers.CharField(source="get_level_display")
    invited_by = serializers.CharField(source="invited_by.username", allow_null=True, default=None)
    created_at = serializers.DateTimeField()


class AccessListSerializer(serializers.Serializer):
    owner = serializers.CharField()
    visibility = serializers.CharField()
    grants = GrantSerializer(many=True)
    pending = PendingGrantSerializer(many=True)
    teams = TeamGrantSerializer(many=True)


class SecretValuesSerializer(serializers.Serializer):
    values = serializers.DictField(child=serializers.CharField(allow_blank=True, trim_whitespace=False))


class AuditEventSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    actor = serializers.CharField(source="actor_username")
    action = serializers.CharField()
    address = serializers.CharField()
    data = serializers.JSONField()


class InvitationCreateSerializer(serializers.Serializer):
    email = serializers.EmailField()


class InvitationSerializer(serializers.Serializer):
    email = serializers.EmailField()
    invited_by = serializers.CharField(source="invited_by.username", allow_null=True, default=None)
    expires_at = serializers.DateTimeField()


class InvitationCreatedSerializer(InvitationSerializer):
    url = serializers.CharField()


class InvitationAcceptSerializer(serializers.Serializer):
    token = serializers.CharField(max_length=100)
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=1024, trim_whitespace=False)


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    field = serializers.CharField(allow_null=True)


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()
