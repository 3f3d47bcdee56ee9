"""Calls through a local cluster's daemon with den auth on: each caller's own
token is checked with den (through the live server) before the daemon reads
the body, and a revoked grant stops working within the daemon's auth cache."""

from __future__ import annotations

import pickle
import time

import httpx
import pytest

from den.node.caller import NodeClient
from den.node.errors import NodeError
from registry import services as registry_services
from tests.compute.conftest import state_of
from tests.compute.remote_fns import Counter, TouchOnUnpickle, add

AUTH_CACHE_SECONDS = 1.0  # what the test worker starts daemons with


def test_calls_are_checked_with_den(up_cluster, people, tmp_path):
    cpu = up_cluster("calls")
    url = state_of(cpu).daemon_url
    tokens, users = people["tokens"], people["users"]

    with NodeClient(url, token=tokens["alice"], stream=None) as owner:
        owner.put_function("add", add)
        assert owner.call("add", args=(1, 2)) == 3

    # A stranger is refused before the daemon reads, let alone unpickles, the body.
    marker = tmp_path / "unpickled"
    body = pickle.dumps(((TouchOnUnpickle(str(marker)),), {}))
    response = httpx.post(f"{url}/objects/add/call", content=body, headers={
        "Authorization": f"Bearer {tokens['sam']}",
        "Content-Type": "application/x-cloudpickle"})
    assert response.status_code == 404, response.text
    with NodeClient(url, token=tokens["sam"], stream=None) as stranger, \
            pytest.raises(NodeError) as refused:
        stranger.call("add", args=(1, 2))
    assert refused.value.status == 404
    # No token at all: 401.
    assert httpx.post(f"{url}/objects/add/call", content=body).status_code == 401
    time.sleep(0.2)
    assert not marker.exists()

    # A teammate given read access may call (not put: that needs write).
    registry_services.resource_share(actor=users["alice"], resource=cpu, users=["rita"],
                                     level="read")
    with NodeClient(url, token=tokens["rita"], stream=None) as teammate:
        assert teammate.call("add", args=(2, 3)) == 5
        with pytest.raises(NodeError) as no_write:
            teammate.put_function("mine", add)
        assert no_write.value.status == 403

        registry_services.resource_revoke(actor=users["alice"], resource=cpu, who="rita")
        revoked_at = time.monotonic()
        while True:
            try:
                teammate.call("add", args=(2, 3))
            except NodeError as exc:
                assert exc.status == 404
                break
            assert time.monotonic() - revoked_at < AUTH_CACHE_SECONDS + 2, \
                "still allowed well past the daemon's auth cache lifetime"
            time.sleep(0.1)


def test_a_read_token_may_call_but_not_put(up_cluster, people):
    from tests.factories import make_token

    cpu = up_cluster("readonly")
    url = state_of(cpu).daemon_url
    read_token = make_token(people["users"]["alice"], scope="read")
    with NodeClient(url, token=people["tokens"]["alice"], stream=None) as owner:
        owner.put_function("add", add)
    with NodeClient(url, token=read_token, stream=None) as reader:
        assert reader.call("add", args=(4, 5)) == 9
        with pytest.raises(NodeError) as refused:
            reader.put_function("other", add)
        assert refused.value.status == 403


def test_readers_send_plain_data_and_writers_anything(up_cluster, people, writable_tmp):
    """With den itself answering the daemon's checks: a reader of the cluster (and
    the owner's read-only token) may call with plain data, but a pickle that runs
    code is refused with a 400 naming it; the owner, who writes the cluster, may
    send any pickle; private methods need write too."""
    from den.node.errors import NodeForbidden, PickleRefused
    from tests.factories import make_token

    cpu = up_cluster("plaindata")
    url = state_of(cpu).daemon_url
    tokens, users = people["tokens"], people["users"]
    registry_services.resource_share(actor=users["alice"], resource=cpu, users=["rita"],
                                     level="read")
    with NodeClient(url, token=tokens["alice"], stream=None) as owner:
        owner.put_function("add", add)
        owner.put_module("counter", Counter, init_args=(7,))
    read_token = make_token(users["alice"], scope="read")
    for token in (tokens["rita"], read_token):
        marker = writable_tmp / f"unpickled-{token[-6:]}"
        with NodeClient(url, token=token, stream=None) as reader:
            assert reader.call("add", args=([1], [2])) == [1, 2]
            with pytest.raises(PickleRefused, match="pathlib.Path.touch") as refused:
                reader.call("add", args=(TouchOnUnpickle(str(marker)), 1))
            assert refused.value.status == 400
            with pytest.raises(NodeForbidden, match="private method"):
                reader.call("counter", "__setattr__", args=("n", 0))
            assert reader.call("counter", "get") == 7
        time.sleep(0.2)
        assert not marker.exists()
    marker = writable_tmp / "owner"
    with NodeClient(url, token=tokens["alice"], stream=None) as owner, \
            pytest.raises(TypeError):  # touch() ran and returned None; None + 1 fails
        owner.call("add", args=(TouchOnUnpickle(str(marker)), 1))
    assert marker.exists()
