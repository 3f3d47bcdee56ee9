"""The ``/rh/`` endpoints (runhouse-compat-contract.md): parse runhouse's
request, call one service or selector, answer in runhouse's shape with
runhouse's status codes."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from registry import services as registry_services
from registry.access import may_create_in_namespace
from registry.errors import InvalidInput, NotFound, PermissionDenied
from registry.models import AccessLevel, Resource
from registry.validation import parse_address
from rhcompat import mapping, selectors
from rhcompat import services as rh_services
from rhcompat.base import ReadTokenMayPost, RunhouseAPIView, RunhouseResourceView, ok

READ, WRITE, OWNER = AccessLevel.READ, AccessLevel.WRITE, AccessLevel.OWNER


def _envelope(resource: Resource) -> dict[str, Any]:
    return mapping.envelope_for(
        address=resource.address, den_type=resource.type, config=resource.config,
        visibility=resource.visibility, owner=resource.owner.username,
        access_level=AccessLevel(resource.access_level or 0).label,
    )


def _unchanged() -> Response:
    """Runhouse's answer to a save that changes nothing: 422, and no new version."""
    return Response({"detail": "No changes to save.", "data": {}}, status=422)


def _parse_envelope(body: Any) -> mapping.Envelope:
    try:
        return mapping.parse_envelope(body)
    except mapping.MappingError as exc:
        raise InvalidInput(exc.message, field=exc.field) from None


# Users ------------------------------------------------------------------------------


class UserView(RunhouseAPIView):
    """``GET /user``: who the token belongs to, and their runhouse defaults.
    A runhouse daemon asks it with callers' sub-tokens to learn their names."""

    allow_subtoken = True

    @extend_schema(exclude=True)
    def get(self, request: Request) -> Response:
        user = request.user
        if self.subtoken is not None:
            return ok({"username": user.username})
        return ok({"username": user.username, "email": user.email,
                   "config": selectors.user_settings(user=user)})


class UserConfigView(RunhouseAPIView):
    """``PUT /user/config``: store the client's defaults."""

    @extend_schema(exclude=True)
    def put(self, request: Request) -> Response:
        rh_services.settings_update(user=request.user, config=self.body())
        return ok({"config": selectors.user_settings(user=request.user)})

    @extend_schema(exclude=True)
    def get(self, request: Request) -> Response:
        return ok({"config": selectors.user_settings(user=request.user)})


# Resources ----------------------------------------------------------------------------


class ResourceListView(RunhouseAPIView):
    """``GET /resource`` (list, with runhouse's filters) and ``POST /resource``
    (create, or save over a resource the caller may write)."""

    @extend_schema(exclude=True)
    def get(self, request: Request) -> Response:
        params = request.query_params
        statuses: tuple[str, ...] | None = None
        for key in ("cluster_status", "daemon_status"):
            if params.get(key):
                statuses = (statuses or ()) + mapping.den_statuses_for_filter(params[key])
        since = params.get("since")
        if since is not None and not since.isdigit():
            raise InvalidInput("since must be a number of seconds.", field="since")
        limit = params.get("limit", str(selectors.MAX_LIST))
        if not limit.isdigit():
            raise InvalidInput("limit must be a whole number.", field="limit")
        rows = selectors.resource_list(
            caller=self.caller, resource_type=params.get("resource_type") or None,
            owned=mapping.truthy(params.get("owned")), statuses=statuses,
            since=int(since) if since is not None else None, limit=int(limit),
        )
        items = []
        for resource, state in rows:
            item = _envelope(resource)
            if resource.type == "cluster":
                item["cluster_status"] = mapping.runhouse_cluster_status(
                    state.status if state is not None else None)
                item["cluster_status_last_checked"] = (
                    str(state.last_heartbeat_at) if state is not None and state.last_heartbeat_at
                    else None)
            items.append(item)
        return ok(items)

    @extend_schema(exclude=True)
    def post(self, request: Request) -> Response:
        envelope = _parse_envelope(self.body())
        if not envelope.name:
            raise InvalidInput("name must be the resource's address, such as /alice/box.",
                               field="name")
        address = mapping.uri_to_address(envelope.name)
        owner, name = parse_address(address, field="name")
        if may_create_in_namespace(self.caller, owner):
            try:
                resource = self.resource_at(address, WRITE)
            except NotFound:
                rh_services.resource_save(actor=request.user, envelope=envelope, name=name)
                return ok({"name": address})
        else:
            # Someone else's folder: a save over what the caller may write, else 403
            # whether or not the name exists (a 404 or 409 would tell a stranger).
            try:
                resource = self.resource_at(address, WRITE)
            except (NotFound, PermissionDenied):
                raise PermissionDenied(
                    f"You can create resources only under /{request.user.username}/, and may not "
                    f"write {address}.", field="name") from None
        _, changed = rh_services.resource_save(actor=request.user, envelope=envelope,
                                               resource=resource)
        return ok({"name": address}) if changed else _unchanged()


class ResourceView(RunhouseResourceView):
    """``GET``/``PUT``/``DELETE /resource/{uri}``."""

    allow_subtoken = True  # GET only: a runhouse daemon asks callers' access levels

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        if self.subtoken is not None and request.method != "GET":
            raise PermissionDenied("A cluster sub-token only reads; use your own token here.")

    @extend_schema(exclude=True)
    def get(self, request: Request, uri: str) -> Response:
        return ok(_envelope(self.resource(READ)))

    @extend_schema(exclude=True)
    def put(self, request: Request, uri: str) -> Response:
        envelope = _parse_envelope(self.body())
        resource = self.resource(WRITE)  # missing or hidden: 404, and the client POSTs
        _, changed = rh_services.resource_save(actor=request.user, envelope=envelope,
                                               resource=resource)
        return ok({"name": resource.address}) if changed else _unchanged()

    @extend_schema(exclude=True)
    def delete(self, request: Request, uri: str) -> Response:
        resource = self.resource(OWNER)
        address = resource.address
        registry_services.resource_delete(actor=request.user, resource=resource)
        return ok({"name": address})


class ResourceHistoryView(RunhouseResourceView):
    """``GET /resource/history/{uri}[?limit=N]``: versions newest first, in
    runhouse's flat form."""

    @extend_schema(exclude=True)
    def get(self, request: Request, uri: str) -> Response:
        resource = self.resource(READ)
        limit = request.query_params.get("limit")
        if limit is not None and (not limit.isdigit() or int(limit) < 1):
            raise InvalidInput("limit must be a whole number of at least 1.", field="limit")
        versions = selectors.resource_history(resource=resource,
                                              limit=int(limit) if limit else None)
        entries = []
        for version in versions:
            resource_type, data = mapping.runhouse_view(version.type, version.config)
            entries.append({
                "name": resource.address,
                "resource_type": resource_type,
                "version": version.number,
                "timestamp": version.created_at.isoformat(),
                "owner": {"username": version.author.username if version.author else None},
                "data": data,
            })
        return ok(entries)


class ResourceAccessView(RunhouseResourceView):
    """``PUT /resource/{uri}/users/access``: share (read, write) or revoke (denied)."""

    @extend_schema(exclude=True)
    def put(self, request: Request, uri: str) -> Response:
        body = self.object_body()
        resource = self.resource(WRITE)
        result = rh_services.resource_set_access(
            actor=request.user, resource=resource, users=body.get("users"),
            access_level=body.get("access_level", "read"),
        )
        return ok(result)


class ResourceUserView(RunhouseResourceView):
    """``DELETE /resource/{uri}/user/{username}``: revoke one user."""

    @extend_schema(exclude=True)
    def delete(self, request: Request, uri: str, username: str) -> Response:
        resource = self.resource(WRITE)
        registry_services.resource_revoke(actor=request.user, resource=resource, who=username)
        return ok({"removed_users": [username]})


# Secrets (runhouse's "vault") -------------------------------------------------------------


class SecretListView(RunhouseAPIView):
    """``GET /user/secret``: the names of the caller's own secrets that hold
    values (values are read one secret at a time, each read audited)."""

    @extend_schema(exclude=True)
    def get(self, request: Request) -> Response:
        secrets = selectors.owned_secrets_with_values(caller=self.caller)
        return ok({secret.address: {"name": secret.address} for secret in secrets})


class SecretView(RunhouseResourceView):
    """``GET``/``PUT``/``DELETE /user/secret/{uri}``. Values go to write
    holders only, every read audited; readers get an empty object."""

    @extend_schema(exclude=True)
    def get(self, request: Request, uri: str) -> Response:
        resource = self.resource(READ)
        if (resource.access_level or 0) < WRITE:
            return ok({})  # a reader loads the secret without its values
        values = registry_services.secret_read_values_audited(actor=request.user,
                                                               resource=resource)
        response = ok({resource.address: {"name": resource.address,
                                          "data": {"values": values}}})
        response["Cache-Control"] = "no-store"
        return response

    @extend_schema(exclude=True)
    def put(self, request: Request, uri: str) -> Response:
        body = self.object_body()
        data = body.get("data")
        if not isinstance(data, dict) or "values" not in data:
            raise InvalidInput('Send {"data": {"values": {"NAME": "value", ...}}}.',
                               field="data.values")
        resource = self.resource(WRITE)
        registry_services.secret_set_values(actor=request.user, resource=resource,
                                            values=data["values"])
        return ok({"name": resource.address})

    @extend_schema(exclude=True)
    def delete(self, request: Request, uri: str) -> Response:
        resource = self.resource(WRITE)
        registry_services.secret_delete_values(actor=request.user, resource=resource)
        return ok({"name": resource.address})


# Cluster sub-tokens -----------------------------------------------------------------------


class ClusterTokenView(RunhouseAPIView):
    """``POST /auth/token/cluster``: the caller's sub-token for clusters of a
    namespace (a read token's sub-token reads only)."""

    permission_classes = [ReadTokenMayPost]

    @extend_schema(exclude=True)
    def post(self, request: Request) -> Response:
        body = self.object_body()
        parent = self.den_token
        if parent is None:
            raise PermissionDenied("Mint cluster tokens with your own den token.")
        plain = rh_services.subtoken_mint(parent=parent, namespace=body.get("resource_address"),
                                          username=body.get("username"))
        response = ok({"token": plain})
        response["Cache-Control"] = "no-store"
        return response


class ClusterTokenCheckView(RunhouseResourceView):
    """``GET /auth/token/cluster/{uri}``: 200 when the bearer is a live
    sub-token for the namespace of ``uri`` whose user may manage (write) it,
    which a runhouse daemon then trusts fully."""

    allow_subtoken = True

    @extend_schema(exclude=True)
    def get(self, request: Request, uri: str) -> Response:
        if self.subtoken is None:
            raise PermissionDenied("This is not a cluster token.")
        resource = self.resource(WRITE)
        return ok({"username": request.user.username, "resource": resource.address})


# Clusters den does not manage -----------------------------------------------------------------


class ClusterStatusView(RunhouseResourceView):
    """``POST /resource/{uri}/cluster/status``: a runhouse daemon's status."""

    allow_subtoken = True

    @extend_schema(exclude=True)
    def post(self, request: Request, uri: str) -> Response:
        body = self.body()
        resource = self.resource(WRITE)
        return ok(rh_services.cluster_report_status(actor=request.user, resource=resource,
                                                    body=body))


class ClusterLogsView(RunhouseResourceView):
    """``POST /resource/{uri}/logs``: a runhouse daemon's new log lines."""

    allow_subtoken = True

    @extend_schema(exclude=True)
    def post(self, request: Request, uri: str) -> Response:
        body = self.body()
        resource = self.resource(WRITE)
        rh_services.cluster_report_logs(actor=request.user, resource=resource, body=body)
        return ok({"name": resource.address})


class NotFoundView(RunhouseAPIView):
    """Any other ``/rh/`` path: a JSON 404 (a 401 first without a credential)."""

    def _not_found(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        raise NotFound("There is no such endpoint in den's Runhouse-compatible API.")

    get = post = put = patch = delete = _not_found
