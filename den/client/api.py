"""The den REST API (v1), one operation per endpoint.

Each function returns an *operation* (see :mod:`den.client.session`): run it
with ``run(op)`` or ``await arun(op)``. Addresses passed here are full
(``/<owner>/<name>``); resolving ``~/name`` and URLs is the caller's job
(:func:`resolve`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from den.client.addresses import parse_address, to_address
from den.client.session import Call, Op, Reply, Session

__all__ = [
    "access_get",
    "access_grant",
    "access_revoke",
    "auth_login",
    "cluster_action",
    "cluster_events",
    "cluster_probe",
    "cluster_status",
    "code_exists",
    "code_put",
    "deployment_put",
    "me",
    "resolve",
    "resource_create",
    "resource_delete",
    "resource_get",
    "resource_list",
    "resource_patch",
    "resource_put",
    "resource_restore",
    "secret_get",
    "secret_put",
    "token_create",
    "token_list",
    "token_revoke",
    "version_get",
    "version_list",
]


def _path(address: str) -> str:
    return "/resources" + quote(address, safe="/")


def _next_path(next_url: str) -> tuple[str, dict[str, str]]:
    """Turn a pagination link into a path under /api/v1 plus its query."""
    from urllib.parse import parse_qsl, urlsplit

    parts = urlsplit(next_url)
    path = parts.path
    index = path.find("/api/v1/")
    if index >= 0:
        path = path[index + len("/api/v1") :]
    return path, dict(parse_qsl(parts.query))


def _paginate(
    path: str, params: dict[str, Any], limit: int | None = None
) -> Op[list[dict[str, Any]]]:
    results: list[dict[str, Any]] = []
    while True:
        reply = yield Call("GET", path, params=params)
        data = reply.data
        if isinstance(data, list):
            results.extend(data)
            break
        results.extend(data.get("results") or [])
        next_url = data.get("next")
        if not next_url or (limit is not None and len(results) >= limit):
            break
        path, params = _next_path(next_url)
    return results[:limit] if limit is not None else results


# -- who am I --------------------------------------------------------------------


def me() -> Op[dict[str, Any]]:
    """``GET /me``: the signed-in user."""
    reply = yield Call("GET", "/me")
    data: dict[str, Any] = reply.data
    return data


def username(session: Session) -> Op[str]:
    """The session's username, asking the server once and caching it on the session."""
    if session.username is None:
        data = yield from me()
        session.username = str(data["username"])
    return session.username


def resolve(session: Session, name: str) -> Op[str]:
    """Resolve an address, ``~/name``, bare name or URL to a full address.

    Only names in the caller's own namespace cost a request (once per session).
    """
    owner, rest = parse_address(name, server_url=session.url)
    if owner is not None:
        return f"/{owner}/{rest}"
    user = yield from username(session)
    return to_address(name, username=user, server_url=session.url)


def auth_login(username: str, password: str, token_name: str | None = None) -> Op[dict[str, Any]]:
    """``POST /auth/login``: exchange a username and password for a new named token."""
    body: dict[str, Any] = {"username": username, "password": password}
    if token_name:
        body["token_name"] = token_name
    reply = yield Call("POST", "/auth/login", json=body)
    data: dict[str, Any] = reply.data
    return data


# -- tokens ------------------------------------------------------------------------


def token_list() -> Op[list[dict[str, Any]]]:
    """``GET /tokens``: my API tokens (never their secret values)."""
    return (yield from _paginate("/tokens", {}))


def token_create(
    name: str, scope: str = "write", expires_in_days: int | None = None
) -> Op[dict[str, Any]]:
    """``POST /tokens``: a new token; its ``token`` value appears in this answer only."""
    body: dict[str, Any] = {"name": name, "scope": scope}
    if expires_in_days is not None:
        body["expires_in_days"] = expires_in_days
    reply = yield Call("POST", "/tokens", json=body)
    data: dict[str, Any] = reply.data
    return data


def token_revoke(token_id: int | str) -> Op[None]:
    """``DELETE /tokens/<id>``."""
    yield Call("DELETE", f"/tokens/{quote(str(token_id), safe='')}")


# -- resources -----------------------------------------------------------------------


def resource_list(
    *,
    type: str | None = None,
    owner: str | None = None,
    query: str | None = None,
    shared: bool = False,
    visibility: str | None = None,
    limit: int | None = None,
) -> Op[list[dict[str, Any]]]:
    """``GET /resources``: resources I can see, following pagination up to ``limit``."""
    params: dict[str, Any] = {
        "type": type,
        "owner": owner,
        "q": query,
        "shared_with_me": "true" if shared else None,
        "visibility": visibility,
    }
    return (yield from _paginate("/resources", {k: v for k, v in params.items() if v}, limit))


def _resource_from(reply: Reply) -> dict[str, Any]:
    data: dict[str, Any] = reply.data
    if data.get("version") is None and reply.etag_version is not None:
        data["version"] = reply.etag_version
    return data


def resource_get(address: str) -> Op[dict[str, Any]]:
    """``GET /resources/<address>``: the resource with its config and version."""
    reply = yield Call("GET", _path(address))
    return _resource_from(reply)


def resource_create(
    address: str,
    type: str,
    config: dict[str, Any],
    *,
    visibility: str | None = None,
    description: str | None = None,
) -> Op[dict[str, Any]]:
    """``POST /resources``: create; :class:`den.Conflict` if the address exists."""
    body: dict[str, Any] = {"address": address, "type": type, "config": config}
    if visibility is not None:
        body["visibility"] = visibility
    if description is not None:
        body["description"] = description
    reply = yield Call("POST", "/resources", json=body)
    return _resource_from(reply)


def resource_put(
    address: str,
    type: str,
    config: dict[str, Any],
    *,
    description: str | None = None,
    visibility: str | None = None,
    if_match: int | None = None,
) -> Op[dict[str, Any]]:
    """``PUT /resources/<address>``: create or replace the config (a new version).

    ``visibility`` applies only when the PUT creates the resource. With
    ``if_match`` the server refuses (412, :class:`den.Conflict`) when the
    resource is no longer at that version.
    """
    body: dict[str, Any] = {"type": type, "config": config}
    if description is not None:
        body["description"] = description
    if visibility is not None:
        body["visibility"] = visibility
    headers = {"If-Match": f'"{if_match}"'} if if_match is not None else None
    reply = yield Call("PUT", _path(address), json=body, headers=headers)
    return _resource_from(reply)


def resource_patch(
    address: str, *, visibility: str | None = None, description: str | None = None
) -> Op[dict[str, Any]]:
    """``PATCH /resources/<address>``: change visibility or description."""
    body = {
        key: value
        for key, value in {"visibility": visibility, "description": description}.items()
        if value is not None
    }
    reply = yield Call("PATCH", _path(address), json=body)
    return _resource_from(reply)


def resource_delete(address: str) -> Op[None]:
    """``DELETE /resources/<address>`` (owner only)."""
    yield Call("DELETE", _path(address))


def version_list(address: str, limit: int | None = None) -> Op[list[dict[str, Any]]]:
    """``GET .../-/versions``: versions, newest first."""
    return (yield from _paginate(_path(address) + "/-/versions", {}, limit))


def version_get(address: str, version: int) -> Op[dict[str, Any]]:
    """``GET .../-/versions/<n>``: one version with its config."""
    reply = yield Call("GET", f"{_path(address)}/-/versions/{int(version)}")
    data: dict[str, Any] = reply.data
    return data


def resource_restore(address: str, version: int) -> Op[dict[str, Any]]:
    """``POST .../-/versions/<n>/restore``: a new version with version n's config."""
    reply = yield Call("POST", f"{_path(address)}/-/versions/{int(version)}/restore")
    return _resource_from(reply)


def access_get(address: str) -> Op[dict[str, Any]]:
    """``GET .../-/access``: owner, visibility, grants and pending invitations."""
    reply = yield Call("GET", _path(address) + "/-/access")
    data: dict[str, Any] = reply.data
    return data


def access_grant(
    address: str, users: Iterable[str], level: str, teams: Iterable[str] = ()
) -> Op[dict[str, Any]]:
    """``PUT .../-/access``: grant users (usernames or emails) and teams
    (``org/team``) read or write access."""
    body: dict[str, Any] = {"users": list(users), "level": level}
    team_list = list(teams)
    if team_list:
        body["teams"] = team_list
    reply = yield Call("PUT", _path(address) + "/-/access", json=body)
    data: dict[str, Any] = reply.data or {}
    return data


def access_revoke(address: str, user: str) -> Op[None]:
    """``DELETE .../-/access/<username-or-email>``."""
    yield Call("DELETE", f"{_path(address)}/-/access/{quote(user, safe='@+')}")


def access_revoke_team(address: str, team: str) -> Op[None]:
    """``DELETE .../-/access/team/<org>/<team>``."""
    org, _, name = team.partition("/")
    yield Call("DELETE", f"{_path(address)}/-/access/team/{quote(org, safe='')}/"
                         f"{quote(name, safe='')}")


def resource_transfer(address: str, to: str) -> Op[dict[str, Any]]:
    """``POST .../-/transfer``: move a resource to an organisation you admin."""
    reply = yield Call("POST", _path(address) + "/-/transfer", json={"to": to})
    return _resource_from(reply)


# Organisations -----------------------------------------------------------------


def _org_path(org: str, *rest: str) -> str:
    parts = [quote(org.lstrip("/"), safe="")] + [quote(str(p), safe="") for p in rest]
    return "/orgs/" + "/".join(parts)


def org_call(method: str, org: str | None, *rest: str, json: Any = None) -> Op[Any]:
    """One call under ``/orgs`` (``org`` None: the list itself)."""
    path = _org_path(org, *rest) if org is not None else "/orgs"
    reply = yield Call(method, path, json=json)
    return reply.data


def secret_get(address: str) -> Op[dict[str, Any]]:
    """``GET .../-/secret``: a secret's values (write access; audited)."""
    reply = yield Call("GET", _path(address) + "/-/secret")
    values: dict[str, Any] = (reply.data or {}).get("values") or {}
    return values


def secret_put(address: str, values: dict[str, Any]) -> Op[dict[str, Any]]:
    """``PUT .../-/secret``: replace a secret's values."""
    reply = yield Call("PUT", _path(address) + "/-/secret", json={"values": values})
    data: dict[str, Any] = reply.data or {}
    return data


def cluster_action(address: str, action: str) -> Op[dict[str, Any]]:
    """``POST .../-/cluster/<up|stop|teardown>``: ask den to act on a cluster (202)."""
    reply = yield Call("POST", f"{_path(address)}/-/cluster/{action}")
    data: dict[str, Any] = reply.data or {}
    return data


def cluster_status(address: str) -> Op[dict[str, Any]]:
    """``GET .../-/cluster``: a cluster's runtime status."""
    reply = yield Call("GET", _path(address) + "/-/cluster")
    data: dict[str, Any] = reply.data or {}
    return data


def cluster_events(address: str, limit: int = 50) -> Op[list[dict[str, Any]]]:
    """``GET .../-/cluster/events``: the cluster's latest events, newest first (one page)."""
    reply = yield Call("GET", _path(address) + "/-/cluster/events", params={"limit": limit})
    data = reply.data
    events: list[dict[str, Any]] = data if isinstance(data, list) else data.get("results") or []
    return events


def cluster_forget_host_key(address: str, host: str) -> Op[dict[str, Any]]:
    """``POST .../-/cluster/forget-host-key``: stop trusting the SSH host key den
    recorded for ``host``, so the next start trusts the one it finds."""
    reply = yield Call("POST", f"{_path(address)}/-/cluster/forget-host-key",
                       json={"host": host})
    data: dict[str, Any] = reply.data or {}
    return data


def cluster_probe(address: str) -> Op[dict[str, Any]]:
    """``POST .../-/cluster/probe``: tell den its daemon did not answer; den checks
    it now and answers the status (``unreachable`` if it is gone). ``address``
    may be the cluster's, or a saved function's or module's that runs there."""
    reply = yield Call("POST", f"{_path(address)}/-/cluster/probe")
    data: dict[str, Any] = reply.data or {}
    return data


def code_exists(sha: str) -> Op[bool]:
    """``HEAD /code/<sha256>``: whether den keeps this code bundle."""
    from den.client.errors import NotFound

    try:
        yield Call("HEAD", f"/code/{quote(sha, safe='')}")
    except NotFound:
        return False
    return True


def code_put(sha: str, data: bytes) -> Op[bool]:
    """``PUT /code/<sha256>``: let den keep a code bundle; True if it was new."""
    reply = yield Call("PUT", f"/code/{quote(sha, safe='')}", content=data,
                       headers={"Content-Type": "application/gzip"})
    return bool((reply.data or {}).get("created"))


def deployment_put(address: str, name: str, spec: dict[str, Any]) -> Op[dict[str, Any]]:
    """``PUT .../-/deployment``: let den keep what was just put on the daemon for
    a saved function or module (the daemon's put body), to put it back after
    the cluster restarts."""
    reply = yield Call("PUT", _path(address) + "/-/deployment",
                       json={"name": name, "spec": spec})
    data: dict[str, Any] = reply.data or {}
    return data

