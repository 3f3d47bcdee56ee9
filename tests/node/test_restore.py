"""A daemon that restarted puts saved objects back from den's copy
(den.node.restore), against a fake den: only for a caller who may read the
address the call names, asking den once however many calls arrive together,
and saying plainly when den holds no copy."""

from __future__ import annotations

import io
import json
import tarfile
import threading
from collections.abc import Iterator

import pytest

from den.node import bundle
from den.node.caller import NodeClient, function_spec, module_spec
from den.node.errors import ObjectNotFound

from .conftest import CLUSTER, Daemon, FakeDen

NAME = "alice.train-0123456789"
PATH = "/api/v1/resources/alice/train/-/deployment"


def double(x):
    return 2 * x


class Tally:
    def __init__(self, start: int = 0) -> None:
        self.n = start

    def add(self, k: int) -> int:
        self.n += k
        return self.n


@pytest.fixture
def den() -> Iterator[FakeDen]:
    fake = FakeDen()
    yield fake
    fake.stop()


@pytest.fixture
def restarted(den: FakeDen, tmp_path) -> Iterator[Daemon]:
    """A daemon that holds nothing (as after a restart), with den auth on."""
    d = Daemon(tmp_path, "--den-url", den.url, "--cluster-address", CLUSTER,
               "--heartbeat-seconds", "30", token="den_cluster_secret")
    yield d
    d.stop()


def _offer(den: FakeDen, spec: dict, name: str = NAME, restores: str = "",
           code: str | None = None) -> None:
    body = {"name": name, "spec": spec, "restores_state": restores, "code": code}
    den.deployments[PATH] = (200, json.dumps(body).encode(), "application/json")


def test_concurrent_first_calls_share_one_restore(den: FakeDen, restarted: Daemon) -> None:
    _offer(den, function_spec(double, address="/alice/train"))
    den.deployment_delay = 0.5
    results: list[object] = []

    def call() -> None:
        with NodeClient(restarted.url, token="den_bob", stream=None) as client:
            results.append(client.call(NAME, args=(21,), address="/alice/train"))

    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [42] * 6
    # Asked once, with the daemon's own cluster token; each caller checked itself.
    assert den.deployment_gets == [(PATH, "den_cluster_secret")]
    assert sum(1 for token, address, _ in den.checks
               if token == "den_bob" and address == "/alice/train") >= 1
    with NodeClient(restarted.url, token="den_bob", stream=None) as client:
        assert client.call(NAME, args=(1,), address="/alice/train") == 2
    assert len(den.deployment_gets) == 1


def test_den_is_not_asked_for_a_caller_who_may_not_read_the_address(
        den: FakeDen, restarted: Daemon) -> None:
    _offer(den, function_spec(double, address="/alice/train"))
    den.grants["den_eve"] = {CLUSTER: "read"}  # the cluster, not the function
    with NodeClient(restarted.url, token="den_eve", stream=None) as client, \
            pytest.raises(ObjectNotFound):
        client.call(NAME, args=(1,), address="/alice/train")
    assert den.deployment_gets == []


def test_without_a_copy_in_den_the_error_says_the_state_is_lost(
        den: FakeDen, restarted: Daemon) -> None:
    with NodeClient(restarted.url, token="den_bob", stream=None) as client:
        with pytest.raises(ObjectNotFound, match="state it had is lost"):
            client.call(NAME, args=(1,), address="/alice/train")
        # A copy under another name is not this object.
        _offer(den, function_spec(double, address="/alice/train"), name="other-name")
        with pytest.raises(ObjectNotFound, match="state it had is lost"):
            client.call(NAME, args=(1,), address="/alice/train")
        # No address, no restore: the old answer, with a hint.
        with pytest.raises(ObjectNotFound, match="restarted"):
            client.call(NAME, args=(1,))


def test_a_module_comes_back_from_its_constructor_arguments_and_says_so(
        den: FakeDen, restarted: Daemon) -> None:
    _offer(den, module_spec(Tally, init_args=(10,), address="/alice/train"), restores="init")
    output: list[tuple[str, str]] = []
    with NodeClient(restarted.url, token="den_bob", stream=None) as client:
        assert client.call(NAME, "add", args=(1,), address="/alice/train",
                           stream=lambda s, t: output.append((s, t))) == 11
    assert any(stream == "log" and "constructor arguments" in text for stream, text in output)


def test_the_code_bundle_comes_from_den_too(den: FakeDen, restarted: Daemon, tmp_path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "shipped.py").write_text("def triple(x):\n    return 3 * x\n")
    sha, data = bundle.bundle_project(project)
    spec = function_spec(None, address="/alice/train", code=sha,
                         pointers={"module": "shipped", "qualname": "triple"})
    _offer(den, spec, code=sha)
    den.deployments[PATH + "/code"] = (200, data, "application/gzip")
    with NodeClient(restarted.url, token="den_bob", stream=None) as client:
        assert client.call(NAME, args=(5,), address="/alice/train") == 15
    assert [path for path, _ in den.deployment_gets] == [PATH, PATH + "/code"]
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert "shipped.py" in tar.getnames()
