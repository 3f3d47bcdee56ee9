"""Nothing read from a cache decodes into code, and a forged entry is a miss.

A pickle whose reduce would create a file is written under real cache keys
(a made-up token's, and the access epoch) in the real Redis and in the
embedded file cache; requests that read those keys never create the file
and treat the entry as a miss.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis
from django.core.cache import caches

from registry import authcache, credentials, services
from tests.factories import UserFactory, make_token

pytestmark = pytest.mark.django_db
REPO = Path(__file__).resolve().parents[2]


class Bomb:
    """Unpickling this creates ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "a"))


def embedded_caches(home: Path) -> dict:
    """The CACHES den's settings give with no REDIS_URL (embedded defaults)."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env["DEN_HOME"] = str(home)
    code = "import json, den.settings as s; print(json.dumps(s.CACHES))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout)


@pytest.fixture
def own_redis_prefix(settings):
    """The real Redis cache, under a key prefix of this test's own."""
    assert "redis" in settings.CACHES["default"]["BACKEND"].lower()
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    settings.CACHES = {alias: {**config, "KEY_PREFIX": prefix + config.get("KEY_PREFIX", "")}
                       for alias, config in settings.CACHES.items()}
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    yield caches["default"], client
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)


def _made_up_token() -> tuple[str, str]:
    plain = credentials.new_token()  # well-formed, never stored
    return plain, f"den:token:{credentials.hash_token(plain)}"


def test_a_pickle_in_redis_is_never_unpickled(own_redis_prefix, api, tmp_path):
    cache, client = own_redis_prefix
    marker = tmp_path / "unpickled"
    plain, key = _made_up_token()
    bomb = pickle.dumps(Bomb(marker))
    client.set(cache.make_key(key), bomb, ex=60)
    client.set(cache.make_key(authcache.EPOCH_KEY), bomb, ex=60)
    response = api.as_token(plain).get("/api/v1/me")
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Unknown token."
    assert not marker.exists()
    # A real user's request reads the same epoch key, and works.
    alice = UserFactory(username="alice")
    assert api.as_token(make_token(alice)).get("/api/v1/me").json()["username"] == "alice"
    assert not marker.exists()


def test_a_pickle_in_the_file_cache_is_never_unpickled(settings, api, tmp_path):
    settings.CACHES = embedded_caches(tmp_path / "home")
    cache = caches["default"]
    marker = tmp_path / "unpickled"
    plain, key = _made_up_token()
    for name in (key, authcache.EPOCH_KEY):
        path = Path(cache._key_to_file(name))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(Bomb(marker)))
    response = api.as_token(plain).get("/api/v1/me")
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Unknown token."
    assert not marker.exists()
    alice = UserFactory(username="alice")
    assert api.as_token(make_token(alice)).get("/api/v1/me").json()["username"] == "alice"
    assert not marker.exists()


def test_a_forged_plain_entry_is_a_miss(own_redis_prefix, api):
    """JSON alone would let whoever writes to Redis claim a made-up token is
    an administrator's; each entry's HMAC under the secret key refuses that."""
    cache, client = own_redis_prefix
    admin = UserFactory(username="root1", is_staff=True, is_superuser=True)
    real = make_token(admin)
    assert api.as_token(real).get("/api/v1/me").status_code == 200  # caches a genuine entry
    genuine = cache.get(f"den:token:{credentials.hash_token(real)}")
    epoch, value, _mac = genuine
    plain, key = _made_up_token()
    forged = {**value, "token": {**value["token"], "token_hash": credentials.hash_token(plain)}}
    for mac in ("0" * 64, _mac):  # made up, or copied from the genuine entry
        cache.set(key, [epoch, forged, mac], 60)
        response = api.as_token(plain).get("/api/v1/me")
        assert response.status_code == 401, mac


def test_a_cached_token_is_plain_fields_and_needs_no_query(own_redis_prefix,
                                                           django_assert_num_queries):
    cache, client = own_redis_prefix
    alice = UserFactory(username="alice", email="alice@example.com")
    plain = make_token(alice)
    services.token_authenticate(plain=plain)  # caches it (and stamps last_used_at)
    raw = client.get(cache.make_key(f"den:token:{credentials.hash_token(plain)}"))
    entry = json.loads(raw)  # JSON, not a pickle
    assert "password" not in entry[1]["user"] and alice.password not in raw.decode()
    with django_assert_num_queries(0):
        token = services.token_authenticate(plain=plain)
        assert token.user.username == "alice" and token.user.pk == alice.pk
        assert token.user.is_active and token.scope == "write"
    assert "password" in token.user.get_deferred_fields()
