"""API v1 views: parse input, call one service or selector, render."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from registry import selectors, services
from registry.access import may_create_in_namespace, namespace_owner
from registry.api import serializers as s
from registry.api.base import (
    AuditPagination,
    DenAPIView,
    ResourceAPIView,
    ResourcePagination,
    VersionPagination,
)
from registry.errors import AlreadyExists, InvalidInput, NotFound, PermissionDenied, VersionConflict
from registry.models import AccessLevel
from registry.throttling import LoginRateThrottle
from registry.validation import parse_address

READ, WRITE, OWNER = AccessLevel.READ, AccessLevel.WRITE, AccessLevel.OWNER
_ETAG = re.compile(r'\s*(?:W/)?"?(\d+)"?\s*')


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in {"1", "true", "yes"}


# Auth -----------------------------------------------------------------------


class LoginView(DenAPIView):
    """Exchange a username and password for a new token (used by ``den login``)."""

    allow_anonymous = True
    authentication_classes: list[Any] = []
    throttle_classes = [LoginRateThrottle]
    throttle_scope = "login"

    @extend_schema(request=s.LoginSerializer, responses={201: s.NewTokenSerializer})
    def post(self, request: Request) -> Response:
        data = self.parse(s.LoginSerializer)
        token, plain = services.token_login(
            username=data["username"], password=data["password"], token_name=data.get("token_name")
        )
        body = s.NewTokenSerializer({**token.__dict__, "token": plain}).data
        return Response(body, status=status.HTTP_201_CREATED)


class AuthCheckView(DenAPIView):
    """May this token act on this address at this level? Asked by node daemons."""

    allow_cluster_token = True

    @extend_schema(
        parameters=[
            OpenApiParameter("address", str, required=False),
            OpenApiParameter("level", str, enum=["read", "write", "owner"], required=False),
        ],
        responses={200: s.AuthCheckSerializer},
    )
    def get(self, request: Request) -> Response:
        address = request.query_params.get("address")
        level_name = request.query_params.get("level", "read")
        if level_name not in ("read", "write", "owner"):
            raise InvalidInput("level must be read, write or owner.", field="level")
        if not address:
            return Response({"username": request.user.username, "level": None})
        level = selectors.resource_access_check(
            caller=self.caller, address=address, level=AccessLevel.from_name(level_name)
        )
        return Response({"username": request.user.username, "level": level})


class MeView(DenAPIView):
    @extend_schema(responses={200: s.MeSerializer})
    def get(self, request: Request) -> Response:
        return Response(s.MeSerializer(request.user).data)


# Tokens -----------------------------------------------------------------------


class TokenListView(DenAPIView):
    @extend_schema(responses={200: s.TokenSerializer(many=True)})
    def get(self, request: Request) -> Response:
        tokens = selectors.token_list(user=request.user)
        return Response(s.TokenSerializer(tokens, many=True).data)

    @extend_schema(request=s.TokenCreateSerializer, responses={201: s.NewTokenSerializer})
    def post(self, request: Request) -> Response:
        data = self.parse(s.TokenCreateSerializer)
        token, plain = services.token_create_own(
            user=request.user,
            name=data["name"],
            scope=data["scope"],
            expires_in_days=data.get("expires_in_days"),
        )
        body = s.NewTokenSerializer({**token.__dict__, "token": plain}).data
        return Response(body, status=status.HTTP_201_CREATED)


class TokenCurrentView(DenAPIView):
    """Revoke the token this request is made with (``den logout``). A
    read-scoped token may revoke itself: that only takes power away."""

    allow_read_scope = True

    @extend_schema(responses={204: None})
    def delete(self, request: Request) -> Response:
        token = self.caller.token
        if token is None:
            raise InvalidInput(
                "This request is signed in with a session, not a token: there is no token "
                "to revoke. Sign out of the web UI instead."
            )
        services.token_revoke(user=request.user, token_id=token.pk)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TokenDetailView(DenAPIView):
    @extend_schema(responses={204: None})
    def delete(self, request: Request, token_id: int) -> Response:
        services.token_revoke(user=request.user, token_id=token_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


# Resources ----------------------------------------------------------------------


class ResourceListView(DenAPIView):
    allow_anonymous_read = True

    @extend_schema(
        parameters=[
            OpenApiParameter("type", str, required=False),
            OpenApiParameter("owner", str, required=False),
            OpenApiParameter("q", str, required=False, description="text in name or description"),
            OpenApiParameter("shared_with_me", bool, required=False),
            OpenApiParameter("visibility", str, required=False),
            OpenApiParameter("org", str, required=False, description="only this org's resources"),
            OpenApiParameter("cursor", str, required=False),
            OpenApiParameter("limit", int, required=False),
        ],
        responses={200: s.ResourceListItemSerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        resources = selectors.resource_list(
            caller=self.caller,
            type=params.get("type"),
            owner=params.get("owner"),
            q=params.get("q"),
            shared_with_me=_truthy(params.get("shared_with_me")),
            visibility=params.get("visibility"),
            org=params.get("org"),
        )
        return self.paginate(resources, s.ResourceListItemSerializer, ResourcePagination)

    @extend_schema(request=s.ResourceCreateSerializer, responses={201: s.ResourceSerializer})
    def post(self, request: Request) -> Response:
        data = self.parse(s.ResourceCreateSerializer)
        owner, name = parse_address(data["address"])
        if not may_create_in_namespace(self.caller, owner):
            raise PermissionDenied(
                f"You can create resources only under /{request.user.username}/ and under "
                "organisations you admin.", field="address"
            )
        resource = services.resource_create(
            actor=request.user,
            owner=namespace_owner(self.caller, owner),
            name=name,
            type=data["type"],
            config=data["config"],
            visibility=data.get("visibility", "private"),
            description=data.get("description", ""),
        )
        resource.access_level = OWNER
        return _resource_response(resource, status.HTTP_201_CREATED)


def _resource_response(resource: Any, code: int = status.HTTP_200_OK) -> Response:
    return Response(
        s.ResourceSerializer(resource).data, status=code, headers={"ETag": f'"{resource.version}"'}
    )


def _if_match(request: Request) -> int | None:
    header = request.headers.get("If-Match")
    if header is None or header.strip() == "*":
        return None
    match = _ETAG.fullmatch(header)
    if not match:
        raise InvalidInput('If-Match must be a version ETag such as "3".', field="If-Match")
    return int(match.group(1))


class ResourceDetailView(ResourceAPIView):
    @extend_schema(responses={200: s.ResourceSerializer})
    def get(self, request: Request, address: str) -> Response:
        resource = self.resource(READ)
        if request.headers.get("If-None-Match", "").strip('W/"') == str(resource.version):
            return Response(status=status.HTTP_304_NOT_MODIFIED, headers={"ETag": f'"{resource.version}"'})
        return _resource_response(resource)

    @extend_schema(request=s.ResourcePutSerializer, responses={200: s.ResourceSerializer, 201: s.ResourceSerializer})
    def put(self, request: Request, address: str) -> Response:
        data = self.parse(s.ResourcePutSerializer)
        if_match = _if_match(request)
        try:
            resource = self.resource(WRITE)
        except NotFound:
            owner, name = parse_address(address)
            if not may_create_in_namespace(self.caller, owner):
                raise
            if if_match is not None:
                raise VersionConflict(f"/{owner}/{name} does not exist, so If-Match cannot match.") from None
            try:
                resource = services.resource_create(
                    actor=request.user,
                    owner=namespace_owner(self.caller, owner),
                    name=name,
                    type=data.get("type", "resource"),
                    config=data["config"],
                    visibility=data.get("visibility", "private"),
                    description=data.get("description", ""),
                )
                resource.access_level = OWNER
                return _resource_response(resource, status.HTTP_201_CREATED)
            except AlreadyExists:
                resource = self.resource(WRITE)  # created concurrently: update it instead
        resource = services.resource_update_config(
            actor=request.user,
            resource=resource,
            config=data["config"],
            type=data.get("type"),
            description=data.get("description"),
            if_match=if_match,
        )
        return _resource_response(resource)

    @extend_schema(request=s.ResourcePatchSerializer, responses={200: s.ResourceSerializer})
    def patch(self, request: Request, address: str) -> Response:
        data = self.parse(s.ResourcePatchSerializer)
        if not data:
            raise InvalidInput("Send visibility and/or description to change.")
        resource = self.resource(OWNER if "visibility" in data else WRITE)
        resource = services.resource_update_meta(
            actor=request.user,
            resource=resource,
            visibility=data.get("visibility"),
            description=data.get("description"),
        )
        return _resource_response(resource)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, address: str) -> Response:
        services.resource_delete(actor=request.user, resource=self.resource(OWNER))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ResourceVersionListView(ResourceAPIView):
    @extend_schema(responses={200: s.VersionSerializer(many=True)})
    def get(self, request: Request, address: str) -> Response:
        versions = selectors.resource_versions(resource=self.resource(READ))
        return self.paginate(versions, s.VersionSerializer, VersionPagination)


def _version_number(raw: str) -> int:
    if not raw.isdigit() or len(raw) > 9:
        raise InvalidInput(f"'{raw}' is not a version number.", field="version")
    return int(raw)


class ResourceVersionDetailView(ResourceAPIView):
    @extend_schema(responses={200: s.VersionDetailSerializer})
    def get(self, request: Request, address: str, number: str) -> Response:
        version = selectors.resource_version_get(
            resource=self.resource(READ), number=_version_number(number)
        )
        return Response(s.VersionDetailSerializer(version).data)


class ResourceVersionRestoreView(ResourceAPIView):
    allow_anonymous_read = False

    @extend_schema(request=None, responses={201: s.ResourceSerializer})
    def post(self, request: Request, address: str, number: str) -> Response:
        resource = services.resource_restore_version(
            actor=request.user, resource=self.resource(WRITE), number=_version_number(number)
        )
        return _resource_response(resource, status.HTTP_201_CREATED)


class ResourceAccessView(ResourceAPIView):
    allow_anonymous_read = False

    @extend_schema(responses={200: s.AccessListSerializer})
    def get(self, request: Request, address: str) -> Response:
        resource = self.resource(WRITE)
        access = selectors.resource_access_list(resource=resource)
        body = {"owner": resource.owner.username, "visibility": resource.visibility, **access}
        return Response(s.AccessListSerializer(body).data)

    @extend_schema(request=s.ShareSerializer, responses={200: s.ShareResultSerializer})
    def put(self, request: Request, address: str) -> Response:
        data = self.parse(s.ShareSerializer)
        result = services.resource_share(
            actor=request.user, resource=self.resource(WRITE), users=data.get("users"),
            teams=data.get("teams"), level=data["level"]
        )
        return Response(result)


class ResourceAccessDetailView(ResourceAPIView):
    allow_anonymous_read = False

    @extend_schema(responses={204: None})
    def delete(self, request: Request, address: str, who: str) -> Response:
        services.resource_revoke(actor=request.user, resource=self.resource(WRITE), who=who)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ResourceTeamAccessView(ResourceAPIView):
    """``DELETE .../-/access/team/<org>/<team>``: take a team's grant away."""

    allow_anonymous_read = False

    @extend_schema(responses={204: None})
    def delete(self, request: Request, address: str, org: str, team: str) -> Response:
        services.resource_revoke_team(actor=request.user, resource=self.resource(WRITE),
                                      org=org, team=team)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ResourceTransferView(ResourceAPIView):
    """``POST .../-/transfer {"to": "<org>"}``: move a resource you own to an
    organisation you admin; grants, versions and audit stay with it."""

    allow_anonymous_read = False

    @extend_schema(request=s.TransferSerializer, responses={200: s.ResourceSerializer})
    def post(self, request: Request, address: str) -> Response:
        data = self.parse(s.TransferSerializer)
        resource = services.resource_transfer(actor=request.user, resource=self.resource(OWNER),
                                              to=data["to"])
        resource.access_level = OWNER
        return _resource_response(resource)


class ResourceSecretView(ResourceAPIView):
    """Secret values: only for write-access holders, and every read is audited."""

    allow_anonymous_read = False

    @extend_schema(responses={200: s.SecretValuesSerializer})
    def get(self, request: Request, address: str) -> Response:
        values = services.secret_read_values_audited(actor=request.user, resource=self.resource(WRITE))
        response = Response({"values": values})
        response["Cache-Control"] = "no-store"
        return response

    @extend_schema(request=s.SecretValuesSerializer, responses={204: None})
    def put(self, request: Request, address: str) -> Response:
        if not isinstance(request.data, dict) or "values" not in request.data:
            raise InvalidInput("Send {\"values\": {\"NAME\": \"value\", ...}}.", field="values")
        services.secret_set_values(
            actor=request.user, resource=self.resource(WRITE), values=request.data["values"]
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


# Audit ----------------------------------------------------------------------------


class AuditListView(ResourceAPIView):
    """A resource's audit log for its writers; without an address, my own actions."""

    allow_anonymous_read = False

    @extend_schema(
        parameters=[OpenApiParameter("address", str, required=False),
                    OpenApiParameter("org", str, required=False,
                                     description="an organisation's log, for its admins")],
        responses={200: s.AuditEventSerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        address = request.query_params.get("address")
        org_name = request.query_params.get("org")
        resource = org = None
        if address:
            self.kwargs["address"] = address
            resource = self.resource(WRITE)
        elif org_name:
            org = selectors.org_get(caller=self.caller, name=org_name, admin=True)
        events = selectors.audit_list(caller=self.caller, resource=resource, org=org)
        return self.paginate(events, s.AuditEventSerializer, AuditPagination)


# Invitations ----------------------------------------------------------------------


class InvitationListView(DenAPIView):
    """Administrators invite people by email."""

    @extend_schema(request=s.InvitationCreateSerializer, responses={201: s.InvitationCreatedSerializer})
    def post(self, request: Request) -> Response:
        if not request.user.is_staff:
            raise PermissionDenied("Only administrators invite people without sharing a resource.")
        data = self.parse(s.InvitationCreateSerializer)
        invitation = services.invitation_create(actor=request.user, email=data["email"])
        body = s.InvitationCreatedSerializer(
            {**invitation.__dict__, "invited_by": request.user,
             "url": services.invitation_url(invitation.plain_token)}
        ).data
        return Response(body, status=status.HTTP_201_CREATED)


class InvitationDetailView(DenAPIView):
    allow_anonymous = True

    @extend_schema(responses={200: s.InvitationSerializer})
    def get(self, request: Request, token: str) -> Response:
        invitation = services.invitation_get(token=token)
        return Response(s.InvitationSerializer(invitation).data)


class InvitationAcceptView(DenAPIView):
    allow_anonymous = True
    authentication_classes: list[Any] = []
    throttle_classes = [LoginRateThrottle]
    throttle_scope = "login"

    @extend_schema(request=s.InvitationAcceptSerializer, responses={201: s.MeSerializer})
    def post(self, request: Request) -> Response:
        data = self.parse(s.InvitationAcceptSerializer)
        user = services.invitation_accept(
            token=data["token"], username=data["username"], password=data["password"]
        )
        return Response(s.MeSerializer(user).data, status=status.HTTP_201_CREATED)


# Code bundles -------------------------------------------------------------------


class CodeBundleView(DenAPIView):
    """``HEAD /code/<sha256>``: does den keep this bundle? ``PUT``: keep it (the
    raw .tar.gz; its SHA-256 must match). Nobody reads one back here: only a
    cluster's daemon, through the deployment of a function that runs there."""

    def max_body_bytes(self) -> int:
        return int(settings.DEN_CODE_BUNDLE_MAX_MB) * 1024 * 1024

    @extend_schema(responses={200: None, 404: None})
    def head(self, request: Request, sha: str) -> Response:
        found = selectors.code_bundle_exists(sha=sha)
        return Response(status=status.HTTP_200_OK if found else status.HTTP_404_NOT_FOUND)

    @extend_schema(request={"application/gzip": bytes}, responses={201: None, 200: None})
    def put(self, request: Request, sha: str) -> Response:
        data = request._request.read(self.max_body_bytes() + 1)
        created = services.code_bundle_store(actor=request.user, sha=sha, data=data)
        return Response({"sha256": sha, "created": created},
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)



# Organisations ------------------------------------------------------------------------


def _org_body(org: Any) -> dict[str, Any]:
    return dict(s.OrgSerializer(org).data)


class OrgListView(DenAPIView):
    """``GET``: the organisations I belong to. ``POST``: make one; I become its admin."""

    @extend_schema(responses={200: s.OrgSerializer(many=True)})
    def get(self, request: Request) -> Response:
        return Response(s.OrgSerializer(selectors.org_list(caller=self.caller), many=True).data)

    @extend_schema(request=s.OrgCreateSerializer, responses={201: s.OrgSerializer})
    def post(self, request: Request) -> Response:
        data = self.parse(s.OrgCreateSerializer)
        org = services.org_create(actor=request.user, name=data["name"],
                                  description=data.get("description", ""))
        org.role = "admin"
        return Response(_org_body(org), status=status.HTTP_201_CREATED)


class OrgDetailView(DenAPIView):
    @extend_schema(responses={200: s.OrgSerializer})
    def get(self, request: Request, org: str) -> Response:
        return Response(_org_body(selectors.org_get(caller=self.caller, name=org)))


class OrgMemberListView(DenAPIView):
    """``GET``: members and invitations (any member). ``PUT``: add people or
    change their role (admins)."""

    @extend_schema(responses={200: s.MemberListSerializer})
    def get(self, request: Request, org: str) -> Response:
        found = selectors.org_get(caller=self.caller, name=org)
        return Response(s.MemberListSerializer(selectors.org_members(org=found)).data)

    @extend_schema(request=s.MembersAddSerializer, responses={200: s.MembersAddResultSerializer})
    def put(self, request: Request, org: str) -> Response:
        found = selectors.org_get(caller=self.caller, name=org, admin=True)
        data = self.parse(s.MembersAddSerializer)
        return Response(services.org_members_add(actor=request.user, org=found,
                                                 users=data["users"], role=data["role"]))


class OrgMemberDetailView(DenAPIView):
    @extend_schema(responses={204: None})
    def delete(self, request: Request, org: str, who: str) -> Response:
        found = selectors.org_get(caller=self.caller, name=org, admin=True)
        services.org_member_remove(actor=request.user, org=found, who=who)
        return Response(status=status.HTTP_204_NO_CONTENT)


def _team_body(team: Any, *, members: bool = False) -> dict[str, Any]:
    if members:
        team.members_list = [u.username for u in selectors.team_members(team=team)]
        body = dict(s.TeamSerializer(team).data)
        body["members"] = team.members_list
        return body
    return dict(s.TeamSerializer(team).data)


class OrgTeamListView(DenAPIView):
    @extend_schema(responses={200: s.TeamSerializer(many=True)})
    def get(self, request: Request, org: str) -> Response:
        found = selectors.org_get(caller=self.caller, name=org)
        return Response(s.TeamSerializer(selectors.org_teams(org=found), many=True).data)

    @extend_schema(request=s.TeamCreateSerializer, responses={201: s.TeamSerializer})
    def post(self, request: Request, org: str) -> Response:
        found = selectors.org_get(caller=self.caller, name=org, admin=True)
        data = self.parse(s.TeamCreateSerializer)
        team = services.team_create(actor=request.user, org=found, name=data["name"],
                                    description=data.get("description", ""))
        return Response(_team_body(team), status=status.HTTP_201_CREATED)


class OrgTeamDetailView(DenAPIView):
    @extend_schema(responses={200: s.TeamDetailSerializer})
    def get(self, request: Request, org: str, team: str) -> Response:
        found = selectors.org_get(caller=self.caller, name=org)
        return Response(_team_body(selectors.org_team_get(org=found, name=team), members=True))

    @extend_schema(responses={204: None})
    def delete(self, request: Request, org: str, team: str) -> Response:
        found = selectors.org_get(caller=self.caller, name=org, admin=True)
        services.team_delete(actor=request.user, team=selectors.org_team_get(org=found, name=team))
        return Response(status=status.HTTP_204_NO_CONTENT)


class OrgTeamMemberListView(DenAPIView):
    @extend_schema(request=s.TeamMembersAddSerializer, responses={200: s.TeamDetailSerializer})
    def put(self, request: Request, org: str, team: str) -> Response:
        found = selectors.org_get(caller=self.caller, name=org, admin=True)
        data = self.parse(s.TeamMembersAddSerializer)
        found_team = selectors.org_team_get(org=found, name=team)
        services.team_members_add(actor=request.user, team=found_team, users=data["users"])
        return Response(_team_body(found_team, members=True))


class OrgTeamMemberDetailView(DenAPIView):
    @extend_schema(responses={204: None})
    def delete(self, request: Request, org: str, team: str, username: str) -> Response:
        found = selectors.org_get(caller=self.caller, name=org, admin=True)
        services.team_member_remove(actor=request.user,
                                    team=selectors.org_team_get(org=found, name=team),
                                    username=username)
        return Response(status=status.HTTP_204_NO_CONTENT)


class OrgServiceAccountListView(DenAPIView):
    """An organisation's service accounts: admins list, create and delete them."""

    @extend_schema(responses={200: s.ServiceAccountSerializer(many=True)})
    def get(self, request: Request, org: str) -> Response:
        found = selectors.org_get(caller=self.caller, name=org, admin=True)
        accounts = selectors.service_accounts(org=found)
        return Response(s.ServiceAccountSerializer(accounts, many=True).data)

    @extend_schema(request=s.ServiceAccountCreateSerializer,
                   responses={201: s.ServiceAccountSerializer})
    def post(self, request: Request, org: str) -> Response:
        found = selectors.org_get(caller=self.caller, name=org, admin=True)
        data = self.parse(s.ServiceAccountCreateSerializer)
        account = services.service_account_create(
            actor=request.user, org=found, name=data["name"], role=data["role"],
            description=data.get("description", ""))
        account = selectors.service_account_get(org=found, name=account.name)
        return Response(s.ServiceAccountSerializer(account).data, status=status.HTTP_201_CREATED)


class OrgServiceAccountDetailView(DenAPIView):
    @extend_schema(responses={200: s.ServiceAccountSerializer})
    def get(self, request: Request, org: str, name: str) -> Response:
        found = selectors.org_get(caller=self.caller, name=org, admin=True)
        account = selectors.service_account_get(org=found, name=name)
        return Response(s.ServiceAccountSerializer(account).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, org: str, name: str) -> Response:
        found = selectors.org_get(caller=self.caller, name=org, admin=True)
        services.service_account_delete(
            actor=request.user, account=selectors.service_account_get(org=found, name=name))
        return Response(status=status.HTTP_204_NO_CONTENT)


class OrgServiceAccountTokenListView(DenAPIView):
    @extend_schema(responses={200: s.TokenSerializer(many=True)})
    def get(self, request: Request, org: str, name: str) -> Response:
        found = selectors.org_get(caller=self.caller, name=org, admin=True)
        account = selectors.service_account_get(org=found, name=name)
        return Response(s.TokenSerializer(selectors.service_account_tokens(account=account),
                                          many=True).data)

    @extend_schema(request=s.TokenCreateSerializer, responses={201: s.NewTokenSerializer})
    def post(self, request: Request, org: str, name: str) -> Response:
        found = selectors.org_get(caller=self.caller, name=org, admin=True)
        account = selectors.service_account_get(org=found, name=name)
        data = self.parse(s.TokenCreateSerializer)
        token, plain = services.service_account_token_create(
            actor=request.user, account=account, name=data["name"], scope=data["scope"],
            expires_in_days=data.get("expires_in_days"))
        body = s.NewTokenSerializer({**token.__dict__, "token": plain}).data
        return Response(body, status=status.HTTP_201_CREATED)


class OrgServiceAccountTokenDetailView(DenAPIView):
    @extend_schema(responses={204: None})
    def delete(self, request: Request, org: str, name: str, token_id: int) -> Response:
        found = selectors.org_get(caller=self.caller, name=org, admin=True)
        account = selectors.service_account_get(org=found, name=name)
        services.service_account_token_revoke(actor=request.user, account=account,
                                              token_id=token_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
