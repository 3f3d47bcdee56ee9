"""Runhouse's resource envelope to and from den's resources, as pure functions
(no Django), so that both directions are unit-tested on their own.

How runhouse's ``data`` is stored (the decision): den's config of a resource
saved through ``/rh/`` is

    {<den fields mapped from data>, "runhouse": {"resource_type": ..., "data": {...}}}

``config.runhouse.data`` is runhouse's ``data`` exactly as sent, so a load
through ``/rh/`` gives it back unchanged (``resource_subtype`` included, which
picks the client's class). The mapped fields beside it are the ones den's own
validators, UI, client and compute understand (a cluster's ``ips``,
``provider``, ``ssh_user``; a function's ``system``), each copied only when it
has the type and range den's validator wants, so a runhouse payload can never
be refused by den's native validation (runhouse's list-shaped ``pointers``,
say, is left under ``runhouse``). A den resource without ``config.runhouse``
loads through ``/rh/`` as its den config plus a ``resource_subtype``.

Runhouse addresses are URIs with colons (``alice:team:x``); den's are paths
(``/alice/team/x``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: The config key under which a resource saved through /rh/ keeps runhouse's payload.
RUNHOUSE_KEY = "runhouse"

#: Runhouse's resource types that den has a type for; every other one is den's ``resource``.
DEN_TYPES = {"cluster": "cluster", "function": "function", "module": "module",
             "secret": "secret", "env": "env"}
#: The class runhouse builds from a den resource that has no runhouse payload.
DEFAULT_SUBTYPES = {"function": "Function", "module": "Module", "secret": "Secret",
                    "env": "Env", "resource": "Resource"}
VISIBILITIES = ("private", "unlisted", "public")
#: Den's levels as runhouse says them: runhouse knows only ``write`` and ``read``.
ACCESS_LEVELS = {"owner": "write", "write": "write", "read": "read"}

# Fields of den's cluster config and what den's validator accepts for each
# (registry/validation.py); kept in step by tests/rhcompat/test_mapping.py.
CLUSTER_PROVIDERS = frozenset(
    {
        "local", "ssh", "cheapest", "aws", "gcp", "azure", "kubernetes", "lambda",
        "paperspace", "runpod", "fluidstack", "cudo", "ibm", "oci", "scp", "vsphere",
        "nebius", "vast", "do",
    }
)
_SEGMENT_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


class MappingError(ValueError):
    """A runhouse payload den cannot store; ``field`` names the offending part."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


# Addresses ---------------------------------------------------------------------


def uri_to_address(uri: str) -> str:
    """``alice:team:x`` (or runhouse's ``/alice/team/x``) -> ``/alice/team/x``."""
    text = uri.strip()
    if text.startswith("/"):
        return text
    return "/" + text.replace(":", "/")


def address_to_uri(address: str) -> str:
    """``/alice/team/x`` -> ``alice:team:x``, as the runhouse client spells it."""
    return address.lstrip("/").replace("/", ":")


def owner_of(address: str) -> str:
    return address.lstrip("/").split("/", 1)[0]


def _is_address(value: Any) -> bool:
    """A den address as den's validator accepts it (owner and 1 to 7 segments)."""
    if not isinstance(value, str) or not value.startswith("/") or len(value) > 200:
        return False
    segments = value[1:].split("/")
    return 2 <= len(segments) <= 8 and all(
        segment and segment not in {".", "..", "-"} and set(segment) <= _SEGMENT_CHARS
        for segment in segments
    )


# The envelope ------------------------------------------------------------------


@dataclass(frozen=True)
class Envelope:
    """What a runhouse client sends to save a resource (its "split payload")."""

    name: str | None
    resource_type: str
    visibility: str | None
    data: dict[str, Any]


def parse_envelope(payload: Any) -> Envelope:
    """Check the shape of a save body; say which field is wrong if it is not."""
    if not isinstance(payload, dict):
        raise MappingError("The body must be a JSON object with name, resource_type and data.",
                           "body")
    name = payload.get("name")
    if name is not None and not isinstance(name, str):
        raise MappingError("name must be the resource's address, such as /alice/box.", "name")
    resource_type = payload.get("resource_type", "resource")
    if not isinstance(resource_type, str) or not resource_type or len(resource_type) > 40:
        raise MappingError("resource_type must be a string such as 'cluster' or 'function'.",
                           "resource_type")
    visibility = payload.get("visibility")
    if visibility is not None and visibility not in VISIBILITIES:
        raise MappingError(f"visibility must be one of {', '.join(VISIBILITIES)}.", "visibility")
    data = payload.get("data", {})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise MappingError("data must be a JSON object.", "data")
    if den_type_for(resource_type) == "secret" and "values" in data:
        raise MappingError(
            "Secret values do not belong in a resource's data: PUT them to /user/secret/<uri>.",
            "data.values",
        )
    return Envelope(name=name, resource_type=resource_type, visibility=visibility, data=data)


def den_type_for(resource_type: str) -> str:
    return DEN_TYPES.get(resource_type, "resource")


# Runhouse -> den ---------------------------------------------------------------


def _int_in(value: Any, low: int, high: int | None = None) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool) and value >= low
            and (high is None or value <= high))


def _str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _cluster_fields(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ips = data.get("ips")
    if _str_list(ips) and ips:
        out["ips"] = ips
    provider = data.get("provider")
    if isinstance(provider, str) and provider in CLUSTER_PROVIDERS:
        out["provider"] = provider
    elif "ips" in out:
        out["provider"] = "ssh"  # a static runhouse cluster: existing hosts
    ssh = data.get("ssh_properties")
    if isinstance(ssh, dict) and isinstance(ssh.get("ssh_user"), str):
        out["ssh_user"] = ssh["ssh_user"]
    for field in ("instance_type", "region"):
        if isinstance(data.get(field), str):
            out[field] = data[field]
    if _is_address(data.get("creds")):
        out["creds"] = data["creds"]
    for field, low, high in (("ssh_port", 1, 65535), ("server_port", 1, 65535),
                             ("num_nodes", 1, 1000), ("autostop_mins", -1, None)):
        if _int_in(data.get(field), low, high):
            out[field] = data[field]
    if isinstance(data.get("num_instances"), int) and "num_nodes" not in out and _int_in(
        data["num_instances"], 1, 1000
    ):
        out["num_nodes"] = data["num_instances"]
    for field in ("use_spot", "den_auth"):
        if isinstance(data.get(field), bool):
            out[field] = data[field]
    return out


def _callable_fields(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if _is_address(data.get("system")):
        out["system"] = data["system"]
    pointers = data.get("fn_pointers") or data.get("pointers")
    if isinstance(pointers, list) and len(pointers) == 3 and all(
        isinstance(item, str) for item in pointers
    ):
        # den's pointers are an object; runhouse's are [project root, module, qualname].
        out["pointers"] = {"root": pointers[0], "module": pointers[1], "qualname": pointers[2]}
    return out


def _secret_fields(data: dict[str, Any]) -> dict[str, Any]:
    return {"provider": data["provider"]} if isinstance(data.get("provider"), str) else {}


def den_config_for(envelope: Envelope) -> dict[str, Any]:
    """The den config that stores ``envelope``: mapped fields, and runhouse's
    payload unchanged under ``config.runhouse``."""
    den_type = den_type_for(envelope.resource_type)
    data = envelope.data
    if den_type == "cluster":
        fields = _cluster_fields(data)
    elif den_type in ("function", "module"):
        fields = _callable_fields(data)
    elif den_type == "secret":
        fields = _secret_fields(data)
    else:
        fields = {}
    return {**fields, RUNHOUSE_KEY: {"resource_type": envelope.resource_type, "data": data}}


# Den -> runhouse ---------------------------------------------------------------


def runhouse_view(den_type: str, config: Any) -> tuple[str, dict[str, Any]]:
    """``(resource_type, data)`` as runhouse sees a den resource: the stored
    runhouse payload when there is one, else a translation of den's config."""
    config = config if isinstance(config, dict) else {}
    stored = config.get(RUNHOUSE_KEY)
    if (
        isinstance(stored, dict)
        and isinstance(stored.get("resource_type"), str)
        and isinstance(stored.get("data"), dict)
        and den_type_for(stored["resource_type"]) == den_type
    ):
        return stored["resource_type"], stored["data"]
    return den_type, _translate_native(den_type, config)


def _translate_native(den_type: str, config: dict[str, Any]) -> dict[str, Any]:
    data = {key: value for key, value in config.items() if key != RUNHOUSE_KEY}
    if den_type == "cluster":
        static = bool(config.get("ips")) or config.get("provider") == "ssh"
        data["resource_subtype"] = "Cluster" if static else "OnDemandCluster"
        if "ssh_user" in config:
            data["ssh_properties"] = {"ssh_user": config["ssh_user"]}
        return data
    data.setdefault("resource_subtype", DEFAULT_SUBTYPES.get(den_type, "Resource"))
    return data


def access_level_name(level_label: str | None) -> str:
    """Den's level (``owner``, ``write``, ``read``) as runhouse's (``write`` or ``read``)."""
    return ACCESS_LEVELS.get(level_label or "read", "read")


def envelope_for(
    *, address: str, den_type: str, config: Any, visibility: str, owner: str,
    access_level: str | None,
) -> dict[str, Any]:
    """A resource as ``GET /resource/{uri}`` answers it."""
    resource_type, data = runhouse_view(den_type, config)
    return {
        "name": address,
        "resource_type": resource_type,
        "visibility": visibility,
        "access_level": access_level_name(access_level),
        "owner": {"username": owner},
        "data": data,
    }


# Cluster status ------------------------------------------------------------------

#: Runhouse daemon statuses (RunhouseDaemonStatus) as den's cluster statuses.
DAEMON_STATUSES = {
    "running": "up",
    "terminated": "terminated",
    "runhouse_daemon_down": "stopped",
    "unauthorized": "unreachable",
    "unknown": "unreachable",
    "internal_server_error": "unreachable",
    "invalid_url": "unreachable",
}


def den_status_for_daemon(daemon_status: Any) -> str | None:
    return DAEMON_STATUSES.get(daemon_status) if isinstance(daemon_status, str) else None


def runhouse_cluster_status(den_status: str | None) -> str:
    """Den's cluster status as runhouse's ClusterStatus."""
    if den_status == "up":
        return "running"
    if den_status in ("provisioning", "starting"):
        return "initializing"
    if den_status in ("stopped", "terminated", "down", "failed"):
        return "terminated"
    return "unknown"


def den_statuses_for_filter(value: str) -> tuple[str, ...]:
    """The den statuses a runhouse ``cluster_status``/``daemon_status`` filter means."""
    matches = {
        "running": ("up",),
        "initializing": ("provisioning", "starting"),
        "terminated": ("stopped", "terminated", "down", "failed"),
        "runhouse_daemon_down": ("stopped",),
        "unknown": ("unreachable",),
    }
    return matches.get(value, ())


def truthy(value: str | None) -> bool:
    """Query flags as ``requests`` spells them (``True``) or people do (``true``, ``1``)."""
    return (value or "").strip().lower() in {"1", "true", "yes"}
