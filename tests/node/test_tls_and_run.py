"""A daemon serving HTTPS with a certificate den made, pinned by its callers;
and ``POST /run``, shell commands with their output streamed back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from compute.backends.tls import make_daemon_cert
from den.node.caller import NodeClient
from den.node.errors import NodeError, NodeUnreachable
from den.node.pinning import PinMismatch, pinned_context

from .conftest import CLUSTER, Daemon, FakeDen


def _https_daemon(tmp: Path) -> tuple[Daemon, tuple[str, str]]:
    cert = make_daemon_cert(CLUSTER, ["127.0.0.1"])
    (tmp / "tls.crt").write_text(cert.cert_pem)
    (tmp / "tls.key").write_text(cert.key_pem)
    daemon = Daemon(tmp, "--no-den-auth", "--tls-cert-file", str(tmp / "tls.crt"),
                    "--tls-key-file", str(tmp / "tls.key"), wait=False)
    daemon.url = daemon.url.replace("http://", "https://")
    pin = (cert.cert_pem, cert.fingerprint)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if daemon.proc.poll() is not None:
            raise RuntimeError(daemon.log())
        try:
            httpx.get(daemon.url + "/health", verify=pinned_context(*pin), timeout=1)
            return daemon, pin
        except httpx.HTTPError:
            time.sleep(0.05)
    daemon.stop()
    raise RuntimeError(daemon.log())


def double(x):
    return 2 * x


def test_https_with_the_pinned_certificate_and_nothing_else(tmp_path):
    daemon, pin = _https_daemon(tmp_path)
    try:
        with NodeClient(daemon.url, stream=None, tls=pin) as node:
            assert node.health()["status"] == "ok"
            node.put_function("double", double)
            assert node.call("double", args=(21,)) == 42
        # Another certificate (as an impostor's would be) fails the handshake.
        other = make_daemon_cert(CLUSTER, ["127.0.0.1"])
        with NodeClient(daemon.url, stream=None, tls=(other.cert_pem, other.fingerprint)) \
                as impostor, pytest.raises(NodeUnreachable, match="certificate verify failed"):
            impostor.health()
        # A certificate that does not match the fingerprint given with it is refused.
        with pytest.raises(PinMismatch):
            pinned_context(pin[0], other.fingerprint)
        # Plain HTTP gets nothing from it.
        with pytest.raises(httpx.HTTPError):
            httpx.get(daemon.url.replace("https://", "http://") + "/health", timeout=2)
    finally:
        daemon.stop()


@pytest.fixture(scope="module")
def den() -> Iterator[FakeDen]:
    fake = FakeDen()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def authed(den: FakeDen, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("run"), "--den-url", den.url,
               "--cluster-address", CLUSTER, "--auth-cache-seconds", "1",
               token="den_cluster_secret", env={"DEN_NODE_LOG_LEVEL": "warning"})
    yield d
    d.stop()


def test_run_streams_output_for_writers_only(authed):
    seen: list[tuple[str, str]] = []
    with NodeClient(authed.url, token="den_alice", stream=None) as writer:
        code, out, err = writer.run_command("echo hi; echo oops >&2; exit 3",
                                            stream=lambda s, t: seen.append((s, t)))
        assert (code, out, err) == (3, "hi\n", "oops\n")
        assert sorted(seen) == [("stderr", "oops\n"), ("stdout", "hi\n")]
        assert writer.run_command(["printf", "%s|", "a b", "c"]) == (0, "a b|c|", "")
        # Nothing secret reaches the command: no token, no DEN_NODE_* variable.
        _, env, _ = writer.run_command("env")
        assert "den_cluster_secret" not in env and "DEN_NODE_" not in env
        code, _, _ = writer.run_command("sleep 30", timeout=0.5)
        assert code == -9
    with NodeClient(authed.url, token="den_bob", stream=None) as reader, \
            pytest.raises(NodeError) as refused:
        reader.run_command("id")
    assert refused.value.status == 403
    assert httpx.post(authed.url + "/run", json={"command": "id"}).status_code == 401
    bad = httpx.post(authed.url + "/run", json={"command": []},
                     headers={"Authorization": "Bearer den_alice"})
    assert bad.status_code == 400 and "command must be" in bad.json()["error"]["message"]
