"""Den auth on the daemon, against a tiny fake den that answers /api/v1/auth/check
(:class:`tests.node.conftest.FakeDen`)."""

from __future__ import annotations

import base64
import os
import pickle
import time
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import httpx
import pytest

from den.node.caller import NodeClient
from den.node.errors import DenUnavailable, NodeForbidden, NodeUnauthorized, ObjectNotFound

from .conftest import CLUSTER, Daemon, FakeDen, free_port


@pytest.fixture(scope="module")
def den() -> Iterator[FakeDen]:
    fake = FakeDen()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def authed(den: FakeDen, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("authed"), "--den-url", den.url,
               "--cluster-address", CLUSTER, "--auth-cache-seconds", "1",
               "--heartbeat-seconds", "0.3", token="den_cluster_secret")
    yield d
    d.stop()


def client(d: Daemon, token: str | None) -> NodeClient:
    return NodeClient(d.url, token=token, stream=None)


def echo(x):
    return x


class Marker:
    """Unpickling this creates a file: proof that something was unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_health_needs_no_token(authed: Daemon) -> None:
    assert httpx.get(authed.url + "/health").json()["status"] == "ok"


def test_levels_map_to_statuses(authed: Daemon) -> None:
    with client(authed, "den_alice") as alice:
        alice.put_function("echo", echo)
        alice.put_function("train", echo, address="/alice/train")
        assert alice.call("echo", args=(1,)) == 1
    with client(authed, "den_bob") as bob:
        assert bob.call("echo", args=(2,)) == 2  # read on the cluster is enough to call
        with pytest.raises(NodeForbidden):
            bob.put_function("mine", echo)  # writes need write on the cluster
        with pytest.raises(NodeForbidden):
            bob.put_code("0" * 64, b"")
    with client(authed, "den_carol") as carol:
        assert carol.call("train", args=(3,)) == 3  # checked against the object's address
        with pytest.raises(ObjectNotFound):
            carol.call("echo", args=(3,))  # not allowed on the cluster: looks missing
        with pytest.raises(ObjectNotFound):
            carol.list_objects()
    with client(authed, "den_unknown") as stranger, pytest.raises(NodeUnauthorized):
        stranger.call("echo", args=(4,))
    with client(authed, None) as anonymous, pytest.raises(NodeUnauthorized):
        anonymous.call("echo", args=(4,))


def test_refused_requests_are_never_unpickled(authed: Daemon, tmp_path: Path) -> None:
    with client(authed, "den_alice") as alice:
        alice.put_function("echo", echo)
    marker = tmp_path / "unpickled"
    evil = cloudpickle.dumps(((Marker(str(marker)),), {}))
    for token, status in (("den_unknown", 401), ("den_carol", 404), (None, 401)):
        headers = {"content-type": "application/x-cloudpickle"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        resp = httpx.post(f"{authed.url}/objects/echo/call", content=evil, headers=headers)
        assert resp.status_code == status
    # A put carries pickles too (base64 in JSON); a reader may not put.
    spec = {"kind": "function", "by_value": base64.b64encode(pickle.dumps(Marker(str(marker))))
            .decode()}
    resp = httpx.put(f"{authed.url}/objects/evil", json=spec,
                     headers={"authorization": "Bearer den_bob"})
    assert resp.status_code == 403
    time.sleep(0.2)
    assert not marker.exists()
    # Control: the same bytes from an authorised caller do get unpickled (by the worker).
    resp = httpx.post(f"{authed.url}/objects/echo/call", content=evil,
                      headers={"content-type": "application/x-cloudpickle",
                               "authorization": "Bearer den_alice"})
    assert resp.status_code == 200
    assert marker.exists()


def test_answers_are_cached_and_revocation_takes_effect(authed: Daemon, den: FakeDen) -> None:
    with client(authed, "den_alice") as alice:
        alice.put_function("echo", echo)
    den.grants["den_dave"] = {CLUSTER: "read"}
    with client(authed, "den_dave") as dave:
        before = len(den.checks)
        for i in range(20):
            assert dave.call("echo", args=(i,)) == i
        asked = [c for c in den.checks[before:] if c[0] == "den_dave"]
        # One check per level (read to call, write to decide how to unpickle), then
        # the cache.
        assert sorted(asked) == [("den_dave", CLUSTER, "read"), ("den_dave", CLUSTER, "write")]
        del den.grants["den_dave"]  # revoked: den now answers 401
        revoked_at = time.monotonic()
        while True:
            try:
                dave.call("echo", args=(0,))
            except NodeUnauthorized:
                break
            assert time.monotonic() - revoked_at < 3, "revocation did not take effect"
            time.sleep(0.05)
        assert time.monotonic() - revoked_at <= 1.5


def test_heartbeats_use_the_cluster_token(authed: Daemon, den: FakeDen) -> None:
    deadline = time.monotonic() + 5
    while not den.heartbeats and time.monotonic() < deadline:
        time.sleep(0.05)
    path, auth, body = den.heartbeats[-1]
    assert path == "/api/v1/resources/alice/cpu/-/cluster/heartbeat"
    assert auth == "Bearer den_cluster_secret"
    assert set(body) == {"last_activity", "calls_in_flight", "objects", "draining"}
    # Den's 404 (no endpoint yet) is logged once, not on every beat.
    assert authed.log().count("answered 404 to a heartbeat") <= 1


def test_the_cluster_token_may_come_in_a_file_that_is_deleted(den: FakeDen,
                                                              tmp_path: Path) -> None:
    """The other intake (for hosts where stdin is not at hand): a 0600 file,
    read and deleted at start, so the token lies on no disk while it serves."""
    token_file = tmp_path / "token"
    token_file.write_text("den_from_a_file\n")
    token_file.chmod(0o600)
    d = Daemon(tmp_path, "--den-url", den.url, "--cluster-address", CLUSTER,
               "--heartbeat-seconds", "0.3", "--cluster-token-file", str(token_file))
    try:
        assert not token_file.exists()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(
                auth == "Bearer den_from_a_file" for _, auth, _ in den.heartbeats):
            time.sleep(0.05)
        assert any(auth == "Bearer den_from_a_file" for _, auth, _ in den.heartbeats)
    finally:
        d.stop()
    # A token file that cannot be read stops the daemon, saying which.
    missing = tmp_path / "gone"
    with pytest.raises(RuntimeError, match="cannot read the cluster token file"):
        Daemon(tmp_path, "--den-url", den.url, "--cluster-address", CLUSTER,
               "--cluster-token-file", str(missing))


def test_den_unreachable_is_503(tmp_path: Path) -> None:
    gone = f"http://127.0.0.1:{free_port()}"
    d = Daemon(tmp_path, "--den-url", gone, "--cluster-address", CLUSTER)
    try:
        with client(d, "den_alice") as alice, pytest.raises(DenUnavailable, match="could not reach den"):
            alice.list_objects()
        resp = httpx.get(d.url + "/objects", headers={"authorization": "Bearer den_x"})
        assert resp.status_code == 503
    finally:
        d.stop()


def test_autostop_when_idle_and_den_unreachable(tmp_path: Path) -> None:
    gone = f"http://127.0.0.1:{free_port()}"
    d = Daemon(tmp_path, "--den-url", gone, "--cluster-address", CLUSTER,
               "--autostop-mins", "0.02", wait=False)  # 1.2 s: it may stop before it is seen up
    try:
        d.proc.wait(timeout=30)
        assert "autostop" in d.log()
    finally:
        d.stop()


def test_flags_may_come_from_env_vars(tmp_path: Path) -> None:
    env_before = dict(os.environ)
    os.environ["DEN_NODE_DEN_AUTH"] = "0"
    try:
        from den.node.config import parse_args

        assert parse_args([]).den_auth is False
        assert parse_args(["--port", "1234"]).port == 1234
    finally:
        os.environ.clear()
        os.environ.update(env_before)


def test_refused_before_the_body_is_read(authed: Daemon) -> None:
    """A stranger's 50 MB upload is answered without the daemon reading the body."""
    import socket

    with client(authed, "den_alice") as alice:
        alice.put_function("echo", echo)
    s = socket.create_connection(("127.0.0.1", authed.port), timeout=10)
    s.sendall(b"POST /objects/echo/call HTTP/1.1\r\nHost: x\r\n"
              b"Authorization: Bearer den_unknown\r\n"
              b"Content-Type: application/x-den-pickle\r\nContent-Length: 52428800\r\n\r\n")
    answer = s.recv(65536)  # no body sent at all
    assert answer.startswith(b"HTTP/1.1 401")
    assert b"connection: close" in answer.lower()
    s.close()
