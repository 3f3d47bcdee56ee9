"""Config file and environment: where the server and token come from."""

import os
import stat

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


def test_the_files_token_never_goes_to_another_server(isolated_client, monkeypatch):
    config.write_config_file({"url": "http://file", "token": "den_file"})
    monkeypatch.setenv("DEN_URL", "http://elsewhere")
    assert config.resolve_settings().token is None
    monkeypatch.setenv("DEN_URL", "http://file/")
    assert config.resolve_settings().token == "den_file"


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


@pytest.fixture
def den_server(live_server, transactional_db, monkeypatch):
    """A real den server with alice (password "pw") and the URL to reach it."""
    from django.contrib.auth import get_user_model
    from rest_framework.throttling import ScopedRateThrottle

    get_user_model().objects.create_user("alice", "alice@example.com", "pw")
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"login": "10000/min"})
    return live_server.url


def test_login_with_password_stores_a_token(isolated_client, den_server):
    me = den.login(url=den_server + "/", username="alice", password="pw")
    assert me["username"] == "alice"
    stored = config.read_config_file()
    assert stored["url"] == den_server and stored["username"] == "alice"
    assert stored["token"].startswith("den_")
    assert stat.S_IMODE(os.stat(isolated_client).st_mode) == 0o600
    current = session.current()
    assert (current.url, current.token, current.username) == (den_server, stored["token"], "alice")
    assert den.whoami()["username"] == "alice"  # the stored token works


def test_login_replaces_the_session(isolated_client, den_server):
    given = den.login(url=den_server, username="alice", password="pw", persist=False)
    first = session.current()
    assert given["username"] == "alice" and first.token
    assert not isolated_client.exists()
    den.login(url=den_server, username="alice", password="pw")
    assert session.current() is not first
    assert session.current().token != first.token


def test_bad_password(isolated_client, den_server):
    with pytest.raises(den.AuthenticationError):
        den.login(url=den_server, username="alice", password="nope")
    assert not isolated_client.exists()


def test_login_needs_a_token_or_password(isolated_client):
    with pytest.raises(den.NotLoggedIn):
        den.login(url="http://den.test")
    with pytest.raises(den.NotLoggedIn):
        den.login(token="den_x")


def test_logout(isolated_client, den_server):
    den.login(url=den_server, username="alice", password="pw")
    den.logout()
    assert config.read_config_file() == {"url": den_server}
    assert session.current().token is None
