"""Signing in and out with the client and the CLI, against a real den server:
a page URL or a URL without a scheme still finds the server; logging out
revokes the token on the server (and forgets it locally even when the server
cannot be reached); output piped into ``head`` ends quietly; and a call on a
cluster that is down tells a reader to ask its owner, a writer how to start it."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from urllib.parse import urlsplit

import httpx
import pytest

import den
from den import cli
from den.client import config
from den.client import session as den_session

from . import sample_code

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "a long test password"


@pytest.fixture
def server(live_server, settings, monkeypatch):
    from django.contrib.auth import get_user_model
    from rest_framework.throttling import ScopedRateThrottle

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.DEN_PUBLIC_URL = live_server.url
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"login": "100000/min"})
    for name in ("alice", "bob"):
        get_user_model().objects.create_user(name, f"{name}@example.com", PASSWORD)
    return live_server.url


def cli_login(url, username, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["login", "--url", url, "--username", username, "--password-stdin"],
                    stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def _me(server, token):
    return httpx.get(f"{server}/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code


@pytest.mark.parametrize("path", ["/alice/train", "/login", "/alice/train/-/versions",
                                  "/settings/tokens", "/api/v1/me"])
def test_login_with_a_page_url_finds_the_server(server, monkeypatch, isolated_client, path):
    code, out, err = cli_login(server + path, "alice", monkeypatch)
    assert code == 0, err
    assert f"Logged in to {server} as alice" in out
    stored = config.read_config_file()
    assert stored["url"] == server
    assert _me(server, stored["token"]) == 200


def test_login_without_a_scheme_assumes_http_on_this_machine(server, monkeypatch, isolated_client):
    bare = urlsplit(server).netloc  # 127.0.0.1:PORT
    code, out, err = cli_login(bare, "alice", monkeypatch)
    assert code == 0, err
    assert config.read_config_file()["url"] == server
    assert config.server_url("den.example.com") == "https://den.example.com"
    assert config.server_url("localhost:8000/") == "http://localhost:8000"


@pytest.fixture
def not_den():
    """A plain web server that is not den (it answers every request with a page)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Page(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html>a blog</html>")

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_url_with_no_den_behind_it_says_what_to_give(not_den, isolated_client):
    with pytest.raises(den.ValidationError) as raised:
        den.login(url=f"{not_den}/alice/train", username="alice", password=PASSWORD)
    assert "There is no den server at" in str(raised.value)
    assert not isolated_client.exists()


def test_logout_revokes_the_token_on_the_server(server, monkeypatch, isolated_client):
    cli_login(server, "alice", monkeypatch)
    token = config.read_config_file()["token"]
    assert _me(server, token) == 200
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["logout"], stdout=out, stderr=err) == 0
    assert f"Revoked the token on {server}" in out.getvalue()
    assert _me(server, token) == 401
    assert "token" not in config.read_config_file()
    assert den_session.current().token is None


def test_python_logout_revokes_too(server, isolated_client):
    den.login(url=server, username="bob", password=PASSWORD, persist=False)
    token = den_session.current().token
    assert den.logout(persist=False) == [{"url": server, "revoked": True, "reason": None}]
    assert _me(server, token) == 401


def test_logout_with_the_server_unreachable_still_forgets_the_token(isolated_client):
    config.write_config_file({"url": "http://127.0.0.1:9", "token": "den_" + "x" * 36,
                              "username": "alice"})
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["logout"], stdout=out, stderr=err) == 0
    assert "could not reach http://127.0.0.1:9" in err.getvalue()
    assert "stays valid" in err.getvalue()
    assert "token" not in config.read_config_file()


def test_show_piped_into_head_ends_quietly(server, tmp_path):
    den.login(url=server, username="alice", password=PASSWORD, persist=False)
    token = den_session.current().token
    den.env(reqs=[f"package-{n}" for n in range(20_000)], name="big").save()  # a long show
    env = {**os.environ, "DEN_URL": server, "DEN_TOKEN": token,
           "DEN_CONFIG": str(tmp_path / "c.yaml")}
    done = subprocess.run(
        f"{sys.executable} -m den show /alice/big | head -n 1; echo \"status=${{PIPESTATUS[0]}}\"",
        shell=True, executable="/bin/bash", capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.stdout.startswith("/alice/big  (env, version 1)"), done.stdout[:200]
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    assert f"status={cli.EXIT_PIPE}" in done.stdout


def test_a_cluster_that_is_down_gets_advice_that_fits_the_caller(server):
    den.login(url=server, username="alice", password=PASSWORD, persist=False)
    cpu = den.cluster(name="cpu", provider="local").save()
    # Saved to run on the cluster while it is down (.to() would refuse to send it).
    fn = den.function(sample_code.train, system=cpu).save()
    fn.share("bob", access_level="read")
    with pytest.raises(den.NoRunningCluster) as owner:
        den.function(name="/alice/train")([1.0])
    assert "up_if_not()" in str(owner.value)
    den.login(url=server, username="bob", password=PASSWORD, persist=False)
    with pytest.raises(den.NoRunningCluster) as reader:
        den.function(name="/alice/train")([1.0])
    assert "ask its owner (alice)" in str(reader.value)
    assert "up_if_not" not in str(reader.value)
    # Given write access to the cluster, bob may start it, and is told how.
    den.login(url=server, username="alice", password=PASSWORD, persist=False)
    cpu.share("bob", access_level="write")
    den.login(url=server, username="bob", password=PASSWORD, persist=False)
    with pytest.raises(den.NoRunningCluster) as writer:
        den.function(name="/alice/train")([1.0])
    assert "up_if_not()" in str(writer.value)
