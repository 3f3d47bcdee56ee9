"""Envs: each is its own worker process, with its own variables and requirements."""

from __future__ import annotations

import pytest

from den.node.caller import NodeClient
from den.node.errors import EnvSetupFailed


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
    # The daemon's own settings never reach user code.
    assert node.call("where_a", args=("DEN_NODE_CLUSTER_TOKEN",))[0] is None
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
