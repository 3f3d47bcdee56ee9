"""Every /rh/ answer is JSON, over real HTTP: no route, method or credential
gets a redirect or an HTML page (``requests`` would follow a redirect to the
sign-in page and the runhouse client would take it for a valid login). And
bodies without a Content-Type, as the runhouse client sends them, are read."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from tests.factories import ResourceFactory, UserFactory, make_token

EXAMPLES = {"uri": "alice:box", "username": "bob"}
EXTRA_PATHS = ["/rh", "/rh/", "/rh/user/", "/rh/resource/alice:box/extra/bits", "/rh/-/x",
               "/rh/resource/alice:box/", "/rh/admin/", "/rh/login"]


def _rh_paths() -> list[str]:
    paths = []
    for pattern in get_resolver().url_patterns:
        if isinstance(pattern, URLResolver) and str(pattern.pattern) in ("rh/", "rh"):
            for inner in pattern.url_patterns:
                assert isinstance(inner, URLPattern)
                route = str(inner.pattern).lstrip("^").rstrip("$")
                if route == ".*":
                    continue
                route = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: EXAMPLES[m.group(1)], route)
                route = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: EXAMPLES[m.group(1)], route)
                paths.append(f"/{pattern.pattern}{route}".rstrip("/") or "/rh")
    return sorted(set(paths))


@pytest.fixture
def den(live_server, transactional_db):
    alice = UserFactory(username="alice")
    UserFactory(username="bob")
    ResourceFactory(owner=alice, name="box", type="secret", config={"provider": "aws"})
    return live_server.url, make_token(alice)


def test_no_rh_url_answers_html_or_a_redirect(den):
    url, token = den
    credentials = {
        "none": {},
        "not bearer": {"Authorization": "Basic YWxpY2U6cHc="},
        "bad token": {"Authorization": "Bearer nonsense"},
        "unknown den token": {"Authorization": "Bearer den_" + "A" * 36},
        "good token": {"Authorization": f"Bearer {token}"},
    }
    paths = _rh_paths() + EXTRA_PATHS
    assert len(paths) > 15
    offenders = []
    with httpx.Client(base_url=url, follow_redirects=False, timeout=30) as client:
        for path in paths:
            for method in ("GET", "POST", "PUT", "DELETE", "PATCH"):
                for label, headers in credentials.items():
                    # Bodies that change nothing lasting: bad JSON for every write.
                    response = client.request(method, path, headers=headers,
                                              content=b"{not json" if method != "GET" else None)
                    kind = response.headers.get("content-type", "")
                    problem = None
                    if 300 <= response.status_code < 400:
                        problem = f"redirect to {response.headers.get('location')}"
                    elif not kind.startswith("application/json"):
                        problem = f"content-type {kind!r}"
                    else:
                        try:
                            json.loads(response.content)
                        except ValueError:
                            problem = "body is not JSON"
                    if label != "good token" and response.status_code != 401:
                        problem = problem or f"{response.status_code}, not 401"
                    if problem:
                        offenders.append(f"{method} {path} [{label}]: {problem}")
    assert not offenders, "\n".join(offenders[:40])


def test_json_bodies_without_a_content_type_are_read(den):
    url, token = den
    with httpx.Client(base_url=url, timeout=30) as client:
        headers = {"Authorization": f"Bearer {token}"}
        body = json.dumps({"default_autostop": 45, "launcher": "local"}).encode()
        # httpx adds no Content-Type for raw content; runhouse's requests does the same.
        request = client.build_request("PUT", "/rh/user/config", headers=headers, content=body)
        assert "content-type" not in request.headers
        response = client.send(request)
        assert response.status_code == 200, response.text
        config = client.get("/rh/user", headers=headers).json()["data"]["config"]
        assert config["default_autostop"] == 45
        # text/plain, as Django's dev server fills in: read as JSON too.
        payload = {"name": "/alice/made", "resource_type": "resource", "data": {"x": 1}}
        created = client.post("/rh/resource", headers={**headers, "Content-Type": "text/plain"},
                              content=json.dumps(payload).encode())
        assert created.status_code == 200, created.text
        assert client.get("/rh/resource/alice:made", headers=headers).json()["data"]["data"] == {
            "x": 1}
