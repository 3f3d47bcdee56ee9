"""Django settings for den, read from the environment.

Every knob has a default that gives a working single-machine den ("embedded
defaults": SQLite and a broker that needs no server, all under ``DEN_HOME``).
Production sets ``DATABASE_URL``, ``CELERY_BROKER_URL``, ``DEN_SECRET_KEY`` and
``DEN_ENCRYPTION_KEY``; see ``.env.example`` for the whole list.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ops.logs import logging_config as _logging_config

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


DEN_HOME = Path(env("DEN_HOME", str(Path.home() / ".den" / "server"))).expanduser()

# Everything den writes is its own: keys, the SQLite database and its journals,
# emails with sign-up links, the broker's messages, the cache. A umask makes
# each of those private where it is made (by den, SQLite, kombu or Django), and
# the processes den starts get modes of their own (compute/backends/local.py).
os.umask(0o077)


def _private_home(home: Path, public: Path) -> None:
    """Make DEN_HOME 0700, with its files 0600 and folders 0700, fixing the
    modes that older versions (or a umask of 022) left. Code on a local cluster
    runs as another OS user when den is root, and must not read any of it.
    ``public`` (the static files) is left alone."""
    home.mkdir(parents=True, exist_ok=True)
    for folder, dirs, files in os.walk(home):
        if Path(folder) == public:
            dirs[:] = []
            continue
        for name in (".", *dirs, *files):
            path = os.path.join(folder, name)
            try:
                mode = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISLNK(mode.st_mode) or not mode.st_mode & 0o077:
                continue
            with contextlib.suppress(OSError):  # not ours, or gone
                os.chmod(path, 0o700 if stat.S_ISDIR(mode.st_mode) else 0o600)
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]


_private_home(DEN_HOME, Path(env("DEN_STATIC_ROOT", str(DEN_HOME / "static"))))


def _key_from_file(name: str, make: Callable[[], str]) -> str:
    """Read a key kept under DEN_HOME, creating it (mode 0600) on first start.

    This keeps a single-machine den's sessions and encrypted secrets valid across
    restarts without any setup. Several machines must share the key through the
    environment instead.
    """
    DEN_HOME.mkdir(parents=True, exist_ok=True)
    path = DEN_HOME / name
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(make())
    return path.read_text().strip()


def _new_fernet_key() -> str:
    import base64

    return base64.urlsafe_b64encode(os.urandom(32)).decode()


SECRET_KEY = env("DEN_SECRET_KEY") or _key_from_file("secret_key", lambda: secrets.token_urlsafe(50))
# Comma-separated Fernet keys; the first encrypts, all decrypt (key rotation).
DEN_ENCRYPTION_KEYS = env_list("DEN_ENCRYPTION_KEY") or [
    _key_from_file("encryption_key", _new_fernet_key)
]

DEBUG = env_bool("DEN_DEBUG", False)
ALLOWED_HOSTS = env_list("DEN_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
# The address people reach den at; used for resource URLs and invitation links.
DEN_PUBLIC_URL = env("DEN_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
CSRF_TRUSTED_ORIGINS = env_list("DEN_CSRF_TRUSTED_ORIGINS")
# Public resources are readable without signing in only when the server opts in.
DEN_ANONYMOUS_READ_PUBLIC = env_bool("DEN_ANONYMOUS_READ_PUBLIC", False)
DEN_TOKEN_DEFAULT_EXPIRY_DAYS = int(env("DEN_TOKEN_DEFAULT_EXPIRY_DAYS", "90"))
DEN_INVITATION_EXPIRY_DAYS = int(env("DEN_INVITATION_EXPIRY_DAYS", "14"))
DEN_MAX_CONFIG_BYTES = 1024 * 1024
# How long token lookups and access answers may be served from the cache. Any
# change to access invalidates them at once (registry/authcache.py); this only
# bounds how long a missed invalidation could last.
DEN_AUTH_CACHE_SECONDS = int(env("DEN_AUTH_CACHE_SECONDS", "30"))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "registry",
    "compute",
    "frontend",
    "rhcompat",
    "ops",
]

MIDDLEWARE = [
    # First: every later log line of a request carries its id (ops/logs.py).
    "ops.middleware.RequestIdMiddleware",
    "ops.middleware.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "ops.middleware.ContentSecurityPolicyMiddleware",
    # Static files (the UI's CSS, htmx, the admin) served by den itself.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Cache-Control: private, no-store on everything a credential unlocks.
    "den.middleware.PrivateCacheControlMiddleware",
]

ROOT_URLCONF = "den.urls"
WSGI_APPLICATION = "den.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def _database() -> dict[str, Any]:
    url = env("DATABASE_URL")
    if url:
        import dj_database_url

        # Persistent connections: a new PostgreSQL connection per request would
        # cost more than the request itself. No per-request health check (a
        # round trip on every request, Django's default is off too): after a
        # database restart each worker fails one request, then reconnects.
        config = dj_database_url.parse(url, conn_max_age=600, conn_health_checks=False)
        return dict(config)
    DEN_HOME.mkdir(parents=True, exist_ok=True)
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(DEN_HOME / "den.sqlite3"),
        "OPTIONS": {
            # WAL and a busy timeout let the web server and the Celery worker
            # share one SQLite file without "database is locked" errors.
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
        },
    }


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "registry.User"
# People sign in; organisations and service accounts (user rows too) never do.
AUTHENTICATION_BACKENDS = ["registry.backends.PersonBackend"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env("DEN_STATIC_ROOT", str(DEN_HOME / "static"))
# Static files (CSS, scripts) are public: despite the umask above, a web server
# in front of den may serve DEN_STATIC_ROOT (inside DEN_HOME, they stay behind
# its mode 0700).
Path(STATIC_ROOT).mkdir(parents=True, exist_ok=True)
# A static root collected into an image (the Dockerfile's /app/static) is
# root's, and den there runs as another user: it is public already.
with contextlib.suppress(PermissionError):
    os.chmod(STATIC_ROOT, 0o755)  # noqa: S103 - public files
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage",
        "OPTIONS": {"file_permissions_mode": 0o644, "directory_permissions_mode": 0o755},
    },
}
# Serve app static files straight from the apps too, so a den started without
# collectstatic (tests, development) still has its stylesheet and scripts.
WHITENOISE_USE_FINDERS = True
LOGIN_URL = "/login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login"

# Request bodies: a config may be up to 1 MiB; leave room for JSON escaping and
# the envelope. Bigger bodies are answered with 413 before they are parsed.
DATA_UPLOAD_MAX_MEMORY_SIZE = 3 * 1024 * 1024

_redis_url = env("REDIS_URL")
# Prefixes every cache key: several dens (or test runs) can share one Redis.
_cache_prefix = env("DEN_CACHE_KEY_PREFIX")


def _caches() -> dict[str, dict[str, Any]]:
    """Two caches: ``default`` (token lookups, access answers) and
    ``throttle`` (rate-limit counters and open-stream slots), which other
    traffic can never cull. Both store JSON only (den/caches.py): nothing
    read from a cache decodes into code. Without Redis they are files, not
    process memory, since the web processes must see each other's writes."""
    if _redis_url:
        # Short socket timeouts: a Redis that does not answer is a cache
        # miss (den.caches), and no request should wait long to learn it.
        redis = {"BACKEND": "den.caches.RedisCache", "LOCATION": _redis_url,
                 "OPTIONS": {"serializer": "den.caches.JSONSerializer",
                             "socket_connect_timeout": 1.0, "socket_timeout": 2.0}}
        # Redis evicts nothing unless told to (maxmemory-policy), so one
        # server holds both, apart by their key prefixes.
        return {"default": {**redis, "KEY_PREFIX": _cache_prefix},
                "throttle": {**redis, "KEY_PREFIX": f"{_cache_prefix}throttle"}}
    files = "den.caches.JSONFileBasedCache"
    return {
        "default": {"BACKEND": files, "LOCATION": str(DEN_HOME / "cache"),
                    "OPTIONS": {"MAX_ENTRIES": 2000}},
        # Its own directory, culled only past 100,000 live entries (and
        # expired ones go first): flooding the default cache cannot erase
        # a sign-in counter.
        "throttle": {"BACKEND": files, "LOCATION": str(DEN_HOME / "throttle"),
                     "OPTIONS": {"MAX_ENTRIES": 100_000}},
    }


CACHES = _caches()

# Without a mail server, emails (invitation and password-reset links) are
# written as files under DEN_HOME/outbox, not printed: those links are secrets
# and must not land in a log.
EMAIL_BACKEND = env("DEN_EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")
EMAIL_FILE_PATH = env("DEN_EMAIL_FILE_PATH", str(DEN_HOME / "outbox"))
EMAIL_HOST = env("DEN_EMAIL_HOST", "localhost")
EMAIL_PORT = int(env("DEN_EMAIL_PORT", "25"))
EMAIL_HOST_USER = env("DEN_EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env("DEN_EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("DEN_EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env("DEN_EMAIL_FROM", "den <den@localhost>")

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# Trusted proxies in front of den: how many X-Forwarded-For hops to believe
# (throttles, the metrics allow-list) and whether X-Forwarded-Proto may say
# that a request came over HTTPS.
DEN_NUM_PROXIES = int(env("DEN_NUM_PROXIES", "0"))

# A den served at an https:// URL gets the settings a public HTTPS site needs
# (each can still be set on its own): cookies sent over HTTPS only, HSTS, and,
# behind a proxy that ends TLS, X-Forwarded-Proto believed so that Django
# knows the request was secure. Without a proxy (DEN_NUM_PROXIES=0) that
# header is never believed: any client could send it.
DEN_HTTPS = DEN_PUBLIC_URL.lower().startswith("https://")
SESSION_COOKIE_SECURE = env_bool("DEN_SECURE_COOKIES", DEN_HTTPS)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = int(env("DEN_HSTS_SECONDS", "31536000" if DEN_HTTPS else "0"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DEN_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("DEN_HSTS_PRELOAD", False)
if DEN_HTTPS and DEN_NUM_PROXIES > 0:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Redirect plain-HTTP requests to HTTPS (off by default: a proxy in front
# usually does it, and health checks often come over plain HTTP).
SECURE_SSL_REDIRECT = env_bool("DEN_SSL_REDIRECT", False)
SECURE_REDIRECT_EXEMPT = [r"^livez$", r"^readyz$", r"^healthz$", r"^metrics$"]
# Forms posted from den's own public URL pass the CSRF origin check.
if DEN_HTTPS and DEN_PUBLIC_URL not in CSRF_TRUSTED_ORIGINS:
    from urllib.parse import urlsplit as _urlsplit

    _public = _urlsplit(DEN_PUBLIC_URL)
    CSRF_TRUSTED_ORIGINS.append(f"{_public.scheme}://{_public.netloc}")
# Content-Security-Policy on every HTML page (ops/middleware.py): den's pages
# load scripts, styles and images from den itself and run no inline code.
DEN_CSP = env("DEN_CSP", "; ".join([
    "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
    "font-src 'self'", "connect-src 'self'", "object-src 'none'", "base-uri 'self'",
    "form-action 'self'", "frame-ancestors 'none'"]))

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "registry.api.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["registry.api.permissions.TokenScopePermission"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "registry.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_THROTTLE_RATES": {"login": env("DEN_LOGIN_RATE", "30/min")},
    # Throttles count by client address. With no proxy in front (0), only the
    # socket's address counts, so a forged X-Forwarded-For cannot dodge the
    # login limit; behind N trusted proxies set DEN_NUM_PROXIES=N.
    "NUM_PROXIES": DEN_NUM_PROXIES,
}

# Mail that den sends on someone's behalf is limited (registry/throttling.py):
# invitations per inviting user per hour and per request, password-reset
# emails per address and per client address per hour.
DEN_INVITATIONS_PER_HOUR = int(env("DEN_INVITATIONS_PER_HOUR", "20"))
DEN_INVITATIONS_PER_REQUEST = int(env("DEN_INVITATIONS_PER_REQUEST", "10"))
DEN_PASSWORD_RESETS_PER_ADDRESS = int(env("DEN_PASSWORD_RESETS_PER_ADDRESS", "3"))
DEN_PASSWORD_RESETS_PER_CLIENT = int(env("DEN_PASSWORD_RESETS_PER_CLIENT", "10"))

SPECTACULAR_SETTINGS = {
    "TITLE": "den API",
    "DESCRIPTION": "Registry and compute service for ML teams: resources, versions, "
    "sharing, tokens and clusters.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI's scripts and styles come from den itself (the sidecar
    # package), pinned with den's dependencies, never from a public CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

CELERY_BROKER_URL = env("CELERY_BROKER_URL") or "filesystem://"
if CELERY_BROKER_URL == "filesystem://":
    _broker_dir = DEN_HOME / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # Redis has no acknowledgements of its own: kombu keeps a delivered message
    # in an "unacked" set and hands it out again once it has been there for
    # visibility_timeout seconds (its default is an hour). With acks_late that
    # is how a message held by a worker killed with -9 comes back, so an hour
    # is far too long for a start that has a two-minute deadline. It must
    # still be longer than any compute task may hold a message: a countdown
    # or retry waiting for its time (polls: seconds; retries: at most
    # DEN_CLUSTER_TASK_RETRY_MAX_SECONDS) plus the task's hard time limit,
    # or a message still being worked on is handed out twice (harmless, as
    # every step is fenced and idempotent, but wasted work). Ten minutes
    # covers 60 s + 150 s with room; den's sweep resumes lost steps sooner.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": int(env("DEN_CELERY_VISIBILITY_TIMEOUT", "600")),
    }
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND") or None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
# Workers started without -Q consume both queues; compute's tasks go to "compute"
# so that a deployment can give clusters their own workers.
# DEN_COMPUTE_QUEUE renames that queue (tests give each run its own); tasks
# that enqueue tasks (a start's polls) send them there too.
DEN_COMPUTE_QUEUE = env("DEN_COMPUTE_QUEUE", "compute")
CELERY_TASK_QUEUES: dict[str, dict] = {"celery": {}, DEN_COMPUTE_QUEUE: {}}
CELERY_TASK_ROUTES = {"compute.*": {"queue": DEN_COMPUTE_QUEUE}}

# Compute: clusters and their node daemons (seconds unless named otherwise).
# The URL daemons call back (heartbeats, token checks); den's public URL unless
# the daemons reach den at another address.
DEN_CLUSTER_DEN_URL = (env("DEN_CLUSTER_DEN_URL") or DEN_PUBLIC_URL).rstrip("/")
DEN_CLUSTER_HEARTBEAT_SECONDS = float(env("DEN_CLUSTER_HEARTBEAT_SECONDS", "30"))
# No heartbeat for this long marks an up cluster unreachable.
DEN_CLUSTER_HEARTBEAT_TIMEOUT = float(env("DEN_CLUSTER_HEARTBEAT_TIMEOUT", "120"))
# How long a daemon caches den's answer to a caller's token (revocation delay).
DEN_CLUSTER_AUTH_CACHE_SECONDS = float(env("DEN_CLUSTER_AUTH_CACHE_SECONDS", "10"))
# A start (begin, then polls) not up after this long fails, and what it began is stopped.
DEN_CLUSTER_START_TIMEOUT = float(env("DEN_CLUSTER_START_TIMEOUT", "120"))
# Every cluster task step (a begin, a poll, a stop) is bounded: past the soft
# limit it fails its request with an event; past the hard one its worker
# process is killed. Backends return in seconds; long work is split into polls.
DEN_CLUSTER_TASK_SOFT_TIME_LIMIT = float(env("DEN_CLUSTER_TASK_SOFT_TIME_LIMIT", "120"))
DEN_CLUSTER_TASK_TIME_LIMIT = float(env("DEN_CLUSTER_TASK_TIME_LIMIT", "150"))
DEN_CLUSTER_TASK_MAX_RETRIES = int(env("DEN_CLUSTER_TASK_MAX_RETRIES", "5"))
DEN_CLUSTER_TASK_RETRY_MAX_SECONDS = int(env("DEN_CLUSTER_TASK_RETRY_MAX_SECONDS", "60"))
# A caller that cannot reach a daemon asks den to check it (a worker does); at
# most one check per cluster this often, and the caller waits this long at most.
DEN_CLUSTER_PROBE_SECONDS = float(env("DEN_CLUSTER_PROBE_SECONDS", "1"))
DEN_CLUSTER_PROBE_WAIT_SECONDS = float(env("DEN_CLUSTER_PROBE_WAIT_SECONDS", "5"))
# Local clusters run their users' code on this server: "admins" (the default)
# lets only staff and superusers bring one up, "everyone" lets any user.
DEN_LOCAL_CLUSTERS = env("DEN_LOCAL_CLUSTERS", "admins").strip().lower()
if DEN_LOCAL_CLUSTERS not in ("admins", "everyone"):
    raise ValueError(f"DEN_LOCAL_CLUSTERS is {DEN_LOCAL_CLUSTERS!r}; set it to 'admins' or "
                     "'everyone'.")
# Where local clusters' daemons keep their files: never inside DEN_HOME.
DEN_CLUSTER_ROOT = env("DEN_CLUSTER_ROOT") or (
    "/var/lib/den/clusters" if os.geteuid() == 0 else str(Path.home() / ".den" / "clusters")
)
# When den runs as root, local daemons run as this unprivileged user (created if missing).
DEN_CLUSTER_USER = env("DEN_CLUSTER_USER", "den-cluster")
# The python3 that user runs the daemon with; empty: the first 3.9+ found in /usr/bin, ...
DEN_CLUSTER_PYTHON = env("DEN_CLUSTER_PYTHON")
DEN_CLUSTER_SWEEP_SECONDS = float(env("DEN_CLUSTER_SWEEP_SECONDS", "30"))
# What den keeps to put saved functions back on a cluster that restarted: code
# bundles (the client's own cap on one is 50 MB) and the daemon's put body of
# each saved function or module (by-value pickles, constructor arguments).
DEN_CODE_BUNDLE_MAX_MB = int(env("DEN_CODE_BUNDLE_MAX_MB", "50"))
DEN_DEPLOYMENT_MAX_MB = int(env("DEN_DEPLOYMENT_MAX_MB", "16"))
# An SSE stream of cluster events lasts at most this long; clients reconnect.
DEN_CLUSTER_EVENTS_STREAM_SECONDS = float(env("DEN_CLUSTER_EVENTS_STREAM_SECONDS", "25"))
# How many event streams one user (or, signed out, one client address) may
# have open at once; each holds a stream thread of a web process.
DEN_CLUSTER_EVENTS_STREAMS_PER_USER = int(env("DEN_CLUSTER_EVENTS_STREAMS_PER_USER", "2"))
# Clouds and Kubernetes through SkyPilot (the den-ml[skypilot] extra; README,
# "Clouds and Kubernetes"). The adapter is den's one boundary with SkyPilot
# ("module:Class"; tests put their fake cloud there).
DEN_SKYPILOT_ADAPTER = env("DEN_SKYPILOT_ADAPTER",
                           "compute.backends.skypilot_adapter:SkyPilotAdapter")
# How the daemons get onto SkyPilot's machines: "ssh" (the SSH backend's
# bootstrap), or "local" (beside the worker: only for a fake cloud whose
# machines are the worker's own, in tests).
DEN_SKYPILOT_BOOTSTRAP = env("DEN_SKYPILOT_BOOTSTRAP", "ssh").strip().lower()
# Cloud machines take minutes: a SkyPilot start has its own, longer deadline.
DEN_SKYPILOT_START_TIMEOUT = float(env("DEN_SKYPILOT_START_TIMEOUT", "1800"))
DEN_SKYPILOT_POLL_SECONDS = float(env("DEN_SKYPILOT_POLL_SECONDS", "5"))
# How long one stop or teardown task waits for SkyPilot before it retries
# (and then picks up the same request again); under the task's soft limit.
DEN_SKYPILOT_WAIT_SECONDS = float(env("DEN_SKYPILOT_WAIT_SECONDS", "60"))
# Names of the clusters den launches: this prefix, then the cluster's id. The
# default carries a tag of this den's secret key, so that two dens sharing one
# SkyPilot API server never take each other's clusters for orphans.
DEN_SKYPILOT_CLUSTER_PREFIX = env("DEN_SKYPILOT_CLUSTER_PREFIX") or (
    "den-" + hashlib.sha256(SECRET_KEY.encode()).hexdigest()[:6] + "-")
# Clusters den launched that it no longer tracks: "teardown" them, or "flag"
# them for an administrator (an audit row and a warning in the logs).
DEN_SKYPILOT_ORPHANS = env("DEN_SKYPILOT_ORPHANS", "teardown").strip().lower()
if DEN_SKYPILOT_ORPHANS not in ("teardown", "flag"):
    raise ValueError(f"DEN_SKYPILOT_ORPHANS is {DEN_SKYPILOT_ORPHANS!r}; set it to "
                     "'teardown' or 'flag'.")
# SkyPilot's own autostop is a backstop for when den is gone: it fires this
# many minutes after den's (which never stops a cluster during a call).
DEN_SKYPILOT_AUTOSTOP_GRACE_MINS = int(env("DEN_SKYPILOT_AUTOSTOP_GRACE_MINS", "30"))
# The beat task that compares SkyPilot's view with den's and sweeps orphans.
DEN_SKYPILOT_SWEEP_SECONDS = float(env("DEN_SKYPILOT_SWEEP_SECONDS", "300"))
CELERY_BEAT_SCHEDULE = {
    "compute-sweep-clusters": {
        "task": "compute.sweep_clusters",
        "schedule": DEN_CLUSTER_SWEEP_SECONDS,
        # A sweep that waited longer than its period is replaced by the next one.
        "options": {"queue": DEN_COMPUTE_QUEUE, "expires": DEN_CLUSTER_SWEEP_SECONDS},
    },
    "compute-sweep-skypilot": {
        "task": "compute.sweep_skypilot",
        "schedule": DEN_SKYPILOT_SWEEP_SECONDS,
        "options": {"queue": DEN_COMPUTE_QUEUE, "expires": DEN_SKYPILOT_SWEEP_SECONDS},
    },
}

# Logs: plain lines, or one JSON object per line (DEN_LOG_FORMAT=json); both
# carry each request's id (ops/logs.py).
DEN_LOG_FORMAT = env("DEN_LOG_FORMAT", "plain").strip().lower()
if DEN_LOG_FORMAT not in ("plain", "json"):
    raise ValueError(f"DEN_LOG_FORMAT is {DEN_LOG_FORMAT!r}; set it to 'plain' or 'json'.")
LOGGING = _logging_config(level=env("DEN_LOG_LEVEL", "INFO"), json_lines=DEN_LOG_FORMAT == "json")

# Celery keeps its hands off the root logger when den writes JSON, so task
# lines come out in den's format too.
CELERY_WORKER_HIJACK_ROOT_LOGGER = DEN_LOG_FORMAT != "json"

# Operators' endpoints (ops/): Prometheus figures at /metrics, for scrapers
# from DEN_METRICS_ALLOW (CIDRs; loopback by default) or with DEN_METRICS_TOKEN.
DEN_METRICS_DIR = env("DEN_METRICS_DIR") or str(DEN_HOME / "metrics")
DEN_METRICS_TOKEN = env("DEN_METRICS_TOKEN")
DEN_METRICS_ALLOW = env_list("DEN_METRICS_ALLOW", "127.0.0.0/8,::1")


def _networks(names: list[str]) -> list[Any]:
    import ipaddress

    networks = []
    for name in names:
        try:
            networks.append(ipaddress.ip_network(name, strict=False))
        except ValueError:
            raise ValueError(f"DEN_METRICS_ALLOW has {name!r}, which is not an address or a "
                             "network (write e.g. 10.0.0.0/8,127.0.0.1).") from None
    return networks


DEN_METRICS_NETWORKS = _networks(DEN_METRICS_ALLOW)
