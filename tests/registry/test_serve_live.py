"""``manage.py serve`` as a real subprocess on PostgreSQL and Redis, with two
web workers, tested from the outside over HTTP.

The server gets a database of its own (created here, dropped at the end)
beside the test database, and a cache key prefix of its own in the test
Redis, so nothing it does touches other tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg2
import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
USERS = 12
RESOURCES_PER_USER = 3
# Generous bounds: the machine is shared; these say "answers at all".
ANSWER_TIMEOUT = 30.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _admin_connection(url: str):
    conn = psycopg2.connect(urllib.parse.urlsplit(url)._replace(path="/postgres").geturl())
    conn.autocommit = True
    return conn


@dataclass
class Served:
    url: str
    env: dict[str, str]
    home: Path
    log: Path
    tokens: dict[str, str] = field(default_factory=dict)

    def manage(self, *args: str, env: dict[str, str] | None = None) -> str:
        result = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO,
                                env=env or self.env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    def client(self, user: str | None = None, **kwargs) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        return httpx.Client(base_url=self.url, headers=headers,
                            timeout=kwargs.pop("timeout", ANSWER_TIMEOUT), **kwargs)


SEED = """
import json
from django.contrib.auth import get_user_model
from registry import services
out = {}
for i in range(%(users)d):
    user = get_user_model().objects.create_user(f"user{i}", f"user{i}@example.com", "pw pw pw 1234")
    for j in range(%(resources)d):
        services.resource_create(actor=user, name=f"secret{j}", type="env",
                                 config={"env_vars": {"OWNER": user.username, "N": str(j)}})
    services.resource_create(actor=user, name="box", type="cluster", config={"provider": "local"})
    _, out[user.username] = services.token_create(user=user, name="t", scope="write",
                                                  expires_in_days=1)
print("TOKENS " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith("postgres"):
        pytest.skip("needs the test PostgreSQL (DATABASE_URL)")
    name = f"test_serve_{uuid.uuid4().hex[:10]}"
    admin = _admin_connection(base)
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    tmp = tmp_path_factory.mktemp("serve")
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DEN_", "DJANGO_", "CELERY_"))}
    env.update({
        "DATABASE_URL": urllib.parse.urlsplit(base)._replace(path=f"/{name}").geturl(),
        "DEN_HOME": str(tmp / "home"),
        "DEN_SECRET_KEY": "serve-test-" + uuid.uuid4().hex,
        "DEN_CACHE_KEY_PREFIX": f"serve-{uuid.uuid4().hex[:8]}:",
        "DEN_LOGIN_RATE": "100000/min",
        "DEN_CLUSTER_EVENTS_STREAM_SECONDS": "120",
        "DEN_LOG_LEVEL": "WARNING",
    })
    log = tmp / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--bind", f"127.0.0.1:{port}",
             "--workers", "2", "--no-worker"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = Served(url=f"http://127.0.0.1:{port}", env=env, home=tmp / "home", log=log)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, f"serve exited:\n{log.read_text()[-3000:]}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, f"serve did not start:\n{log.read_text()[-3000:]}"
            time.sleep(0.2)
        seeded = server.manage("shell", "-c", SEED % {"users": USERS,
                                                      "resources": RESOURCES_PER_USER})
        server.tokens = json.loads(seeded.split("TOKENS ", 1)[1])
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def test_every_response_belongs_to_its_caller(served):
    """Many users at once, each reading their own private resources: no
    response carries another user's data (serve must not share one database
    connection among its workers)."""
    wrong: list[str] = []
    answered = []
    lock = threading.Lock()

    def read_own(username: str) -> None:
        with served.client(username) as client:
            for i in range(24):
                n = i % RESOURCES_PER_USER
                path = "/api/v1/me" if i % 4 == 0 else f"/api/v1/resources/{username}/secret{n}"
                try:
                    response = client.get(path)
                    body = response.json()
                except (httpx.HTTPError, ValueError) as exc:
                    with lock:
                        wrong.append(f"{username} {path}: {exc!r}")
                    continue
                if path == "/api/v1/me":
                    mine = response.status_code == 200 and body.get("username") == username
                else:
                    env_vars = (body.get("config") or {}).get("env_vars") or {}
                    mine = (response.status_code == 200 and body.get("owner") == username
                            and env_vars == {"OWNER": username, "N": str(n)})
                with lock:
                    answered.append(path)
                    if not mine:
                        wrong.append(f"{username} {path}: {response.status_code} {str(body)[:120]}")

    threads = [threading.Thread(target=read_own, args=(name,)) for name in served.tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not wrong, f"{len(wrong)} of {len(answered)} answers were not the caller's:\n" + \
        "\n".join(wrong[:10])
    assert len(answered) == USERS * 24


def test_stalled_sockets_do_not_stop_den(served):
    """200 sockets that each send half a request head and stall: a normal
    request still gets its answer."""
    host, port = "127.0.0.1", int(served.url.rsplit(":", 1)[1])
    stalled = []
    try:
        for _ in range(200):
            sock = socket.create_connection((host, port), timeout=10)
            sock.sendall(b"GET /api/v1/me HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bea")
            stalled.append(sock)
        with served.client("user0") as client:
            assert client.get("/api/v1/me").json()["username"] == "user0"
            assert client.get("/healthz").status_code == 200
    finally:
        for sock in stalled:
            sock.close()


def _open_stream(stack: contextlib.ExitStack, client: httpx.Client, path: str) -> httpx.Response:
    response = stack.enter_context(
        client.stream("GET", path, headers={"Accept": "text/event-stream"}))
    if response.status_code == 200:
        first = next(response.iter_raw())  # the stream has started: "retry: ..."
        assert first.startswith(b"retry:")
    return response


def test_event_streams_are_limited_per_user_and_hold_no_request_worker(served):
    """Two streams from one user stay open while other requests (that user's
    and another's) still answer; a third stream is refused with 429; closing
    one gives its slot back."""
    events = "/api/v1/resources/user1/box/-/cluster/events"
    with contextlib.ExitStack() as stack:
        streams = [stack.enter_context(served.client("user1")) for _ in range(3)]
        first = _open_stream(stack, streams[0], events)
        second = _open_stream(stack, streams[1], events)
        assert first.status_code == second.status_code == 200
        with served.client("user1") as same, served.client("user2") as other:
            for _ in range(5):
                assert same.get("/api/v1/me").status_code == 200
                assert other.get("/api/v1/resources/user2/secret0").status_code == 200
        third = _open_stream(stack, streams[2], events)
        assert third.status_code == 429
        third.read()
        error = json.loads(third.content)["error"]
        assert error["code"] == "throttled" and "2 event streams open" in error["message"]
        # Another user has streams of their own.
        with served.client("user2") as other, contextlib.ExitStack() as theirs:
            assert _open_stream(theirs, other, "/api/v1/resources/user2/box/-/cluster/events"
                                ).status_code == 200
        first.close()
        streams[0].close()
    # The slots come back when the streams close (the server notices soon).
    with served.client("user1") as client, contextlib.ExitStack() as stack:
        deadline = time.monotonic() + ANSWER_TIMEOUT
        opened = []
        while len(opened) < 2:
            response = _open_stream(stack, client if not opened else
                                    stack.enter_context(served.client("user1")), events)
            if response.status_code == 200:
                opened.append(response)
            else:
                response.close()
                assert time.monotonic() < deadline, "closed streams did not give back their slots"
                time.sleep(0.5)


def test_event_stream_wait_must_be_a_finite_number(served):
    with served.client("user1") as client:
        for wait in ("nan", "inf", "-1", "soon"):
            response = client.get(f"/api/v1/resources/user1/box/-/cluster/events?wait={wait}",
                                  headers={"Accept": "text/event-stream"})
            assert response.status_code == 400, wait
            assert response.json()["error"]["field"] == "wait"


def test_an_oversized_body_gets_413_before_it_is_read(served):
    with served.client("user0") as client:
        response = client.put("/api/v1/resources/user0/big",
                              content=b"x" * (4 * 1024 * 1024),
                              headers={"Content-Type": "application/json"})
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "too_large"
        assert client.get("/api/v1/me").status_code == 200


def test_invite_prints_links_to_the_served_url(served):
    """``manage.py invite`` run beside ``serve --bind HOST:PORT`` (same
    DEN_HOME, no DEN_PUBLIC_URL) links to where serve listens."""
    env = {k: v for k, v in served.env.items() if k != "DEN_PUBLIC_URL"}
    out = served.manage("invite", "newcomer@example.com", env=env)
    link = out.strip().splitlines()[-1]
    assert link.startswith(f"{served.url}/invite/"), out
    assert httpx.get(link, timeout=ANSWER_TIMEOUT).status_code == 200
    path = served.home / "served-url"
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_first_admin_has_an_unreserved_name(served):
    out = served.manage("shell", "-c", "from django.contrib.auth import get_user_model; "
                        "print([u.username for u in get_user_model().objects.filter("
                        "is_superuser=True)])")
    assert "den-admin" in out
    password = (served.home / "initial-admin-password").read_text().strip()
    response = httpx.post(f"{served.url}/api/v1/auth/login",
                          json={"username": "den-admin", "password": password},
                          timeout=ANSWER_TIMEOUT)
    assert response.status_code == 201
    assert "no-store" in response.headers["Cache-Control"]


def test_pages_sessions_static_files_and_head_work_through_the_server(served):
    """The web server under serve handles what browsers do: cookies, CSRF
    forms, redirects, static files, HEAD."""
    password = (served.home / "initial-admin-password").read_text().strip()
    with httpx.Client(base_url=served.url, timeout=ANSWER_TIMEOUT) as browser:
        page = browser.get("/login")
        assert page.status_code == 200 and "csrftoken" in browser.cookies
        signed_in = browser.post("/login", data={
            "username": "den-admin", "password": password,
            "csrfmiddlewaretoken": browser.cookies["csrftoken"]},
            headers={"Referer": f"{served.url}/login"})
        assert signed_in.status_code == 302, signed_in.text[:500]
        dashboard = browser.get("/")
        assert dashboard.status_code == 200
        assert {"private", "no-store"} <= {part.strip() for part in
                                           dashboard.headers["Cache-Control"].split(",")}
        css = browser.get("/static/frontend/den.css")
        assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css")
        assert int(css.headers["Content-Length"]) == len(css.content) > 0
        head = browser.head("/static/frontend/den.css")
        assert head.status_code == 200 and head.content == b""
        assert browser.head("/healthz").status_code == 200
