"""The HTTP layer against a mock transport: errors, retries, pagination, async."""

import asyncio
import json

import httpx
import pytest

import den
from den.client import api
from den.client.session import Call, Session, run


def _error(status, code, message, field=None, headers=None):
    body = {"error": {"code": code, "message": message, "field": field}}
    return httpx.Response(status, json=body, headers=headers)


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "invalid_config", den.ValidationError),
        (400, "malformed_json", den.BadRequest),
        (401, "authentication_failed", den.AuthenticationError),
        (403, "permission_denied", den.PermissionDenied),
        (404, "not_found", den.NotFound),
        (409, "already_exists", den.Conflict),
        (412, "version_conflict", den.Conflict),
        (413, "too_large", den.ValidationError),
        (429, "throttled", den.Throttled),
        (500, "server_error", den.ServerError),
        (418, "teapot", den.DenError),
    ],
)
def test_errors_become_exceptions(mock_session, status, code, cls):
    mock_session(lambda request: _error(status, code, "Bad thing.", field="config.ips"))
    with pytest.raises(cls) as info:
        den.load("/alice/train")
    error = info.value
    assert type(error) is cls
    assert isinstance(error, den.DenError)
    assert error.status == status
    assert error.code == code
    assert error.field == "config.ips"
    assert "Bad thing" in error.message
    assert error.url == "http://den.test/api/v1/resources/alice/train"


def test_bad_request_without_field_is_plain_bad_request(mock_session):
    mock_session(lambda request: _error(400, "malformed_json", "Not JSON."))
    with pytest.raises(den.BadRequest) as info:
        den.load("/alice/x")
    assert not isinstance(info.value, den.ValidationError)


def test_auth_error_suggests_login(mock_session):
    mock_session(lambda request: _error(401, "authentication_failed", "Invalid token."))
    with pytest.raises(den.AuthenticationError, match="den login"):
        den.whoami()


def test_non_json_error_from_a_proxy(mock_session):
    mock_session(lambda request: httpx.Response(502, text="<html>Bad gateway</html>"))
    with pytest.raises(den.ServerError, match="502"):
        run(api.resource_list())


def test_throttled_carries_retry_after(mock_session):
    mock_session(lambda request: _error(429, "throttled", "Slow down.", headers={"Retry-After": "7"}))
    with pytest.raises(den.Throttled) as info:
        den.load("/alice/x")
    assert info.value.retry_after == 7.0


def _flaky(failures, final):
    state = {"n": 0}

    def handler(request):
        state["n"] += 1
        if state["n"] <= failures:
            return httpx.Response(503, text="unavailable")
        return final(request)

    return handler, state


def _resource(request):
    return httpx.Response(
        200,
        json={"address": "/alice/x", "type": "resource", "version": 2, "config": {"a": 1}},
        headers={"ETag": '"2"'},
    )


def test_idempotent_requests_are_retried(mock_session):
    handler, state = _flaky(2, _resource)
    mock_session(handler)
    res = den.load("/alice/x")
    assert res.data == {"a": 1}
    assert state["n"] == 3


def test_retries_give_up(mock_session):
    handler, state = _flaky(10, _resource)
    mock_session(handler, retries=2)
    with pytest.raises(den.ServerError):
        den.load("/alice/x")
    assert state["n"] == 3


def test_post_is_never_retried(mock_session):
    handler, state = _flaky(1, _resource)
    mock_session(handler)
    with pytest.raises(den.ServerError):
        run(api.resource_restore("/alice/x", 1))
    assert state["n"] == 1


def test_connection_errors_are_retried_for_get_only(mock_session):
    state = {"n": 0}

    def handler(request):
        state["n"] += 1
        if state["n"] == 1:
            raise httpx.ConnectError("refused", request=request)
        return _resource(request)

    mock_session(handler)
    assert den.load("/alice/x").version == 2
    assert state["n"] == 2

    state["n"] = 0
    with pytest.raises(den.NetworkError):
        run(api.auth_login("a", "b"))
    assert state["n"] == 1


def test_network_error_names_the_server_and_suggests_login():
    session = Session("http://127.0.0.1:9", "den_x", retries=0, timeout=2)
    with pytest.raises(den.NetworkError) as info:
        run(api.me(), session)
    assert "http://127.0.0.1:9" in str(info.value)
    assert "den login" in str(info.value)


def test_not_logged_in_without_a_url():
    with pytest.raises(den.NotLoggedIn, match="den login"):
        den.load("/alice/x")


def test_requests_carry_the_token_and_json(mock_session):
    def handler(request):
        if request.method == "PUT":
            body = json.loads(request.content)
            assert body["type"] == "env"
            assert body["config"] == {"reqs": ["numpy"]}
            assert "If-Match" not in request.headers
            return httpx.Response(
                201, json={"address": "/alice/sk", "type": "env", "version": 1, "visibility": "private"}
            )
        raise AssertionError(request)

    session = mock_session(handler)
    env = den.env(reqs=["numpy"], name="sk").save()
    assert env.address == "/alice/sk"
    assert env.version == 1
    request = session.requests[0]
    assert request.headers["Authorization"] == "Bearer den_testtoken"
    assert request.headers["Content-Type"] == "application/json"
    assert request.url.path == "/api/v1/resources/alice/sk"


def test_save_sends_if_match_when_it_knows_the_version(mock_session):
    seen = []

    def handler(request):
        if request.method == "GET":
            return httpx.Response(
                200, json={"address": "/alice/sk", "type": "env", "version": 3, "config": {}}
            )
        seen.append(request.headers.get("If-Match"))
        return _error(412, "version_conflict", "It changed.")

    mock_session(handler)
    env = den.env(name="/alice/sk")
    env.reqs.append("x")
    with pytest.raises(den.Conflict):
        env.save()
    assert seen == ['"3"']


def test_own_namespace_asks_who_i_am_once(mock_session):
    def handler(request):
        if request.url.path == "/api/v1/me":
            return httpx.Response(200, json={"username": "carol"})
        return _resource(request)

    session = mock_session(handler, username=None)
    den.load("~/x")
    den.load("y")
    paths = [r.url.path for r in session.requests]
    assert paths == ["/api/v1/me", "/api/v1/resources/carol/x", "/api/v1/resources/carol/y"]


def test_load_by_url_uses_the_path(mock_session):
    session = mock_session(_resource)
    den.load("https://den.example.com/alice/x")
    assert session.requests[0].url.path == "/api/v1/resources/alice/x"


def test_list_follows_pagination(mock_session):
    def handler(request):
        cursor = request.url.params.get("cursor")
        if cursor is None:
            assert request.url.params["type"] == "function"
            assert request.url.params["shared_with_me"] == "true"
            return httpx.Response(
                200,
                json={
                    "results": [{"address": "/a/1"}],
                    "next": "http://den.test/api/v1/resources?cursor=abc&type=function",
                    "previous": None,
                },
            )
        return httpx.Response(200, json={"results": [{"address": "/a/2"}], "next": None})

    mock_session(handler)
    items = den.list(type="function", shared=True)
    assert [item["address"] for item in items] == ["/a/1", "/a/2"]


def test_wrong_type_on_typed_load(mock_session):
    mock_session(_resource)
    with pytest.raises(den.WrongType, match="not a function"):
        den.function(name="/alice/x")


def test_async_load_and_save(mock_session):
    def handler(request):
        if request.method == "PUT":
            return httpx.Response(200, json={"address": "/alice/x", "type": "resource", "version": 3})
        return _resource(request)

    mock_session(handler)

    async def main():
        res = await den.aload("/alice/x")
        res.data["b"] = 2
        await res.asave()
        return res

    res = asyncio.run(main())
    assert res.version == 3
    # a second event loop gets its own pool
    assert asyncio.run(den.aload("/alice/x")).version == 2


def test_call_repr():
    assert repr(Call("get", "/me")) == "Call(GET /me)"


def test_save_does_not_undo_metadata_changed_elsewhere(mock_session):
    sent = []

    def handler(request):
        if request.method == "GET":
            return httpx.Response(
                200,
                json={"address": "/alice/x", "type": "resource", "version": 1, "config": {},
                      "visibility": "private", "description": "old"},
            )
        if request.method == "PATCH":
            sent.append(("PATCH", json.loads(request.content)))
            return httpx.Response(200, json={"address": "/alice/x", "version": 2, "visibility": "public"})
        body = json.loads(request.content)
        sent.append(("PUT", body))
        # someone made it public meanwhile
        return httpx.Response(200, json={"address": "/alice/x", "version": 2, "visibility": "public"})

    mock_session(handler)
    res = den.load("/alice/x")
    res.data["a"] = 1
    res.save()
    assert sent == [("PUT", {"type": "resource", "config": {"a": 1}})]
    assert res.visibility == "public"
    sent.clear()
    res.visibility = "unlisted"
    res.description = "new"
    res.save()
    assert sent[0] == (
        "PUT",
        {"type": "resource", "config": {"a": 1}, "description": "new", "visibility": "unlisted"},
    )
    assert sent[1] == ("PATCH", {"visibility": "unlisted"})
