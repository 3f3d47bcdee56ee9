"""Organisations from the shell and from Python, against a live den server:
``den org``, ``den team``, ``den sa``, ``den share --team`` and
``den.function(fn, name="/acme/...")`` / ``share(teams=[...])``."""

from __future__ import annotations

import json

import pytest

import den
from tests.client.test_e2e import PASSWORD, den_cli, login_as, server  # noqa: F401

from . import sample_code

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def people(server):  # noqa: F811
    from django.contrib.auth import get_user_model

    User = get_user_model()
    for name in ("alice", "bob", "carol"):
        User.objects.create_user(name, f"{name}@example.com", PASSWORD)
    return server


def test_org_team_and_service_account_from_the_cli(people, monkeypatch):
    bob_token = login_as(people, "bob")
    alice_token = login_as(people, "alice")
    monkeypatch.setenv("DEN_URL", people)
    monkeypatch.setenv("DEN_TOKEN", alice_token)

    assert den_cli("org", "create", "acme")[0] == 0
    code, out, _ = den_cli("org", "add", "acme", "bob", "new@example.com")
    assert code == 0 and "bob is now a member of acme" in out and "new@example.com" in out
    code, out, _ = den_cli("org", "members", "acme")
    assert "alice" in out and "admin" in out and "new@example.com (invited)" in out
    code, _, err = den_cli("org", "add", "acme", "nobody")
    assert code == 2 and "nobody" in err
    code, _, err = den_cli("org", "remove", "acme", "alice")
    assert code == 5 and "last admin" in err  # 409

    assert den_cli("team", "create", "acme/ml")[0] == 0
    code, out, _ = den_cli("team", "add", "acme/ml", "bob")
    assert code == 0 and "bob" in out
    code, _, err = den_cli("team", "create", "acme/ml/x")
    assert code == 2

    # Python: save into the org and share a personal function with the team.
    den.function(sample_code.train, name="/acme/train").save()
    mine = den.function(sample_code.train, name="train").save()
    result = mine.share(teams=["acme/ml"], access_level="write")
    assert result["teams"] == ["acme/ml"]
    code, out, _ = den_cli("access", "~/train")
    assert "acme/ml (team)" in out

    monkeypatch.setenv("DEN_TOKEN", bob_token)
    code, out, _ = den_cli("ls", "--json")
    listed = {row["address"] for row in json.loads(out)}
    assert {"/acme/train", "/alice/train"} <= listed
    code, out, _ = den_cli("org", "ls")
    assert "acme" in out and "member" in out

    monkeypatch.setenv("DEN_TOKEN", alice_token)
    code, out, _ = den_cli("revoke", "~/train", "--team", "acme/ml")
    assert code == 0
    monkeypatch.setenv("DEN_TOKEN", bob_token)
    assert den_cli("show", "/alice/train")[0] == 3

    monkeypatch.setenv("DEN_TOKEN", alice_token)
    code, out, _ = den_cli("sa", "create", "acme", "airflow")
    assert code == 0 and "acme:airflow" in out
    code, out, err = den_cli("sa", "token", "create", "acme", "airflow", "prod", "--scope", "read")
    assert code == 0 and "not shown again" in err
    sa_token = out.strip()
    monkeypatch.setenv("DEN_TOKEN", sa_token)
    code, out, _ = den_cli("show", "/acme/train", "--json")
    assert code == 0 and json.loads(out)["resource"]["access_level"] == "read"
    assert den_cli("show", "/alice/train")[0] == 3
    monkeypatch.setenv("DEN_TOKEN", alice_token)
    assert den_cli("sa", "rm", "acme", "airflow")[0] == 0
    monkeypatch.setenv("DEN_TOKEN", sa_token)
    assert den_cli("show", "/acme/train")[0] == 6  # 401: the account is gone

    monkeypatch.setenv("DEN_TOKEN", alice_token)
    code, _, err = den_cli("org", "transfer", "~/train", "acme")
    assert code == 5 and "/acme/train" in err  # 409: acme has a train already
    den.function(sample_code.train, name="solo").save()
    code, out, _ = den_cli("org", "transfer", "~/solo", "acme")
    assert code == 0 and "/acme/solo" in out
