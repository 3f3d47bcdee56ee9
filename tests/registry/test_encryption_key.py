"""DEN_ENCRYPTION_KEY must hold Fernet keys: a passphrase (which den used to
turn into a key with one unsalted SHA-256) stops every den process at start
with an error that says how to make a key, and never echoes the passphrase.
Fernet keys, one or several for rotation, keep working."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet

from registry import credentials

PASSPHRASE = "correct horse battery staple"
A_KEY = "Lp3eaQAtAVwrJu-2DYZvNAXNZ19SWGeRA3VIXR5icTk="  # a Fernet key (fixed: test ids must be)


def _start(tmp_path, key: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEN_ENCRYPTION_KEY": key, "DEN_HOME": str(tmp_path),
           "DJANGO_SETTINGS_MODULE": "den.settings"}
    return subprocess.run([sys.executable, "-c", "import django; django.setup()"],
                          capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("key", [PASSPHRASE, f"{A_KEY},{PASSPHRASE}"],
                         ids=["passphrase", "key-then-passphrase"])
def test_a_passphrase_is_refused_at_start_with_how_to_make_a_key(tmp_path, key):
    started = _start(tmp_path, key)
    assert started.returncode != 0
    assert "DEN_ENCRYPTION_KEY" in started.stderr
    assert "Fernet.generate_key()" in started.stderr
    assert PASSPHRASE not in started.stderr and "horse" not in started.stderr


def test_fernet_keys_start_fine(tmp_path):
    keys = f"{Fernet.generate_key().decode()},{Fernet.generate_key().decode()}"
    started = _start(tmp_path, keys)
    assert started.returncode == 0, started.stderr


def test_existing_fernet_keys_keep_decrypting(settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    credentials._fernet.cache_clear()
    try:
        settings.DEN_ENCRYPTION_KEYS = [old]
        stored = credentials.encrypt_values({"token": "s3cret"})
        settings.DEN_ENCRYPTION_KEYS = [new, old]  # rotated: the new one encrypts
        credentials._fernet.cache_clear()
        assert credentials.decrypt_values(stored) == {"token": "s3cret"}
        assert Fernet(new.encode()).decrypt(credentials.encrypt_values({"a": "b"}).encode())
    finally:
        credentials._fernet.cache_clear()


def test_the_check_names_the_bad_key_without_showing_it():
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured) as raised:
        credentials.check_encryption_keys([Fernet.generate_key().decode(), PASSPHRASE])
    assert "key 2 of 2" in str(raised.value) and PASSPHRASE not in str(raised.value)
