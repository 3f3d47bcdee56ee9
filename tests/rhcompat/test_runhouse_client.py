"""The real runhouse 0.0.42 client against a live den at ``<den>/rh``: what a
Runhouse user does (log in, save and load clusters, secrets, functions and
modules, look at history, share, revoke, delete), each step in a fresh client
process with its own HOME, as a person's scripts would run."""

from __future__ import annotations

import yaml

from registry.models import Resource

pytestmark = []


def test_login_writes_dens_own_url(rh_team, rh_den):
    alice = rh_team["alice"]
    assert alice.login() == {"username": "alice", "api_server_url": f"{rh_den}/rh"}
    config = yaml.safe_load((alice.home / ".rh" / "config.yaml").read_text())
    assert config["api_server_url"] == f"{rh_den}/rh"  # never runhouse's old hosted address
    assert config["default_folder"] == "/alice" and config["username"] == "alice"


def test_bad_token_is_refused_at_login(rh_team):
    alice = rh_team["alice"]
    result = alice.run({"op": "login", "token": "den_" + "x" * 36})[0]
    assert not result["ok"] and result["error"] == "ValueError"
    assert "Invalid token" in result["message"]


def test_static_cluster_saved_and_loaded(rh_team):
    alice = rh_team["alice"]
    alice.login()
    saved, loaded = alice.ok(
        {"op": "save_static_cluster", "name": "box", "host": ["127.0.0.77"],
         "key": str(alice.home / ".ssh" / "compat")},
        {"op": "load_cluster", "name": "box"},
    )
    assert saved["rns_address"] == "/alice/box"
    assert loaded["type"] == "Cluster" and loaded["ips"] == ["127.0.0.77"]
    assert loaded["config"] == saved["config"]
    box = Resource.objects.get(owner__username="alice", name="box")
    assert box.type == "cluster" and box.config["provider"] == "ssh"
