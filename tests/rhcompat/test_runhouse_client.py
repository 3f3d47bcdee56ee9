"""The real runhouse 0.0.42 client against a live den at ``<den>/rh``: what a
Runhouse user does (log in, save and load clusters, secrets, functions and
modules, look at history, share, revoke, delete), each step in a fresh client
process with its own HOME, as a person's scripts would run."""

from __future__ import annotations

import yaml

from registry.models import Resource, ResourceVersion
from rhcompat.models import RunhouseSettings

pytestmark = []


def test_login_writes_dens_own_url(rh_team, rh_den):
    alice = rh_team["alice"]
    assert alice.login() == {"username": "alice", "api_server_url": f"{rh_den}/rh"}
    config = yaml.safe_load((alice.home / ".rh" / "config.yaml").read_text())
    assert config["api_server_url"] == f"{rh_den}/rh"  # never runhouse's old hosted address
    assert config["default_folder"] == "/alice" and config["username"] == "alice"
    # Settings go up to den and come back to a fresh login; the URL stays den's own.
    den_config = alice.ok({"op": "upload_defaults", "settings": {
        "default_autostop": 45, "default_provider": "aws", "my_own_key": "x",
        "api_server_url": "https://api.run.house"}})[0]
    assert den_config["default_autostop"] == 45 and den_config["my_own_key"] == "x"
    assert den_config["api_server_url"] == f"{rh_den}/rh"
    assert "token" not in str(RunhouseSettings.objects.get().config)


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


def _without(config, *keys):
    return {k: v for k, v in config.items() if k not in keys}


def _versions(name):
    return ResourceVersion.objects.filter(resource__owner__username="alice",
                                          resource__name=name).count()


def test_everything_a_runhouse_user_saves_loads_back(rh_team, rh_den, api):
    alice = rh_team["alice"]
    alice.login()
    key = str(alice.home / ".ssh" / "compat")
    results = alice.ok(
        {"op": "save_static_cluster", "name": "box", "host": ["127.0.0.77"], "key": key},
        {"op": "save_ondemand", "name": "ondemand"},
        {"op": "load_cluster", "name": "ondemand"},
        {"op": "save_secret", "name": "sec", "values": {"API_KEY": "s3cr3t", "OTHER": "v"}},
        {"op": "load_secret", "name": "sec"},
        {"op": "save_function", "name": "summer", "system": "box"},
        {"op": "load_function", "name": "summer"},
        {"op": "save_module", "name": "counter", "system": "box"},
        {"op": "load_module", "name": "counter"},
    )
    _, od_saved, od_loaded, _, secret, fn_saved, fn_loaded, mod_saved, mod_loaded = results
    assert od_loaded["type"] == "OnDemandCluster"
    assert od_loaded["config"]["instance_type"] == "CPU:2"
    assert od_loaded["config"]["autostop_mins"] == 30
    assert secret == {"rns_address": "/alice/sec", "values": {"API_KEY": "s3cr3t", "OTHER": "v"}}
    # The client builds openapi_spec when it saves; den keeps it, a load rebuilds it lazily.
    assert _without(fn_loaded["config"], "openapi_spec") == _without(fn_saved["config"],
                                                                      "openapi_spec")
    stored = Resource.objects.get(owner__username="alice", name="summer").config
    assert stored["runhouse"]["data"]["openapi_spec"] == fn_saved["config"]["openapi_spec"]
    assert fn_loaded["config"]["system"] == "/alice/box"
    assert mod_loaded["rns_address"] == "/alice/counter"

    # What runhouse saved is den's like any other resource: in den's API and UI.
    from registry.models import SecretValue

    assert SecretValue.objects.filter(resource__name="sec").exists()
    sec = Resource.objects.get(owner__username="alice", name="sec")
    assert "s3cr3t" not in str(sec.config)  # values only encrypted, never in the config
    api.as_token(alice.token)
    listed = api.get("/api/v1/resources?owner=alice").json()["results"]
    assert {r["address"] for r in listed} >= {"/alice/box", "/alice/ondemand", "/alice/sec",
                                              "/alice/summer", "/alice/counter"}
    assert api.get("/api/v1/resources/alice/summer").json()["config"]["system"] == "/alice/box"
    from django.test import Client

    page = Client()
    page.force_login(sec.owner)
    assert page.get("/alice/summer").status_code == 200

    # History, newest first, in runhouse's form; an unchanged save makes no version.
    before = _versions("box")
    history, _ = alice.ok({"op": "history", "name": "summer", "kind": "function"},
                          {"op": "save_cluster_again", "name": "box"})
    assert [entry["version"] for entry in history] == [1]
    assert history[0]["owner"] == {"username": "alice"} and history[0]["timestamp"]
    assert history[0]["data"]["fn_pointers"] == fn_saved["config"]["fn_pointers"]
    assert history[0]["data"]["system"] == "/alice/box"
    assert _versions("box") == before


def test_a_den_resource_loads_through_runhouse(rh_team):
    alice = rh_team["alice"]
    from registry import services
    from registry.models import User

    services.resource_create(actor=User.objects.get(username="alice"), name="native",
                             type="cluster", config={"provider": "ssh", "ips": ["10.9.9.9"],
                                                     "ssh_user": "ubuntu"})
    alice.login()
    loaded = alice.ok({"op": "load_cluster", "name": "native"})[0]
    assert loaded["type"] == "Cluster" and loaded["ips"] == ["10.9.9.9"]


def test_share_load_revoke_delete(rh_team):
    alice, bob, dave = rh_team["alice"], rh_team["bob"], rh_team["dave"]
    alice.login()
    bob.login()
    dave.login()
    key = str(alice.home / ".ssh" / "compat")
    shared = alice.ok(
        {"op": "save_static_cluster", "name": "box", "host": ["127.0.0.77"], "key": key},
        {"op": "save_function", "name": "summer", "system": "box"},
        {"op": "save_secret", "name": "sec", "values": {"API_KEY": "s3cr3t"}},
        {"op": "share", "name": "box", "kind": "cluster", "users": ["bob"], "level": "read"},
        {"op": "share", "name": "summer", "users": ["bob", "newcomer@example.com"],
         "level": "read"},
        {"op": "share", "name": "sec", "kind": "secret", "users": ["bob"], "level": "read"},
    )
    assert shared[4] == {"added": {"bob": "read"}, "new": {"newcomer@example.com": "read"},
                         "valid": ["bob", "newcomer@example.com"]}

    # The teammate loads what was shared, but cannot save over it, nor read secret values.
    loaded, secret, saved = bob.run(
        {"op": "load_function", "name": "/alice/summer"},
        {"op": "load_secret", "name": "/alice/sec"},
        {"op": "save_function", "name": "/alice/summer", "system": "/alice/box"},
    )
    assert loaded["ok"] and loaded["value"]["config"]["system"] == "/alice/box"
    assert secret["ok"] and secret["value"]["values"] == {}  # a reader never gets the values
    assert not saved["ok"] and "[403]" in saved["message"]
    assert ResourceVersion.objects.filter(resource__name="summer").count() == 1

    # A stranger gets the client's own "not found", as for a name that does not exist.
    for result in dave.run({"op": "load_function", "name": "/alice/summer"},
                           {"op": "load_function", "name": "/alice/nothing-here"}):
        assert not result["ok"] and result["error"] == "ValueError"
    assert dave.ok({"op": "exists", "name": "/alice/summer"}) == [False]

    # Revoked: the teammate now gets "not found" too.
    alice.ok({"op": "revoke", "name": "summer", "users": ["bob"]})
    gone = bob.run({"op": "load_function", "name": "/alice/summer"})[0]
    assert not gone["ok"] and gone["error"] == "ValueError"

    # Deleted and created again: the new resource carries none of the old grants.
    alice.ok({"op": "share", "name": "summer", "users": ["bob"], "level": "read"},
             {"op": "delete", "name": "/alice/summer"})
    assert not Resource.objects.filter(name="summer").exists()
    alice.ok({"op": "save_function", "name": "summer", "system": "box"})
    again = bob.run({"op": "load_function", "name": "/alice/summer"})[0]
    assert not again["ok"] and again["error"] == "ValueError"


def test_changed_save_makes_a_version_and_history_is_newest_first(rh_team):
    alice = rh_team["alice"]
    alice.login()
    key = str(alice.home / ".ssh" / "compat")
    alice.ok({"op": "save_static_cluster", "name": "box", "host": ["127.0.0.77"], "key": key},
             {"op": "save_static_cluster", "name": "box", "host": ["127.0.0.78"], "key": key})
    history = alice.ok({"op": "history", "name": "box"})[0]
    assert [entry["version"] for entry in history] == [2, 1]
    assert history[0]["data"]["ips"] == ["127.0.0.78"]
    assert history[1]["data"]["ips"] == ["127.0.0.77"]


def test_cluster_list(rh_team):
    alice = rh_team["alice"]
    alice.login()
    key = str(alice.home / ".ssh" / "compat")
    listed = alice.ok(
        {"op": "save_static_cluster", "name": "box", "host": ["127.0.0.77"], "key": key},
        {"op": "save_ondemand", "name": "ondemand"},
        {"op": "list_clusters"},
    )[2]
    assert listed["status"] == 200
    names = {item["name"]: item for item in listed["data"]}
    assert set(names) == {"/alice/box", "/alice/ondemand"}
    assert names["/alice/ondemand"]["data"]["resource_subtype"] == "OnDemandCluster"
    assert names["/alice/box"]["cluster_status"] == "unknown"
