"""The whole flow as a user drives it: only ``den.*`` calls, from signing in to
tearing the cluster down (the server's users exist; everything else is den)."""

from __future__ import annotations

import time

import pytest

import den
from tests.e2e import remote_fns
from tests.e2e.conftest import PASSWORD

pytestmark = pytest.mark.e2e


def test_whole_flow_through_den_calls(team, cleanup_clusters, capsys):
    den.login(url=team.url, username="alice", password=PASSWORD)
    cpu = den.cluster(name="cpu", provider="local")
    cleanup_clusters("/alice/cpu")
    assert cpu.up_if_not(timeout=60) is cpu
    assert "status: up" in capsys.readouterr().err
    assert cpu.status()["status"] == "up"
    assert cpu.up_if_not() is cpu  # already up: nothing to do, nothing printed
    assert capsys.readouterr().err == ""

    env = den.env(env_vars={"WHICH": "flow"}, name="flow")
    what = den.function(remote_fns.what_env, name="what").to(cpu, env=env)
    assert what()["which"] == "flow"
    what.save()
    what.share("rita@example.com", access_level="read")  # the function only, not the cluster

    Counter = den.module(remote_fns.Counter).to(cpu)
    shared = Counter(5, name="tally")
    shared.add(2)
    shared.share("rita")

    den.login(url=team.url, username="rita", password=PASSWORD)
    assert den.function(name="/alice/what")()["which"] == "flow"
    tally = den.load(f"{team.url}/alice/tally")
    assert isinstance(tally, den.Module) and tally.add(1) == 8
    with pytest.raises(den.NotFound):
        den.cluster(name="/alice/cpu").teardown()  # may call what was shared, not see the cluster

    den.login(url=team.url, username="alice", password=PASSWORD)
    cpu.teardown()
    deadline = time.monotonic() + 30
    while cpu.status()["status"] != "terminated":
        assert time.monotonic() < deadline, cpu.status()
        time.sleep(0.2)
    with pytest.raises(den.NoRunningCluster, match="terminated"):
        den.function(name="/alice/what")()
