"""Functions and classes sent to a local cluster through den and called by their
owner, by a teammate by name, and refused to a stranger; errors, crashes, output
streaming and envs, all through the client (``den.*``)."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import threading
import time

import pytest

import den
from tests.e2e import remote_fns
from tests.e2e.conftest import AUTH_CACHE_SECONDS, up_cluster

pytestmark = pytest.mark.e2e


def test_owner_sends_functions_and_classes_and_calls_them(team, cleanup_clusters, capsys):
    team.login("alice")
    cpu = up_cluster("cpu", cleanup_clusters)
    progress = capsys.readouterr().err
    assert "status: up" in progress and "/alice/cpu" in progress

    add = den.function(remote_fns.add).to(cpu)
    assert add.code and len(add.code) == 64  # the project went as a code bundle
    assert add(2, 3) == 5
    assert add(2, b=5) == 7

    # Generators stream their items; async functions are awaited on the node.
    assert list(den.function(remote_fns.countdown).to(cpu)(3)) == [3, 2, 1]
    assert den.function(remote_fns.slow_double).to(cpu)(4) == 8

    # A function defined here (not importable by the node) goes by value.
    factor = 10

    def scale(x: int) -> int:
        return x * factor

    assert den.function(scale).to(cpu)(4) == 40

    # A class: each call makes a remote instance whose methods run on the node.
    Counter = den.module(remote_fns.Counter).to(cpu)
    first, second = Counter(3), Counter()
    assert first.add(2) == 5
    assert first.add() == 6
    assert second.get() == 0
    assert first.get() == 6
    assert "Add n" in (first.add.__doc__ or "")
    with pytest.raises(AttributeError, match="no method"):
        first.multiply(2)
    # The node ran it: not this process.
    pid = den.function(remote_fns.pid).to(cpu)
    import os

    assert pid() != os.getpid()


def test_teammate_calls_by_name_stranger_refused_revocation_applies(
    team, cleanup_clusters, tmp_path
):
    team.login("alice")
    cpu = up_cluster("shared", cleanup_clusters)
    add = den.function(remote_fns.add).to(cpu).save()
    assert add.address == "/alice/add"
    Counter = den.module(remote_fns.Counter).to(cpu)
    counter = Counter(10, name="counter")  # a named instance is saved, state and all
    assert counter.address == "/alice/counter"
    assert counter.add(1) == 11
    add.share("rita")
    counter.share("rita")
    # Calling needs the daemon's URL, which den gives to whoever can see the cluster.
    cpu.share(["rita", "sam"], access_level="read")

    team.login("rita")
    by_name = den.function(name="/alice/add")
    assert by_name.fn is None
    assert by_name(1, 2) == 3
    by_url = den.load(f"{team.url}/alice/add")
    assert by_url(5) == 6
    shared_counter = den.module(name="/alice/counter")
    assert shared_counter.add(1) == 12  # the very instance alice made
    assert shared_counter.get() == 12

    # sam sees the cluster but not the function: den will not show it to him, and the
    # daemon refuses the call (404) before anything in it is unpickled.
    team.login("sam")
    with pytest.raises(den.NotFound):
        den.load("/alice/add")
    stub = den.Function.from_config(add.config())
    marker = tmp_path / "unpickled"
    with pytest.raises(den.NotFound) as refused:
        stub(remote_fns.TouchOnUnpickle(str(marker)))
    assert refused.value.status == 404
    time.sleep(0.3)
    assert not marker.exists()

    # alice revokes rita: her calls stop working within the daemon's auth cache.
    team.login("alice")
    add.revoke("rita")
    revoked_at = time.monotonic()
    team.login("rita")
    while True:
        try:
            by_name(1, 2)
        except den.NotFound:
            break
        assert time.monotonic() - revoked_at < AUTH_CACHE_SECONDS + 3, \
            "still allowed well past the daemon's auth cache lifetime"
        time.sleep(0.1)
    assert shared_counter.get() == 12  # what is still shared still works


def test_errors_crashes_and_streamed_output(team, cleanup_clusters, capsys, shared_tmp):
    team.login("alice")
    cpu = up_cluster("errors", cleanup_clusters)

    fail = den.function(remote_fns.fail).to(cpu)
    with pytest.raises(ValueError, match="boom") as raised:
        fail("boom")
    notes = "\n".join(getattr(raised.value, "__notes__", []))
    assert "Remote traceback" in notes and "remote_fns.py" in notes

    crash = den.function(remote_fns.crash).to(cpu)
    add = den.function(remote_fns.add).to(cpu)
    with pytest.raises(den.WorkerCrashed) as crashed:
        crash()
    assert crashed.value.exit_code == -9
    assert isinstance(crashed.value, den.DenError)
    assert add(1, 2) == 3  # the worker was restarted
    assert asyncio.run(add.acall(2, 2)) == 4

    # Output arrives while the call still runs: the call waits for a file this
    # test creates only once it has seen the output.
    capsys.readouterr()
    release = shared_tmp / "release"  # the daemon may run as another OS user
    chatty = den.function(remote_fns.chatty).to(cpu)
    result: dict[str, object] = {}
    thread = threading.Thread(target=lambda: result.update(value=chatty(str(release))))
    thread.start()
    deadline = time.monotonic() + 20
    seen = ""
    while "working on it" not in seen and time.monotonic() < deadline:
        time.sleep(0.05)
        seen += capsys.readouterr().out
    assert "working on it" in seen
    assert thread.is_alive(), "the call returned before its output was seen"
    release.touch()
    thread.join(20)
    assert result["value"] == "released"
    assert "done" in seen + capsys.readouterr().out


def test_two_envs_on_one_cluster(team, cleanup_clusters):
    team.login("alice")
    cpu = up_cluster("envs", cleanup_clusters)
    tab = den.env(reqs=["tabulate"], env_vars={"WHICH": "a"}, name="tab")
    plain = den.env(env_vars={"WHICH": "b"}, name="plain")
    in_tab = den.function(remote_fns.what_env, name="in_tab").to(cpu, env=tab)
    in_plain = den.function(remote_fns.what_env, name="in_plain").to(cpu, env=plain)
    a, b = in_tab(), in_plain()
    assert a["which"] == "a" and a["has_tabulate"] is True
    assert b["which"] == "b" and b["has_tabulate"] is False
    assert a["prefix"] != b["prefix"]
    # Each keeps its own after the other is used again.
    assert in_tab()["which"] == "a"


def test_cluster_not_up_says_how_to_bring_it_up(team, cleanup_clusters):
    team.login("alice")
    cpu = den.cluster(name="idle", provider="local").save()
    cleanup_clusters(cpu.address)
    add = den.function(remote_fns.add).to("/alice/idle")  # an address: only recorded
    with pytest.raises(den.NoRunningCluster, match="up_if_not"):
        add(1)
    cpu.up_if_not(timeout=60, quiet=True)
    assert add(1) == 2


def test_code_bundles_respect_gitignore_and_the_size_cap(team, cleanup_clusters, tmp_path,
                                                          monkeypatch):
    project = tmp_path / "proj"
    project.mkdir()
    (project / "pyproject.toml").write_text("[project]\nname = 'proj'\n")
    (project / "bigmod.py").write_text(textwrap.dedent("""
        import pathlib

        def files():
            here = pathlib.Path(__file__).parent
            return sorted(p.name for p in here.iterdir())
    """))
    with open(project / "weights.bin", "wb") as big:  # sparse: 60 MB on paper
        big.truncate(60 * 1024 * 1024)
    monkeypatch.syspath_prepend(str(project))
    import bigmod  # type: ignore[import-not-found]

    team.login("alice")
    cpu = up_cluster("bundles", cleanup_clusters)
    with pytest.raises(den.ValidationError, match="code bundle limit") as too_big:
        den.function(bigmod.files).to(cpu)
    assert "weights.bin" in str(too_big.value) and ".gitignore" in str(too_big.value)

    (project / ".gitignore").write_text("*.bin\n")
    files = den.function(bigmod.files).to(cpu)
    assert [name for name in files() if name != "__pycache__"] == [
        ".gitignore", "bigmod.py", "pyproject.toml"]
    sys.modules.pop("bigmod", None)


def test_readers_send_data_writers_send_code_and_owners_widen_it(team, cleanup_clusters,
                                                                 shared_tmp):
    """Through den and its client: a teammate with read access calls with plain data;
    an argument whose unpickling runs code is refused as den.BadRequest and never
    runs; the owner's pickle_allow lets readers send a type of the owner's."""
    team.login("alice")
    cpu = up_cluster("plain", cleanup_clusters)
    norm = den.function(remote_fns.norm1)
    norm.data["pickle_allow"] = ["tests.e2e.remote_fns.Point"]
    norm.to(cpu).save()
    add = den.function(remote_fns.add).to(cpu).save()
    for fn in (norm, add):
        fn.share("rita")
    marker = shared_tmp / "unpickled"
    # The owner writes the cluster: any pickle goes (touch runs, then add fails).
    with pytest.raises(TypeError):
        add(remote_fns.TouchOnUnpickle(str(marker)), 1)
    assert marker.exists()
    marker.unlink()

    team.login("rita")
    assert den.function(name="/alice/add")([1], [2]) == [1, 2]
    assert den.function(name="/alice/norm1")(remote_fns.Point(3, -4)) == 7
    with pytest.raises(den.BadRequest) as refused:
        den.function(name="/alice/add")(remote_fns.TouchOnUnpickle(str(marker)), 1)
    assert refused.value.code == "pickle_refused" and refused.value.status == 400
    assert "pathlib.Path.touch" in refused.value.message
    with pytest.raises(den.BadRequest, match="tests.e2e.remote_fns.Point"):
        den.function(name="/alice/add")(remote_fns.Point(1, 2), 1)  # not allowed there
    time.sleep(0.2)
    assert not marker.exists()
