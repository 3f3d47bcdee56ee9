"""Config file and environment: where the server and token come from."""

import os
import stat

import httpx
import pytest

import den
from den.client import config, session


def test_config_file_is_private(isolated_client):
    path = config.write_config_file({"url": "http://den.test", "token": "den_abc"})
    assert path == isolated_client
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert config.read_config_file() == {"url": "http://den.test", "token": "den_abc"}


def test_existing_loose_file_is_tightened(isolated_client):
    isolated_client.parent.mkdir(parents=True)
    isolated_client.write_text("url: http://old\n")
    os.chmod(isolated_client, 0o644)
    config.write_config_file({"token": "den_new"})
    assert stat.S_IMODE(os.stat(isolated_client).st_mode) == 0o600
    assert config.read_config_file() == {"url": "http://old", "token": "den_new"}


def test_none_removes_a_key(isolated_client):
    config.write_config_file({"url": "http://a", "token": "t", "username": "u"})
    config.write_config_file({"token": None, "username": None})
    assert config.read_config_file() == {"url": "http://a"}


def test_environment_overrides_the_file(isolated_client, monkeypatch):
    config.write_config_file({"url": "http://file", "token": "den_file", "username": "alice"})
    settings = config.resolve_settings()
    assert (settings.url, settings.token, settings.username) == (
        "http://file",
        "den_file",
        "alice",
    )
    monkeypatch.setenv("DEN_URL", "http://env/")
    monkeypatch.setenv("DEN_TOKEN", "den_env")
    settings = config.resolve_settings()
    assert (settings.url, settings.token, settings.username) == ("http://env", "den_env", None)
    session.reset()
    assert session.current().url == "http://env"
    assert "den_env" not in repr(settings)


def test_default_path(monkeypatch):
    monkeypatch.delenv("DEN_CONFIG")
    assert config.config_path().name == "config.yaml"
    assert config.config_path().parent.name == ".den"


def _fake_server(request):
    if request.url.path == "/api/v1/auth/login":
        import json

        body = json.loads(request.content)
        if body["password"] != "pw":
            return httpx.Response(
                401, json={"error": {"code": "authentication_failed", "message": "Wrong.", "field": None}}
            )
        assert body["token_name"]
        return httpx.Response(201, json={"id": 1, "name": body["token_name"], "token": "den_new"})
    if request.url.path == "/api/v1/me":
        if request.headers.get("Authorization") not in ("Bearer den_new", "Bearer den_given"):
            return httpx.Response(
                401, json={"error": {"code": "not_authenticated", "message": "No.", "field": None}}
            )
        return httpx.Response(200, json={"username": "alice", "email": "a@example.com"})
    raise AssertionError(request.url)


@pytest.fixture
def fake_server(monkeypatch):
    transport = httpx.MockTransport(_fake_server)
    real_init = session.Session.__init__

    def init(self, *args, **kwargs):
        kwargs.setdefault("transport", transport)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(session.Session, "__init__", init)


def test_login_with_password_stores_a_token(isolated_client, fake_server):
    me = den.login(url="http://den.test/", username="alice", password="pw")
    assert me["username"] == "alice"
    assert config.read_config_file() == {
        "url": "http://den.test",
        "token": "den_new",
        "username": "alice",
    }
    assert stat.S_IMODE(os.stat(isolated_client).st_mode) == 0o600
    current = session.current()
    assert (current.url, current.token, current.username) == ("http://den.test", "den_new", "alice")


def test_login_replaces_the_session(isolated_client, fake_server):
    den.login(url="http://den.test", token="den_given", persist=False)
    first = session.current()
    assert first.token == "den_given"
    assert not isolated_client.exists()
    den.login(url="http://den.test", username="alice", password="pw")
    assert session.current() is not first
    assert session.current().token == "den_new"


def test_bad_password(isolated_client, fake_server):
    with pytest.raises(den.AuthenticationError):
        den.login(url="http://den.test", username="alice", password="nope")
    assert not isolated_client.exists()


def test_login_needs_a_token_or_password(isolated_client):
    with pytest.raises(den.NotLoggedIn):
        den.login(url="http://den.test")
    with pytest.raises(den.NotLoggedIn):
        den.login(token="den_x")


def test_logout(isolated_client, fake_server):
    den.login(url="http://den.test", token="den_given")
    den.logout()
    assert config.read_config_file() == {"url": "http://den.test"}
    assert session.current().token is None
