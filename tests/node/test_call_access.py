"""Who may send what through a call: an access matrix over the call path.

Callers: the owner, a writer of the cluster, a reader (of the cluster and the
function), a reader of the function only, the owner's read-only token, the
cluster's own token (den lets it read its cluster, nothing else), a stranger and
no token. Each sends plain data pickled, pickles that carry code (their unpickling
calls os.system, builtins.exec or subprocess.check_call, each of which would
create a file), a pickle that patches a class, JSON, and private method names.
Writers keep full power (their code runs: the control); everyone else's pickles
are decoded as plain data, so the code is refused with a 400 that names what it
needed, and nothing happens. The fake den answers the daemon's checks as den does
(tests/node/conftest.py).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import httpx
import numpy as np
import pandas as pd
import pytest

from den.node.caller import NodeClient
from den.node.errors import NodeForbidden, PickleRefused

from .conftest import CLUSTER, Daemon, FakeDen
from .evil_pandas import PAYLOADS as EVIL_PANDAS
from .pickle_types import Point

TRAIN = "/alice/train"
COUNTER = "/alice/counter"

GRANTS = {
    "den_alice": {CLUSTER: "write", TRAIN: "write", COUNTER: "write"},  # owner
    "den_wendy": {CLUSTER: "write", TRAIN: "read", COUNTER: "read"},  # writes the cluster
    "den_bob": {CLUSTER: "read", TRAIN: "read", COUNTER: "read"},  # reader
    "den_carol": {TRAIN: "read", COUNTER: "read"},  # may read the function only
    "den_alice_ro": {CLUSTER: "read", TRAIN: "read", COUNTER: "read"},  # read-scoped token
    "den_cluster": {CLUSTER: "read"},  # the cluster's own token
    "den_sam": {},  # a stranger: den answers 404 for everything
}
WRITERS = ("den_alice", "den_wendy")
READERS = ("den_bob", "den_carol", "den_alice_ro")
# The cluster's token and the stranger cannot see /alice/train: 404, as for a
# missing object; no token at all: 401.
REFUSED = {"den_cluster": 404, "den_sam": 404, None: 401}
CALLERS = (*WRITERS, *READERS, *REFUSED)


def echo(x):
    return x


def pandas_index_patched() -> bool:
    import pandas

    return hasattr(pandas.Index, "_den_pwned")


class Counter:
    def __init__(self, start: int) -> None:
        self.count = start

    def get(self) -> int:
        return self.count

    def bump(self) -> int:
        self.count += 1
        return self.count

    def _reset(self) -> int:
        self.count = 0
        return 0

    def __call__(self) -> int:
        return self.count


@pytest.fixture(scope="module")
def den() -> Iterator[FakeDen]:
    fake = FakeDen({k: dict(v) for k, v in GRANTS.items()})
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def node(den: FakeDen, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("access"), "--den-url", den.url,
               "--cluster-address", CLUSTER, token="den_cluster")
    with NodeClient(d.url, token="den_alice", stream=None) as owner:
        owner.put_function("train", echo, address=TRAIN)
        owner.put_function("open", echo)  # no address: callers need read on the cluster
        owner.put_function("points", echo, address=TRAIN,
                           pickle_allow=["tests.node.pickle_types.Point"])
        owner.put_function("patched", pandas_index_patched, address=TRAIN)
        owner.put_module("counter", Counter, init_args=(5,), address=COUNTER)
    yield d
    d.stop()


def post(d: Daemon, token: str | None, path: str, body: bytes,
         ctype: str = "application/x-cloudpickle") -> httpx.Response:
    headers = {"content-type": ctype}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return httpx.post(f"{d.url}{path}", content=body, headers=headers, timeout=30)


class RunsOnUnpickle:
    """A pickle whose unpickling calls ``func(*args)``: code, not data."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def code_payloads(tmp: Path, who: str) -> dict[str, tuple[bytes, Path, str]]:
    """name -> (pickled call arguments, the file the code would create, the global
    a refusal names)."""
    out = {}
    for name, make, refused in (
        ("os.system", lambda p: RunsOnUnpickle(os.system, f"touch {p}"), "posix.system"),
        ("builtins.exec", lambda p: RunsOnUnpickle(exec, f"open({str(p)!r}, 'w').close()"),
         "builtins.exec"),
        ("subprocess", lambda p: RunsOnUnpickle(subprocess.check_call, ["touch", str(p)]),
         "subprocess.check_call"),
    ):
        path = tmp / f"{who}-{name}"
        out[name] = (cloudpickle.dumps(((make(path),), {})), path, refused)
    return out


# A protocol-4 pickle that sets an attribute on the class pandas.Index (BUILD on a
# global), then passes the class: allowed names, but it changes what they name.
PATCH_INDEX = (b"\x80\x04\x8c\x06pandas\x8c\x05Index\x93N}\x8c\x0a_den_pwnedK\x01s\x86b"
               b"\x85}\x86.")


def plain_data() -> dict:
    return {
        "n": 3, "f": 1.5, "s": "text", "b": b"raw", "c": 2j, "set": {1, 2}, "none": None,
        "when": dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC), "r": range(3),
        "array": np.arange(6.0).reshape(2, 3),
        "frame": pd.DataFrame({"a": [1, 2], "b": ["x", "y"],
                               "t": pd.date_range("2024", periods=2, tz="Europe/Paris")}),
        "series": pd.Series(pd.Categorical(["a", "b"])),
    }


def same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    if isinstance(a, pd.DataFrame | pd.Series):
        return a.equals(b)
    return a == b


@pytest.mark.parametrize("token", CALLERS)
def test_plain_data_pickles_and_json(node: Daemon, token: str | None) -> None:
    data = plain_data()
    with NodeClient(node.url, token=token, stream=None) as caller:
        if token in REFUSED:
            with pytest.raises(Exception) as refused:
                caller.call("train", args=(data,))
            assert getattr(refused.value, "status", None) == REFUSED[token]
        else:
            assert same(caller.call("train", args=(data,)), data)
    resp = post(node, token, "/objects/train/call", json.dumps({"args": [[1, "a"]]}).encode(),
                "application/json")
    if token in REFUSED:
        assert resp.status_code == REFUSED[token]
    else:
        assert resp.status_code == 200 and resp.json()["result"] == [1, "a"]


@pytest.mark.parametrize("token", CALLERS)
def test_pickles_that_carry_code(node: Daemon, token: str | None, tmp_path: Path) -> None:
    for name, (body, path, refused_global) in code_payloads(tmp_path, str(token)).items():
        resp = post(node, token, "/objects/train/call", body)
        if token in WRITERS:
            # Writers may send any pickle (the control: this payload does run code).
            assert resp.status_code == 200, (name, resp.text)
            assert path.exists(), name
        elif token in READERS:
            assert resp.status_code == 400, (name, resp.text)
            error = resp.json()["error"]
            assert error["code"] == "pickle_refused"
            assert error["message"].startswith(f"arguments may not contain {refused_global}:")
            assert "read access" in error["message"]
            assert not path.exists(), name
        else:
            assert resp.status_code == REFUSED[token], (name, resp.text)
            assert not path.exists(), name


@pytest.mark.parametrize("token", READERS)
def test_readers_cannot_patch_classes(node: Daemon, token: str) -> None:
    resp = post(node, token, "/objects/train/call", PATCH_INDEX)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["message"].startswith("arguments may not change pandas.Index")
    with NodeClient(node.url, token="den_alice", stream=None) as owner:
        assert owner.call("patched") is False


@pytest.mark.parametrize("name", sorted(EVIL_PANDAS))
def test_readers_cannot_send_pandas_objects_pandas_would_misread(node: Daemon, name: str) -> None:
    make, message = EVIL_PANDAS[name]
    resp = post(node, "den_bob", "/objects/train/call", cloudpickle.dumps(((make(),), {})))
    assert resp.status_code == 400, resp.text
    assert message in resp.json()["error"]["message"]
    env = httpx.get(f"{node.url}/envs/base", headers={"authorization": "Bearer den_alice"}).json()
    assert env["restarts"] == 0 and env["state"] == "ready"  # the worker did not crash


def test_the_caller_library_raises_the_refusal(node: Daemon, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with NodeClient(node.url, token="den_bob", stream=None) as reader, \
            pytest.raises(PickleRefused, match="may not contain posix.system") as refused:
        reader.call("train", args=(RunsOnUnpickle(os.system, f"touch {marker}"),))
    assert refused.value.status == 400
    assert not marker.exists()
    # It is a den error a user catches (den.BadRequest): one hierarchy, no translation.
    import den

    assert isinstance(refused.value, den.BadRequest) and refused.value.code == "pickle_refused"
    assert isinstance(refused.value, den.PickleRefused)
    assert "posix.system" in refused.value.message


def test_the_cluster_token_sends_plain_data_to_what_its_cluster_holds(node: Daemon,
                                                                     tmp_path: Path) -> None:
    # "open" has no address: the daemon checks read on the cluster, which its own
    # token has. Plain data works; code does not (the token cannot write it).
    with NodeClient(node.url, token="den_cluster", stream=None) as cluster:
        assert cluster.call("open", args=([1, 2],)) == [1, 2]
    for name, (body, path, _) in code_payloads(tmp_path, "cluster").items():
        resp = post(node, "den_cluster", "/objects/open/call", body)
        assert resp.status_code == 400 and resp.json()["error"]["code"] == "pickle_refused", name
        assert not path.exists(), name


def test_the_owner_allows_more_types_with_pickle_allow(node: Daemon) -> None:
    with NodeClient(node.url, token="den_bob", stream=None) as reader:
        with pytest.raises(PickleRefused, match="tests.node.pickle_types.Point"):
            reader.call("train", args=(Point(1, 2),))
        assert reader.call("points", args=(Point(1, 2),)) == Point(1, 2)
        with pytest.raises(PickleRefused, match="posix.system"):  # still nothing else
            reader.call("points", args=(RunsOnUnpickle(os.system, "true"),))


def test_pickle_allow_must_name_exact_globals(node: Daemon) -> None:
    for bad in (["pandas.*"], ["os"], "numpy.ndarray", [1]):
        resp = httpx.put(f"{node.url}/objects/bad", headers={"authorization": "Bearer den_alice"},
                         json={"kind": "function", "by_value": "", "pickle_allow": bad})
        assert resp.status_code == 400, bad
        assert resp.json()["error"]["field"] == "pickle_allow"


PRIVATE = {
    "_reset": [],
    "__setattr__": ["count", 999],
    "__init__": [999],
    "__reduce__": [],
    "__dict__": [],
}


@pytest.mark.parametrize("token", CALLERS)
def test_private_methods_need_write(node: Daemon, token: str | None) -> None:
    with NodeClient(node.url, token="den_alice", stream=None) as owner:
        before = owner.call("counter", "bump")
    for method, args in PRIVATE.items():
        if token in WRITERS:
            break  # below: writers keep full power
        resp = post(node, token, f"/objects/counter/{method}",
                    json.dumps({"args": args}).encode(), "application/json")
        if token in READERS:
            assert resp.status_code == 403, (method, resp.text)
            error = resp.json()["error"]
            assert error["code"] == "forbidden" and "private method" in error["message"]
        else:
            assert resp.status_code == REFUSED[token], (method, resp.text)
    with NodeClient(node.url, token="den_alice", stream=None) as owner:
        assert owner.call("counter", "get") == before  # nothing changed it
    if token in READERS:
        with NodeClient(node.url, token=token, stream=None) as reader:
            with pytest.raises(NodeForbidden, match="private method"):
                reader.call("counter", "_reset")
            assert reader.call("counter", "call") == before  # call stays __call__
            assert reader.call("counter", "__call__") == before
    if token in WRITERS:
        with NodeClient(node.url, token=token, stream=None) as writer:
            assert writer.call("counter", "__setattr__", args=("count", 41)) is None
            assert writer.call("counter", "get") == 41
            assert writer.call("counter", "_reset") == 0
            writer.call("counter", "__setattr__", args=("count", before))
