"""Walks every route in the URL conf (the registry and compute APIs,
``/api/v1/auth/*``, and the web pages with their forms) and sends each the
input that used to reach PostgreSQL or the parser's stack and answer 500: NUL
characters and lone surrogates in path segments, query parameters and
bodies, JSON nested past any limit, and ``1e400``. No answer may be a 5xx.

Each route is its own test, on fresh data; the requests of one route run as
its owner, as a signed-in user (pages), or anonymously (sign-in pages), and
any exception a view raises is collected with the request that caused it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.urls import NoReverseMatch, URLPattern, URLResolver, get_resolver, reverse

from registry import services
from registry.models import AccessGrant, AccessLevel, ApiToken
from tests.conftest import TokenClient
from tests.factories import ResourceFactory, UserFactory, make_token

pytestmark = pytest.mark.django_db

NUL = "a%00b"
SURROGATE = "%ED%A0%80"  # U+D800 as UTF-8 bytes: not valid UTF-8
BAD_PATH_TEXT = [NUL, SURROGATE]
BAD_JSON_STRINGS = [r"a\u0000b", r"\ud800", r"x\udfff"]
DEEP = "[" * 50_000 + "]" * 50_000
# Every name a view reads from a body, a form or a query string.
BODY_FIELDS = [
    "address", "type", "config", "visibility", "description", "users", "teams", "level",
    "values", "name", "scope", "expires_in_days", "username", "password", "token_name", "token",
    "email", "autostop_mins", "calls_in_flight", "objects", "last_activity",
]
FORM_FIELDS = [
    "users", "level", "who", "description", "visibility", "confirm", "name", "scope",
    "expires_in_days", "autostop_mins", "first_name", "last_name", "old_password",
    "new_password1", "new_password2", "username", "password", "password2", "email",
    "new_password", "q", "next",
]
QUERY_FIELDS = [
    "q", "type", "owner", "visibility", "shared_with_me", "cursor", "limit", "address",
    "level", "after", "wait", "to", "next", "format",
]
NUMBER_QUERY_FIELDS = ["limit", "after", "wait", "to", "cursor"]
#: Views den does not write (the OpenAPI schema and its viewer): probed lightly.
FOREIGN_ROUTES = {"api-schema", "api-docs"}
ANONYMOUS_PAGES = {"login", "logout", "password-reset", "password-reset-sent",
                   "password-reset-done", "password-reset-confirm", "invitation"}
ORDER = {"get": 0, "put": 1, "patch": 2, "post": 3, "delete": 4}


@dataclass(frozen=True)
class Route:
    name: str  # the URL name, with its namespace
    view: Any
    arguments: frozenset[str]

    def __str__(self) -> str:
        return self.name


def _walk(patterns: list[Any], namespace: str = "") -> Iterator[Route]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            if str(pattern.pattern).startswith("admin/"):
                continue  # Django's own staff-only admin
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            yield from _walk(pattern.url_patterns, inner)
        elif isinstance(pattern, URLPattern) and pattern.name:
            arguments = frozenset(pattern.pattern.regex.groupindex)
            yield Route(f"{namespace}{pattern.name}", pattern.callback, arguments)


ROUTES = sorted({route.name: route for route in _walk(get_resolver().url_patterns)}.values(),
                key=lambda route: route.name)


def _methods(view: Any) -> list[str]:
    cls = getattr(view, "view_class", None) or getattr(view, "cls", None)
    if cls is None:
        return ["get"]
    methods = [m for m in cls.http_method_names if m not in ("options", "head", "trace")
               and hasattr(cls, m)]
    return sorted(methods, key=lambda m: ORDER.get(m, 9))


@pytest.fixture
def world():
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    ResourceFactory(owner=alice, name="cpu", type="cluster", config={"provider": "local"})
    ResourceFactory(owner=alice, name="key", type="secret", config={"provider": "ssh"})
    train = ResourceFactory(owner=alice, name="train", type="function",
                            config={"system": "/alice/cpu"})
    AccessGrant.objects.create(resource=train, user=bob, level=AccessLevel.READ)
    services.resource_share(actor=alice, resource=train, users=["carol@example.com"], level="read")
    invitation = services.invitation_send(actor=alice, email="dan@example.com")
    org = services.org_create(actor=alice, name="acme")
    services.org_members_add(actor=alice, org=org, users=["bob"])
    services.team_create(actor=alice, org=org, name="ml")
    services.service_account_create(actor=alice, org=org, name="ci")
    spare = make_token(alice)  # the one DELETE /tokens/<id> may revoke
    return {
        "alice": alice,
        "token": make_token(alice),
        "spare_id": ApiToken.objects.get(hint=spare[-4:]).pk,
        "invitation": invitation.plain_token,
    }


def _good_arguments(route: Route, world: dict[str, Any]) -> dict[str, Any]:
    name = route.name.split(":")[-1]
    address = "alice/train"
    if name.startswith("cluster"):
        address = "alice/cpu"
    elif name.endswith("secret"):
        address = "alice/key"
    if name.startswith("rh-cluster"):
        address = "alice/cpu"
    values = {"address": address, "number": "1", "who": "bob", "token": world["invitation"],
              "token_id": world["spare_id"], "owner": "alice", "uidb64": "MQ",
              # /rh/ routes: runhouse's owner:name URIs
              "uri": address.replace("/", ":"), "username": "bob", "sha": "0" * 64,
              # organisations
              "org": "acme", "team": "ml", "name": "ci"}
    if name == "password-reset-confirm":
        values["token"] = "set-password"
    return {key: values[key] for key in route.arguments}


def _urls(route: Route, world: dict[str, Any]) -> tuple[str, list[str]]:
    """The route's URL with good arguments, and its URLs with one bad argument
    each (where the route's pattern lets such a segment through at all)."""
    good_arguments = _good_arguments(route, world)
    good = reverse(route.name, kwargs=good_arguments or None)
    bad: list[str] = []
    for key in good_arguments:
        marker = "alice/MARKER" if key == "address" else "MARKER"
        try:
            marked = reverse(route.name, kwargs={**good_arguments, key: marker})
        except NoReverseMatch:
            continue  # e.g. <int:token_id>: the router refuses anything else
        for text in BAD_PATH_TEXT:
            bad.append(marked.replace(marker, f"alice/{text}" if key == "address" else text))
    return good, bad


def _json_bodies() -> Iterator[str]:
    for field in BODY_FIELDS:
        for bad in BAD_JSON_STRINGS[:2]:
            yield json.dumps({field: "BAD", "config": {}}).replace('"BAD"', f'"{bad}"')
    yield json.dumps({"users": ["BAD"], "teams": ["BAD"]}).replace('"BAD"', f'"{BAD_JSON_STRINGS[2]}"')
    yield '{"config": {"x": "' + BAD_JSON_STRINGS[0] + '", "' + BAD_JSON_STRINGS[1] + '": 1}}'
    yield '{"config": {"x": 1e400}, "expires_in_days": 1e400, "autostop_mins": 1e400}'
    yield '{"config": {"x": ' + DEEP + "}}"
    yield DEEP
    yield '{"users": ' + DEEP + ', "username": ' + DEEP + "}"


def _form_bodies() -> Iterator[bytes]:
    for field in FORM_FIELDS:
        yield f"{field}={NUL}&level=read&visibility=public".encode()
    yield "&".join(f"{field}={SURROGATE}" for field in FORM_FIELDS).encode()
    yield "&".join(f"{field}={NUL}" for field in FORM_FIELDS).encode()


def _queries(route: Route) -> Iterator[str]:
    if route.name in FOREIGN_ROUTES:
        yield f"format={NUL}"
        yield f"q={SURROGATE}"
        return
    for field in QUERY_FIELDS:
        for bad in BAD_PATH_TEXT:
            yield f"{field}={bad}"
    for field in NUMBER_QUERY_FIELDS:
        for bad in ("1e400", "-1", "nan"):
            yield f"{field}={bad}"
    yield f"{NUL}=1"


@pytest.mark.parametrize("route", ROUTES, ids=[route.name for route in ROUTES])
def test_no_route_answers_5xx_to_unstorable_input(route, world, client):
    short = route.name.split(":")[-1]
    is_api = route.name.startswith(("api-", "auth-")) or ":" not in route.name
    if is_api:
        caller: Any = TokenClient().as_token(world["token"])
    else:
        caller = client
        if short not in ANONYMOUS_PAGES:
            client.force_login(world["alice"])
    good, bad_urls = _urls(route, world)
    failures: list[str] = []

    def send(method: str, url: str, body: bytes | str | None = None,
             content_type: str = "application/json") -> None:
        try:
            if body is None:
                response = getattr(caller, method)(url)
            else:
                data = body.encode("utf-8") if isinstance(body, str) else body
                response = caller.generic(method.upper(), url, data, content_type=content_type)
        except Exception as exc:  # the view failed: what a client would see as a 500
            failures.append(f"{method.upper()} {url[:120]} {_short(body)}: {exc!r}"[:400])
            return
        if response.status_code >= 500:
            failures.append(f"{method.upper()} {url[:120]} {_short(body)}: {response.status_code}")

    for method in _methods(route.view):
        for url in bad_urls:
            send(method, url)
        for query in _queries(route):
            send(method, f"{good}?{query}")
        if method in ("post", "put", "patch"):
            if is_api:
                for body in _json_bodies():
                    send(method, good, body)
            else:
                for form in _form_bodies():
                    send(method, good, form, "application/x-www-form-urlencoded")
    assert not failures, f"{len(failures)} answers were 5xx:\n" + "\n".join(failures[:30])


def _short(body: Any) -> str:
    if body is None:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return json.dumps(text[:60])


def test_the_walk_covers_the_routes_that_take_input():
    names = {route.name for route in ROUTES}
    for expected in ("auth-login", "auth-check", "resource-detail", "resource-access-detail",
                     "cluster-autostop", "cluster-events", "frontend:resource-access",
                     "frontend:search", "frontend:login", "frontend:settings-tokens",
                     "frontend:invitation", "token-detail", "invitation-accept"):
        assert expected in names
