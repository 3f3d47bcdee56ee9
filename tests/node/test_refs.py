"""Refs on the daemon: kept results, resolved in the worker for callers who may read the
function that made them, fetched, freed by their owner or the cluster's writers, expired."""

from __future__ import annotations

import pickle
import time
from collections.abc import Iterator

import pytest

import den
from den.client.refs import Ref
from den.node.caller import NodeClient

from .conftest import CLUSTER, Daemon, FakeDen

MAKE = "/alice/make"
TOTAL = "/alice/total"
GRANTS = {
    "den_alice": {CLUSTER: "write", MAKE: "write", TOTAL: "write"},
    "den_bob": {CLUSTER: "read", TOTAL: "read"},
    "den_carol": {CLUSTER: "read", TOTAL: "read", MAKE: "read"},
}


def make(n):
    return list(range(n))


def total(values):
    assert isinstance(values, list), type(values)
    return sum(values)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    fake = FakeDen({k: dict(v) for k, v in GRANTS.items()})
    d = Daemon(tmp_path_factory.mktemp("refs"), "--den-url", fake.url,
               "--cluster-address", CLUSTER, token="den_cluster")
    with NodeClient(d.url, token="den_alice", stream=None) as owner:
        owner.put_function("make", make, address=MAKE)
        owner.put_function("total", total, address=TOTAL)
    yield d
    d.stop()
    fake.stop()


def _ref(info: dict, cluster: str = CLUSTER) -> Ref:
    return Ref(cluster, info["key"], type=info.get("type"), size=info.get("size"),
               function=MAKE, owner=info.get("owner"), expires_at=info.get("expires_at"))


def test_a_kept_result_is_a_small_description_and_resolves_in_the_worker(node: Daemon) -> None:
    with NodeClient(node.url, token="den_alice", stream=None) as alice:
        info = alice.call("make", args=(1000,), keep=60)
        assert set(info) >= {"key", "type", "size", "owner", "expires_at"}
        assert info["type"] == "list" and info["owner"] == "alice"
        ref = _ref(info)
        assert len(pickle.dumps(ref)) < 600
        assert alice.call("total", args=(ref,)) == sum(range(1000))
        assert alice.call("total", kwargs={"values": ref}) == sum(range(1000))
        assert alice.ref_get(ref.key) == list(range(1000))
        alice.ref_delete(ref.key)
        with pytest.raises(den.RefNotFound, match="deleted"):
            alice.ref_get(ref.key)
        with pytest.raises(den.RefNotFound):
            alice.call("total", args=(ref,))


def test_a_ref_needs_read_on_the_function_that_made_it(node: Daemon) -> None:
    with NodeClient(node.url, token="den_alice", stream=None) as alice:
        ref = _ref(alice.call("make", args=(10,), keep=60))
    with NodeClient(node.url, token="den_bob", stream=None) as bob:
        with pytest.raises(den.RefNotFound, match="may call the function") as refused:
            bob.call("total", args=(ref,))
        assert refused.value.status == 404
        with pytest.raises(den.RefNotFound):
            bob.ref_get(ref.key)
        with pytest.raises(den.RefNotFound):
            bob.ref_delete(ref.key)
    with NodeClient(node.url, token="den_carol", stream=None) as carol:
        assert carol.call("total", args=(ref,)) == 45  # a reader: plain data plus the ref
        assert carol.ref_get(ref.key) == list(range(10))
        with pytest.raises(den.PermissionDenied, match="owner"):
            carol.ref_delete(ref.key)
    with NodeClient(node.url, token="den_alice", stream=None) as alice:
        alice.ref_delete(ref.key)


def test_an_undeclared_ref_is_refused_and_an_expired_one_says_so(node: Daemon) -> None:
    with NodeClient(node.url, token="den_alice", stream=None) as alice:
        ref = _ref(alice.call("make", args=(3,), keep=0.5))
        time.sleep(0.8)
        with pytest.raises(den.RefExpired, match="expired") as expired:
            alice.ref_get(ref.key)
        assert expired.value.status == 410
        with pytest.raises(den.RefExpired):
            alice.call("total", args=(ref,))
    with NodeClient(node.url, token="den_carol", stream=None) as carol:
        fresh = _ref(carol.call("make", args=(3,), keep=60))
        assert fresh.owner == "carol"
        # A hand-made pickle holding a ref it does not declare: a reader may not send it.
        body = pickle.dumps(((fresh,), {}))
        resp = carol._http.post("/objects/total/call", content=body,
                                headers={"content-type": "application/x-cloudpickle"})
        assert resp.status_code == 400 and resp.json()["error"]["code"] == "pickle_refused"
