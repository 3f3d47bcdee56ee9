"""Token strings and secret encryption: the two places den handles key material.

A token is ``den_`` + 30 random base62 characters + a 6-character base62
CRC32 of them. The checksum lets den (and secret scanners) reject a mistyped or
made-up token without a database lookup; only the SHA-256 of the whole token
is stored.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import zlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

TOKEN_PREFIX = "den_"
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_RANDOM_LENGTH = 30
_CHECKSUM_LENGTH = 6
TOKEN_LENGTH = len(TOKEN_PREFIX) + _RANDOM_LENGTH + _CHECKSUM_LENGTH


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        digits.append(_ALPHABET[digit])
    return "".join(reversed(digits))


def _checksum(random_part: str) -> str:
    return _base62(zlib.crc32(random_part.encode()), _CHECKSUM_LENGTH)


def new_token() -> str:
    """A fresh token string, to be shown once and then only kept as a hash."""
    random_part = "".join(secrets.choice(_ALPHABET) for _ in range(_RANDOM_LENGTH))
    return TOKEN_PREFIX + random_part + _checksum(random_part)


def token_from_digest(digest: bytes) -> str:
    """A well-formed token made from ``digest`` (at least 23 bytes of a keyed
    hash), for tokens den must be able to derive again, never to store."""
    random_part = _base62(int.from_bytes(digest, "big"), _RANDOM_LENGTH)
    return TOKEN_PREFIX + random_part + _checksum(random_part)


def token_is_well_formed(token: str) -> bool:
    """True when the token has den's shape and its checksum matches."""
    if len(token) != TOKEN_LENGTH or not token.startswith(TOKEN_PREFIX):
        return False
    body = token[len(TOKEN_PREFIX) :]
    random_part, checksum = body[:_RANDOM_LENGTH], body[_RANDOM_LENGTH:]
    if any(char not in _ALPHABET for char in body):
        return False
    return secrets.compare_digest(_checksum(random_part), checksum)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_hint(token: str) -> str:
    return token[-4:]


MAKE_KEY_COMMAND = (
    'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
)


def check_encryption_keys(keys: list[str]) -> None:
    """Refuse anything in DEN_ENCRYPTION_KEY that is not a Fernet key, at start.

    den once accepted a passphrase and made a key of it with one unsalted
    SHA-256, which makes a guessable passphrase a guessable key. Refusing is
    simpler and honest: a Fernet key is 32 random bytes, so it needs no key
    derivation. The error names the key by position, never by value.
    """
    from django.core.exceptions import ImproperlyConfigured

    if not keys:
        raise ImproperlyConfigured(
            f"DEN_ENCRYPTION_KEY is empty. Make a key with: {MAKE_KEY_COMMAND}"
        )
    for position, key in enumerate(keys, 1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise ImproperlyConfigured(
                f"DEN_ENCRYPTION_KEY: key {position} of {len(keys)} is not a Fernet key "
                "(den no longer turns a passphrase into a key). Make a key with: "
                f"{MAKE_KEY_COMMAND} and set DEN_ENCRYPTION_KEY to it (comma-separated "
                "keys: the first encrypts, all decrypt). Secrets stored under a passphrase: "
                "see \"Tokens and secrets\" in den's README."
            ) from None


@lru_cache(maxsize=1)
def _fernet() -> MultiFernet:
    keys = list(settings.DEN_ENCRYPTION_KEYS)
    check_encryption_keys(keys)
    return MultiFernet([Fernet(key) for key in keys])


def encrypt_values(values: dict[str, str]) -> str:
    return _fernet().encrypt(json.dumps(values).encode()).decode()


def decrypt_values(ciphertext: str) -> dict[str, str]:
    """Decrypt secret values; a wrong or missing key is an operator error, said plainly."""
    try:
        return json.loads(_fernet().decrypt(ciphertext.encode()))
    except InvalidToken as exc:
        raise RuntimeError(
            "Cannot decrypt secret values: DEN_ENCRYPTION_KEY does not hold the key they "
            "were encrypted with."
        ) from exc
