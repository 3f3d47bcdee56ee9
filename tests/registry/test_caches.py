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


def test_the_json_file_cache_behaves_as_a_cache(tmp_path):
    from den.caches import JSONFileBasedCache

    cache = JSONFileBasedCache(str(tmp_path / "c"), {"OPTIONS": {"MAX_ENTRIES": 4}})
    cache.set("a", {"n": [1, 2.5, None, True]}, 60)
    assert cache.get("a") == {"n": [1, 2.5, None, True]}
    assert cache.add("a", 1) is False and cache.add("b", 1, 60) is True
    assert cache.incr("b") == 2 and cache.get("b") == 2
    assert cache.touch("a", 120) and cache.get("a") == {"n": [1, 2.5, None, True]}
    assert cache.get_many(["a", "b", "missing"]) == {"a": {"n": [1, 2.5, None, True]}, "b": 2}
    cache.set("gone", "x", -1)
    assert cache.get("gone", "default") == "default"
    assert oct((tmp_path / "c").stat().st_mode & 0o777) == "0o700"
    with pytest.raises(TypeError):
        cache.set("code", Bomb(tmp_path / "x"))  # not JSON: refused on the way in
    # Full (4 entries), it drops expired entries before any live one.
    cache.set("old1", 1, -1)  # written already expired
    cache.set("old2", 1, -1)
    assert len(list((tmp_path / "c").iterdir())) == 4
    cache.set("new", "live", 60)
    assert cache.get("a") and cache.get("b") == 2 and cache.get("new") == "live"


def test_the_redis_cache_stores_json_and_counts_atomically(own_redis_prefix):
    cache, client = own_redis_prefix
    cache.set("den:x", ("epoch", {"level": "read"}), 60)
    assert cache.get("den:x") == ["epoch", {"level": "read"}]
    assert json.loads(client.get(cache.make_key("den:x"))) == ["epoch", {"level": "read"}]
    cache.set("den:n", 1, 60)
    assert cache.incr("den:n", 5) == 6 and client.get(cache.make_key("den:n")) == b"6"
    client.set(cache.make_key("den:bad"), b"\x80\x04not json", ex=60)
    assert cache.get("den:bad", "miss") == "miss"
    assert cache.get_many(["den:bad", "den:n"]) == {"den:n": 6}
