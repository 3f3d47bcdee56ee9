"""The client and the CLI against a real den server (pytest-django's live_server)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys

import pytest

import den
from den import cli
from den.client import session as den_session

from . import sample_code

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "a long test password"


@pytest.fixture
def server(live_server, settings, monkeypatch):
    """The live server's URL; fast password hashing, resource URLs on this server,
    and no login throttle (these tests sign in many times from one address)."""
    from rest_framework.throttling import ScopedRateThrottle

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.DEN_PUBLIC_URL = live_server.url
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"login": "100000/min"})
    return live_server.url


@pytest.fixture
def users(server):
    from django.contrib.auth import get_user_model

    User = get_user_model()
    for name in ("alice", "bob", "mallory"):
        User.objects.create_user(name, f"{name}@example.com", PASSWORD)
    return server


def login_as(server: str, username: str) -> str:
    """Sign in through POST /auth/login (as `den login` does); returns the new token."""
    den.login(url=server, username=username, password=PASSWORD)
    token = den_session.current().token
    assert token and token.startswith("den_")
    return token


def test_login_whoami_and_config_file(users, isolated_client):
    me = den.login(url=users, username="alice", password=PASSWORD)
    assert me["username"] == "alice"
    assert den.whoami()["email"] == "alice@example.com"
    assert oct(os.stat(isolated_client).st_mode & 0o777) == "0o600"
    # A fresh process state reads the same identity back from the file.
    den_session.reset()
    assert den.whoami()["username"] == "alice"
    with pytest.raises(den.AuthenticationError):
        den.login(url=users, username="alice", password="wrong password")


def test_bad_token_is_an_authentication_error(users):
    den.login(url=users, token="den_not_a_real_token", verify=False, persist=False)
    with pytest.raises(den.AuthenticationError, match="den login"):
        den.load("/alice/x")


def test_save_load_share_revoke(users):
    login_as(users, "alice")
    cpu = den.cluster(name="cpu", provider="local")
    sk = den.env(reqs=["scikit-learn"], name="sk")
    fn = den.function(sample_code.train).to(cpu, env=sk).save()
    assert fn.address == "/alice/train"
    assert fn.version == 1
    assert fn.url == f"{users}/alice/train"
    # Its cluster and named env were saved first and are referred to by address.
    assert cpu.address == "/alice/cpu" and cpu.version == 1
    assert sk.address == "/alice/sk" and sk.version == 1

    loaded = den.function(name="~/train")
    assert loaded.config()["config"] == {
        "system": "/alice/cpu",
        "env": "/alice/sk",
        "pointers": fn.pointers,
        "signature": fn.signature_data,
    }
    assert str(loaded.signature) == str(fn.signature)
    with pytest.raises(den.NoRunningCluster):
        loaded([1.0])

    result = fn.share("bob", access_level="read")
    assert result["granted"] == ["bob"]

    login_as(users, "bob")
    by_url = den.load(f"{users}/alice/train")
    assert isinstance(by_url, den.Function)
    assert by_url.version == 1
    assert by_url.access_level == "read"
    assert den.function(name="/alice/train").signature_data == fn.signature_data
    assert [item["address"] for item in den.list(shared=True)] == ["/alice/train"]
    by_url.description = "bob was here"
    with pytest.raises(den.PermissionDenied):
        by_url.save()
    # bob cannot read the cluster: it was not shared with him
    with pytest.raises(den.NotFound):
        den.cluster(name="/alice/cpu")

    login_as(users, "mallory")
    with pytest.raises(den.NotFound):
        den.load("/alice/train")
    assert den.list(query="train") == []

    login_as(users, "alice")
    fn.revoke("bob")
    login_as(users, "bob")
    with pytest.raises(den.NotFound):
        den.load(f"{users}/alice/train")


def test_unnamed_env_is_stored_inline(users):
    login_as(users, "alice")
    fn = den.function(sample_code.train, name="inline").to("/alice/cpu", env=["numpy"])
    den.cluster(name="cpu", provider="local").save()
    fn.save()
    config = den.load("~/inline").config()["config"]
    assert config["env"] == {"reqs": ["numpy"]}
    assert config["system"] == "/alice/cpu"
    # Unchanged references are not saved again.
    assert den.load("~/cpu").version == 1


def test_history_restore_and_stale_save(users):
    login_as(users, "alice")
    env = den.env(reqs=["a"], name="/alice/env").save()
    env.reqs.append("b")
    env.save()
    assert env.version == 2
    assert [v["version"] for v in env.history()] == [2, 1]

    other = den.env(name="~/env")  # another process loads version 2
    env.reqs.append("c")
    env.save()  # version 3
    other.python = "3.11"
    with pytest.raises(den.Conflict) as info:
        other.save()
    assert info.value.status == 412
    other.save(force=True)
    assert other.version == 4

    env.restore(1)
    assert env.version == 5
    assert env.reqs == ["a"]
    assert den.env(name="~/env").reqs == ["a"]

    env.delete()
    with pytest.raises(den.NotFound):
        den.load("~/env")


def test_secret_values(users):
    login_as(users, "alice")
    secret = den.secret(name="aws", provider="aws", values={"AWS_KEY": "k1"}).save()
    loaded = den.secret(name="~/aws")
    assert "values" not in loaded.config()["config"]
    assert loaded.values == {"AWS_KEY": "k1"}
    secret.set_values({"AWS_KEY": "k2"})
    assert den.secret(name="~/aws").get_values() == {"AWS_KEY": "k2"}


def test_visibility_and_list_filters(users):
    login_as(users, "alice")
    den.resource(name="pub", data={"a": 1}).share(visibility="public")
    den.env(reqs=["x"], name="priv").save()
    mine = {item["address"]: item for item in den.list(owner="~")}
    assert set(mine) == {"/alice/pub", "/alice/priv"}
    assert mine["/alice/pub"]["visibility"] == "public"
    assert [i["address"] for i in den.list(type="env", owner="alice")] == ["/alice/priv"]
    login_as(users, "bob")
    assert [i["address"] for i in den.list(owner="alice")] == ["/alice/pub"]


def test_tokens(users):
    login_as(users, "alice")
    made = den.create_token("ci", scope="read", expires_in_days=1)
    assert made["token"].startswith("den_")
    assert "ci" in [t["name"] for t in den.list_tokens()]
    den.login(url=users, token=made["token"], persist=False)
    assert den.whoami()["username"] == "alice"
    with pytest.raises(den.PermissionDenied):
        den.env(reqs=["x"], name="ro").save()
    login_as(users, "alice")
    den.revoke_token(made["id"])
    den.login(url=users, token=made["token"], verify=False, persist=False)
    with pytest.raises(den.AuthenticationError):
        den.whoami()


def test_async_api(users):
    token = login_as(users, "alice")

    async def main():
        await den.alogin(url=users, token=token, persist=False)
        env = await den.env(reqs=["x"], name="aenv").asave()
        loaded = await den.aload("~/aenv")
        assert loaded.reqs == ["x"]
        loaded.reqs = ["y"]
        await loaded.asave()
        history = await loaded.ahistory()
        await env.areload()
        return env, history

    env, history = asyncio.run(main())
    assert env.version == 2 and env.reqs == ["y"]
    assert [v["version"] for v in history] == [2, 1]


# -- the CLI -------------------------------------------------------------------------


def den_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    den_session.reset()
    code = cli.main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_cli(users, monkeypatch):
    bob_token = login_as(users, "bob")
    alice_token = login_as(users, "alice")
    den.function(sample_code.train).save()
    monkeypatch.setenv("DEN_URL", users)
    monkeypatch.setenv("DEN_TOKEN", alice_token)

    code, out, _ = den_cli("whoami")
    assert code == 0 and out.startswith("alice")

    code, out, _ = den_cli("ls")
    assert code == 0 and "/alice/train" in out and "function" in out

    code, out, _ = den_cli("show", f"{users}/alice/train")
    assert code == 0 and "version 1" in out and '"qualname": "train"' in out

    code, out, _ = den_cli("share", "/alice/train", "bob", "carol@example.com", "--access", "read")
    assert code == 0
    assert "bob can now read /alice/train" in out
    assert "carol@example.com has no account yet" in out

    code, out, _ = den_cli("access", "~/train", "--json")
    assert code == 0
    data = json.loads(out)
    assert [g["username"] for g in data["grants"]] == ["bob"]
    assert [p["email"] for p in data["pending"]] == ["carol@example.com"]

    code, out, _ = den_cli("visibility", "~/train", "unlisted")
    assert code == 0 and "unlisted" in out

    # bob reads it; writes are refused with exit code 4
    monkeypatch.setenv("DEN_TOKEN", bob_token)
    code, out, _ = den_cli("ls", "--shared", "--json")
    assert [item["address"] for item in json.loads(out)] == ["/alice/train"]
    code, _, err = den_cli("visibility", "/alice/train", "public")
    assert code == cli.EXIT_PERMISSION, err
    code, _, err = den_cli("rm", "--yes", "/alice/train")
    assert code == cli.EXIT_PERMISSION, err

    monkeypatch.setenv("DEN_TOKEN", alice_token)
    code, _, _ = den_cli("revoke", "/alice/train", "bob")
    assert code == 0
    code, _, _ = den_cli("visibility", "/alice/train", "private")
    monkeypatch.setenv("DEN_TOKEN", bob_token)
    code, _, err = den_cli("show", "/alice/train")
    assert code == cli.EXIT_NOT_FOUND, err

    monkeypatch.setenv("DEN_TOKEN", alice_token)
    den_session.reset()  # the environment changed: re-read it
    fn = den.function(name="/alice/train")
    fn.data["note"] = "v2"
    fn.save()
    code, out, _ = den_cli("history", "/alice/train", "--json")
    assert [v["version"] for v in json.loads(out)] == [2, 1]
    code, out, _ = den_cli("restore", "/alice/train", "1")
    assert code == 0 and "version 3" in out

    code, out, _ = den_cli("token", "create", "ci-token", "--scope", "read", "--json")
    assert code == 0
    made = json.loads(out)
    code, out, _ = den_cli("token", "ls")
    assert "ci-token" in out
    code, _, _ = den_cli("token", "revoke", "ci-token")
    assert code == 0
    monkeypatch.setenv("DEN_TOKEN", made["token"])
    code, _, err = den_cli("whoami")
    assert code == cli.EXIT_AUTH, err

    monkeypatch.setenv("DEN_TOKEN", alice_token)
    code, out, _ = den_cli("rm", "--yes", "/alice/train")
    assert code == 0
    code, _, _ = den_cli("show", "/alice/train")
    assert code == cli.EXIT_NOT_FOUND


def test_cli_login_with_password(users, monkeypatch, isolated_client):
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    code, out, err = den_cli("login", "--url", users, "-u", "alice", "--password-stdin")
    assert code == 0, err
    assert "as alice" in out
    assert oct(os.stat(isolated_client).st_mode & 0o777) == "0o600"
    code, out, _ = den_cli("whoami", "--json")
    assert json.loads(out)["username"] == "alice"


def test_python_dash_m_den_in_a_subprocess(users, tmp_path):
    token = login_as(users, "alice")
    den.env(reqs=["numpy"], name="shell-env").save()
    env = {
        **os.environ,
        "DEN_URL": users,
        "DEN_TOKEN": token,
        "DEN_CONFIG": str(tmp_path / "sub.yaml"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "den", "ls", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert [item["address"] for item in json.loads(done.stdout)] == ["/alice/shell-env"]
    done = subprocess.run(
        [sys.executable, "-m", "den", "show", "/alice/nothing"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == cli.EXIT_NOT_FOUND
    assert done.stderr.startswith("den: error:")
