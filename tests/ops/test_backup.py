"""Backup, wipe, restore, verify: for the embedded SQLite den and for
PostgreSQL, through ``manage.py den_backup`` / ``den_restore`` and a live den
before and after (its API is what is checked, not the tables)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet

from tests.ops.conftest import REPO

pytestmark = pytest.mark.e2e

SECRET = {"values": {"ssh_private_key": "-----BEGIN KEY----- not really", "token": "t0p"}}


def populate(den) -> None:
    """Users, a token, versions, a share and a secret, made over HTTP."""
    den.seed("alice", "bob")
    with den.client("alice") as alice:
        for config in ({"reqs": ["numpy"]}, {"reqs": ["numpy", "pandas"]}):
            put = alice.put("/api/v1/resources/alice/sk", json={"type": "env", "config": config})
            assert put.status_code in (200, 201), put.text
        share = alice.put("/api/v1/resources/alice/sk/-/access",
                          json={"users": ["bob"], "level": "read"})
        assert share.status_code == 200, share.text
        made = alice.put("/api/v1/resources/alice/creds",
                         json={"type": "secret", "config": {"provider": "ssh"}})
        assert made.status_code == 201, made.text
        stored = alice.put("/api/v1/resources/alice/creds/-/secret", json=SECRET)
        assert stored.status_code in (200, 204), stored.text


def verify(den) -> None:
    """Everything is back: tokens authenticate, versions, grants and the
    secret's values (decrypted) are as they were, passwords sign in."""
    with den.client("alice") as alice, den.client("bob") as bob:
        assert alice.get("/api/v1/me").json()["username"] == "alice"
        sk = alice.get("/api/v1/resources/alice/sk").json()
        assert sk["version"] == 2 and sk["config"] == {"reqs": ["numpy", "pandas"]}
        versions = alice.get("/api/v1/resources/alice/sk/-/versions").json()
        assert [v["version"] for v in versions["results"]] in ([2, 1], [1, 2])
        assert bob.get("/api/v1/resources/alice/sk").status_code == 200  # the grant
        assert bob.get("/api/v1/resources/alice/creds").status_code == 404
        secret = alice.get("/api/v1/resources/alice/creds/-/secret")
        assert secret.status_code == 200, secret.text
        assert secret.json()["values"] == SECRET["values"]
        login = alice.post("/api/v1/auth/login",
                           json={"username": "bob", "password": "pw pw pw 1234"})
        assert login.status_code == 201, login.text


def private(path) -> bool:
    return stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_sqlite_backup_wipe_restore(make_den, tmp_path):
    den = make_den()
    del den.env["DEN_SECRET_KEY"]  # both keys generated into DEN_HOME, as by default
    den.start()
    populate(den)
    backup = tmp_path / "den-backup.tar"
    den.manage("den_backup", str(backup))  # online: den is still serving
    assert private(backup)
    with den.client("alice") as alice:
        assert alice.get("/api/v1/me").status_code == 200
    den.stop()

    shutil.rmtree(den.home)  # everything: the database and both keys
    restored = den.manage("den_restore", str(backup)).stdout
    assert "1 secrets decrypt" in restored
    assert private(den.home / "encryption_key") and private(den.home / "secret_key")
    den.start()
    verify(den)
    # What the restore and the restarted den wrote (keys, database, metrics
    # files, caches) is private like the rest of DEN_HOME; static files aside.
    loose = [f"{p.relative_to(den.home)} {oct(stat.S_IMODE(p.stat().st_mode))}"
             for p in den.home.rglob("*") if "static" not in p.relative_to(den.home).parts
             and stat.S_IMODE(p.stat().st_mode) != (0o700 if p.is_dir() else 0o600)]
    assert not loose, loose
    assert any((den.home / "metrics").glob("*.db"))


def test_postgresql_backup_wipe_restore(make_den, database, tmp_path):
    keys = {"DEN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "DEN_SECRET_KEY": "backup-test-secret-key-1"}
    den = make_den(DATABASE_URL=database.url, **keys)
    den.start()
    populate(den)
    backup = tmp_path / "den-backup.tar"
    den.manage("den_backup", str(backup))
    assert private(backup)
    den.stop()

    database.drop()
    database.create()  # empty
    shutil.rmtree(den.home)
    # Keys from the environment must be the backup's: other keys are refused
    # and nothing is restored.
    other = {**den.env, "DEN_ENCRYPTION_KEY": Fernet.generate_key().decode()}
    refused = subprocess.run([sys.executable, "manage.py", "den_restore", str(backup)],
                             cwd=REPO, env=other, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0
    assert "DEN_ENCRYPTION_KEY does not hold the keys" in refused.stderr
    keys_file = tmp_path / "keys.env"
    den.manage("den_restore", "--keys-out", str(keys_file), str(backup))
    assert private(keys_file)
    assert f"DEN_ENCRYPTION_KEY={keys['DEN_ENCRYPTION_KEY']}" in keys_file.read_text()

    # A database that is not empty is refused.
    again = den.manage("den_restore", str(backup), check=False)
    assert again.returncode != 0 and "not empty" in again.stderr

    den.start()
    verify(den)
