"""Tokens and secret values never sit in the database in the clear, and no
log line carries a token."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess

import httpx
import pytest
from django.db import connection

from registry import services
from tests.factories import ResourceFactory, UserFactory, make_token

SECRET_VALUE = "sk-live-4242-very-secret-value"


def _pg_dump() -> str:
    settings_dict = connection.settings_dict
    pg_dump = shutil.which("pg_dump") or "/usr/lib/postgresql/15/bin/pg_dump"
    env = {**os.environ, "PGPASSWORD": settings_dict.get("PASSWORD") or ""}
    result = subprocess.run(
        [
            pg_dump,
            "-h", settings_dict["HOST"] or "127.0.0.1",
            "-p", str(settings_dict["PORT"] or 5432),
            "-U", settings_dict["USER"],
            "--data-only",
            settings_dict["NAME"],
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return result.stdout


@pytest.mark.django_db(transaction=True)
def test_database_dump_holds_no_token_or_secret_value(live_server):
    if connection.vendor != "postgresql":
        pytest.skip("the dump check runs against PostgreSQL")
    alice = UserFactory(username="alice")
    plain_token = make_token(alice)
    box = ResourceFactory(owner=alice, name="aws", type="secret", config={"provider": "aws"})
    response = httpx.put(
        f"{live_server.url}/api/v1/resources/alice/aws/-/secret",
        json={"values": {"AWS_SECRET_ACCESS_KEY": SECRET_VALUE}},
        headers={"Authorization": f"Bearer {plain_token}"},
    )
    assert response.status_code == 204
    invitation = services.invitation_create(actor=alice, email="new@example.com")

    dump = _pg_dump()
    assert "registry_apitoken" in dump and "registry_secretvalue" in dump  # the dump is real
    assert plain_token not in dump
    assert plain_token[4:] not in dump
    assert SECRET_VALUE not in dump
    assert invitation.plain_token not in dump
    # ...and the value still reads back for a write-access holder.
    values = services.secret_read_values_audited(actor=alice, resource=box)
    assert values == {"AWS_SECRET_ACCESS_KEY": SECRET_VALUE}


@pytest.mark.django_db(transaction=True)
def test_no_log_line_holds_a_token(live_server, caplog):
    caplog.set_level(logging.DEBUG)
    alice = UserFactory(username="alice")
    good = make_token(alice)
    revoked = make_token(alice)
    from registry.credentials import hash_token
    from registry.models import ApiToken

    services.token_revoke(user=alice, token_id=ApiToken.objects.get(token_hash=hash_token(revoked)).pk)
    bad_checksum = good[:-1] + ("A" if good[-1] != "A" else "B")
    with httpx.Client(base_url=live_server.url) as client:
        for token in (good, revoked, bad_checksum):
            headers = {"Authorization": f"Bearer {token}"}
            client.get("/api/v1/me", headers=headers)
            client.get("/api/v1/resources/alice/missing", headers=headers)
            client.post("/api/v1/resources", content=b"{not json", headers=headers)
            client.get("/api/v1/auth/check?address=/alice/x", headers=headers)
        login = client.post("/api/v1/auth/login", json={"username": "alice", "password": "x"})
        assert login.status_code == 401
    logged = "\n".join(record.getMessage() + str(record.args) for record in caplog.records)
    assert caplog.records  # 4xx responses were logged, just without tokens
    for token in (good, revoked, bad_checksum):
        assert token not in logged
        assert token[4:20] not in logged
