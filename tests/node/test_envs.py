"""Envs: each is its own worker process, with its own variables and requirements."""

from __future__ import annotations

from pathlib import Path

import pytest

from den.node.caller import NodeClient
from den.node.errors import EnvSetupFailed
from tests.node.conftest import Daemon


def read_env(name):
    import os

    return os.environ.get(name), os.getpid()


def test_envs_see_their_own_env_vars(node: NodeClient) -> None:
    node.put_function("where_a", read_env,
                      env={"name": "alpha", "env_vars": {"DEN_TEST_COLOUR": "red"}})
    node.put_function("where_b", read_env,
                      env={"name": "beta", "env_vars": {"DEN_TEST_COLOUR": "blue"}})
    colour_a, pid_a = node.call("where_a", args=("DEN_TEST_COLOUR",))
    colour_b, pid_b = node.call("where_b", args=("DEN_TEST_COLOUR",))
    assert (colour_a, colour_b) == ("red", "blue")
    assert pid_a != pid_b
    node.put_function("where_base", read_env)
    assert node.call("where_base", args=("DEN_TEST_COLOUR",))[0] is None
    envs = {e["name"]: e for e in node.list_envs()}
    assert envs["alpha"]["state"] == "ready"
    assert envs["alpha"]["env_vars"] == {"DEN_TEST_COLOUR": "red"}


def test_changed_env_replaces_its_worker(node: NodeClient) -> None:
    node.put_function("gamma_read", read_env,
                      env={"name": "gamma", "env_vars": {"DEN_TEST_V": "1"}})
    assert node.call("gamma_read", args=("DEN_TEST_V",))[0] == "1"
    node.put_env({"name": "gamma", "env_vars": {"DEN_TEST_V": "2"}})
    # The object was re-created in the new worker.
    assert node.call("gamma_read", args=("DEN_TEST_V",))[0] == "2"


def test_setup_cmds_run_once(node: NodeClient, tmp_path) -> None:
    marker = tmp_path / "setup-ran"
    cmd = f"echo ran >> {marker}"
    node.put_function("setup_read", read_env, env={"name": "setup", "setup_cmds": [cmd]})
    node.put_env({"name": "setup", "setup_cmds": [cmd], "env_vars": {"X": "1"}})
    assert marker.read_text() == "ran\n"


def test_failing_setup_is_reported(node: NodeClient) -> None:
    with pytest.raises(EnvSetupFailed, match="exited with 7"):
        node.put_function("never", read_env,
                          env={"name": "broken", "setup_cmds": ["echo nope; exit 7"]})


def test_env_with_requirements_gets_its_own_virtualenv(node: NodeClient) -> None:
    def table():
        import sys

        import tabulate

        return tabulate.tabulate([[1, 2]], tablefmt="plain"), sys.prefix, tabulate.__file__

    def has_tabulate():
        import importlib.util

        return importlib.util.find_spec("tabulate") is not None

    node.put_function("table", table, env={"name": "tab", "reqs": ["tabulate"]})
    text, prefix, path = node.call("table")
    assert text.split() == ["1", "2"]
    assert "/envs/" in prefix and path.startswith(prefix)
    node.put_function("has_tabulate", has_tabulate)
    assert node.call("has_tabulate") is False  # the base env does not have it


def environment_seen():
    """What a function sees: its environment, its own /proc entry, its daemon's."""
    import os

    def read(path):
        try:
            with open(path, "rb") as handle:
                return handle.read().decode(errors="replace")
        except OSError as exc:
            return type(exc).__name__

    daemon = os.getppid()
    return {"environ": dict(os.environ), "proc_self": read("/proc/self/environ"),
            "daemon_environ": read(f"/proc/{daemon}/environ"),
            "daemon_cmdline": read(f"/proc/{daemon}/cmdline")}


def test_setup_cmds_and_functions_never_see_the_token_or_the_daemons_settings(
        tmp_path: Path) -> None:
    """One environment builder for every child of the daemon: a setup command and
    a function each dump theirs; neither holds the cluster token or DEN_NODE_*."""
    token = "den_" + "Cluster0Token" * 2 + "abcd" + "123456"
    daemon = Daemon(tmp_path, "--no-den-auth", token=token,
                    env={"DEN_NODE_MAX_CODE_MB": "64", "DEN_NODE_CALL_TIMEOUT": "60"})
    dump = tmp_path / "setup-env"
    try:
        with NodeClient(daemon.url, stream=None) as node:
            node.put_function("seen", environment_seen, env={
                "name": "leaky", "env_vars": {"MINE": "1"},
                "setup_cmds": [f"env > {dump}; cat /proc/$$/environ >> {dump}"]})
            seen = node.call("seen")
    finally:
        daemon.stop()
    setup = dump.read_text(errors="replace")
    assert "MINE=1" in setup and seen["environ"]["MINE"] == "1"  # the env's own do arrive
    for where, text in [("setup_cmds", setup), ("os.environ", str(seen["environ"])),
                        ("/proc/self/environ", seen["proc_self"])]:
        assert token not in text, f"the cluster token is in {where}"
        assert "DEN_NODE_" not in text, f"a DEN_NODE_ variable is in {where}"
    # The daemon got the token on stdin: not in its environment or command line
    # (which its own variables are, as it was started with them).
    assert token not in seen["daemon_environ"] and token not in seen["daemon_cmdline"]
