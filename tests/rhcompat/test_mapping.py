"""The runhouse <-> den mapping, both ways, as pure functions; and that what
it stores always passes den's own validators (registry/validation.py)."""

from __future__ import annotations

import copy

import pytest

from rhcompat import mapping

# The payloads a runhouse 0.0.42 client sends (runhouse-compat-contract.md, "The split payload").
STATIC_CLUSTER = {
    "name": "/alice/box", "resource_type": "cluster", "visibility": "private",
    "data": {"resource_subtype": "Cluster", "ips": ["127.0.0.77"], "server_port": 32300,
             "server_connection_type": "ssh", "den_auth": False, "ssh_port": 22,
             "ssh_properties": {"ssh_user": "ubuntu", "ssh_private_key": "~/.ssh/compat"},
             "creds": "/alice/ssh-compat",
             "image": {"name": "img", "setup_steps": [
                 {"step_type": "pip_install", "kwargs": {"reqs": ["numpy==1.26.4"],
                                                         "conda_env_name": None}}]}},
}
ON_DEMAND = {
    "name": "/alice/od", "resource_type": "cluster", "visibility": "private",
    "data": {"resource_subtype": "OnDemandCluster", "server_port": 32300, "den_auth": False,
             "ssh_port": 22, "instance_type": "CPU:2", "provider": "aws", "use_spot": False,
             "launcher": "local", "autostop_mins": 30},
}
FUNCTION = {
    "name": "/alice/summer", "resource_type": "function", "visibility": "private",
    "data": {"resource_subtype": "Function", "system": "/alice/box", "process": "default_process",
             "signature": {"call": {"signature": "(a: int, b: int) -> int", "async": False}},
             "fn_pointers": ["/home/alice", "my_fns", "summer"]},
}
MODULE = {
    "name": "/alice/counter", "resource_type": "module", "visibility": "unlisted",
    "data": {"resource_subtype": "Counter", "system": "/alice/box",
             "pointers": ["/home/alice", "my_fns", "Counter"], "signature": {"incr": {}}},
}
SECRET = {"name": "/alice/sec", "resource_type": "secret", "visibility": "private",
          "data": {"resource_subtype": "SSHSecret", "provider": "ssh", "path": "~/.ssh/x"}}
PACKAGE = {"name": "/alice/pkg", "resource_type": "package", "visibility": "public",
           "data": {"resource_subtype": "Package", "install_target": "numpy"}}
PAYLOADS = [STATIC_CLUSTER, ON_DEMAND, FUNCTION, MODULE, SECRET, PACKAGE]


@pytest.mark.parametrize("uri, address", [
    ("alice:box", "/alice/box"),
    ("alice:team:x", "/alice/team/x"),
    ("/alice/box", "/alice/box"),
])
def test_uri_and_address_both_ways(uri, address):
    assert mapping.uri_to_address(uri) == address
    if not uri.startswith("/"):
        assert mapping.address_to_uri(address) == uri


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: p["resource_type"] + p["name"])
def test_saved_payload_comes_back_unchanged(payload):
    sent = copy.deepcopy(payload)
    envelope = mapping.parse_envelope(sent)
    config = mapping.den_config_for(envelope)
    den_type = mapping.den_type_for(envelope.resource_type)
    back = mapping.envelope_for(address=payload["name"], den_type=den_type, config=config,
                                visibility=payload["visibility"], owner="alice",
                                access_level="owner")
    assert back == {"name": payload["name"], "resource_type": payload["resource_type"],
                    "visibility": payload["visibility"], "access_level": "write",
                    "owner": {"username": "alice"}, "data": payload["data"]}
    assert sent == payload  # nothing was changed in place


@pytest.mark.django_db
@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: p["resource_type"] + p["name"])
def test_stored_config_passes_dens_own_validation(payload):
    from registry.validation import validate_config

    envelope = mapping.parse_envelope(payload)
    config = mapping.den_config_for(envelope)
    validate_config(mapping.den_type_for(envelope.resource_type), config)


def test_den_fields_are_mapped_for_den_to_use():
    static = mapping.den_config_for(mapping.parse_envelope(STATIC_CLUSTER))
    assert static["ips"] == ["127.0.0.77"] and static["provider"] == "ssh"
    assert static["ssh_user"] == "ubuntu" and static["creds"] == "/alice/ssh-compat"
    on_demand = mapping.den_config_for(mapping.parse_envelope(ON_DEMAND))
    assert on_demand["provider"] == "aws" and on_demand["instance_type"] == "CPU:2"
    assert on_demand["autostop_mins"] == 30 and "ips" not in on_demand
    function = mapping.den_config_for(mapping.parse_envelope(FUNCTION))
    assert function["system"] == "/alice/box"
    assert function["pointers"] == {"root": "/home/alice", "module": "my_fns", "qualname": "summer"}
    assert mapping.den_type_for("package") == "resource"


@pytest.mark.django_db
def test_fields_den_would_refuse_are_left_under_runhouse():
    from registry.validation import validate_config

    data = {"resource_subtype": "Cluster", "ips": "not-a-list", "ssh_port": 0,
            "server_port": "32300", "provider": "moon", "creds": {"inline": "config"},
            "den_auth": "yes", "autostop_mins": -5}
    config = mapping.den_config_for(mapping.parse_envelope(
        {"name": "/alice/x", "resource_type": "cluster", "data": data}))
    assert set(config) == {"runhouse"}
    validate_config("cluster", config)
    fn = mapping.den_config_for(mapping.parse_envelope(
        {"name": "/alice/f", "resource_type": "function",
         "data": {"system": {"name": "unsaved cluster"}, "fn_pointers": ["a", "b"]}}))
    assert set(fn) == {"runhouse"}
    validate_config("function", fn)


def test_den_resource_loads_through_runhouse():
    resource_type, data = mapping.runhouse_view(
        "cluster", {"provider": "ssh", "ips": ["10.0.0.5"], "ssh_user": "ubuntu"})
    assert resource_type == "cluster"
    assert data["resource_subtype"] == "Cluster" and data["ips"] == ["10.0.0.5"]
    assert data["ssh_properties"] == {"ssh_user": "ubuntu"}
    assert mapping.runhouse_view("cluster", {"provider": "aws"})[1]["resource_subtype"] == \
        "OnDemandCluster"
    assert mapping.runhouse_view("function", {"system": "/a/b"})[1] == {
        "system": "/a/b", "resource_subtype": "Function"}
    # A stored payload of another type (the den type was changed natively) is not trusted.
    assert mapping.runhouse_view("secret", {"runhouse": {"resource_type": "cluster",
                                                         "data": {"x": 1}}})[0] == "secret"


@pytest.mark.parametrize("body, field", [
    ([], "body"),
    ({"name": 3, "resource_type": "cluster"}, "name"),
    ({"name": "/a/b", "resource_type": ""}, "resource_type"),
    ({"name": "/a/b", "resource_type": "cluster", "visibility": "secret"}, "visibility"),
    ({"name": "/a/b", "resource_type": "cluster", "data": [1]}, "data"),
    ({"name": "/a/b", "resource_type": "secret", "data": {"values": {"K": "v"}}}, "data.values"),
])
def test_bad_envelopes_name_the_field(body, field):
    with pytest.raises(mapping.MappingError) as caught:
        mapping.parse_envelope(body)
    assert caught.value.field == field


def test_access_levels_are_write_or_read_only():
    assert [mapping.access_level_name(x) for x in ("owner", "write", "read", None)] == [
        "write", "write", "read", "read"]


def test_cluster_statuses():
    assert mapping.den_status_for_daemon("running") == "up"
    assert mapping.den_status_for_daemon("terminated") == "terminated"
    assert mapping.den_status_for_daemon("bogus") is None
    assert mapping.runhouse_cluster_status("up") == "running"
    assert mapping.runhouse_cluster_status(None) == "unknown"
    assert mapping.den_statuses_for_filter("running") == ("up",)


def test_provider_list_matches_dens_validator():
    from registry import validation

    assert mapping.CLUSTER_PROVIDERS == validation.CLUSTER_PROVIDERS
