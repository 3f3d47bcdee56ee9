"""Addresses and per-type config validation.

Every error names the offending field (``config.ips``) so that a client can
point at it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.conf import settings

from registry.errors import InvalidInput, TooLarge
from registry.models import ResourceType
from registry.models.users import USERNAME_PATTERN

MAX_ADDRESS_LENGTH = 200
MAX_ADDRESS_SEGMENTS = 8  # the owner and up to seven name segments
# Matched with fullmatch: ``$`` would also match before a trailing newline, and
# a name with a newline could then never be opened or deleted.
_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")


def parse_address(address: str, *, field: str = "address") -> tuple[str, str]:
    """Split ``/owner/name/with/folders`` into ``(owner, name)`` or say what is wrong."""
    text = address.strip()
    if not text.startswith("/"):
        text = "/" + text
    if len(text) > MAX_ADDRESS_LENGTH:
        raise InvalidInput(
            f"An address is at most {MAX_ADDRESS_LENGTH} characters; this one has {len(text)}.",
            field=field,
            code="invalid_address",
        )
    segments = text[1:].split("/")
    if len(segments) < 2:
        raise InvalidInput(
            f"'{address}' is not an address: use /<owner>/<name>.", field=field, code="invalid_address"
        )
    if len(segments) > MAX_ADDRESS_SEGMENTS:
        raise InvalidInput(
            f"An address has at most {MAX_ADDRESS_SEGMENTS} segments; this one has {len(segments)}.",
            field=field,
            code="invalid_address",
        )
    owner, names = segments[0], segments[1:]
    if not USERNAME_PATTERN.fullmatch(owner):
        raise InvalidInput(f"'{owner}' is not a valid owner name.", field=field, code="invalid_address")
    for segment in names:
        if not _SEGMENT.fullmatch(segment) or segment in {".", "..", "-"}:
            raise InvalidInput(
                f"'{segment or '(empty)'}' is not a valid name segment: use letters, digits, "
                "'.', '_' and '-' (and not '.', '..' or '-' alone).",
                field=field,
                code="invalid_address",
            )
    return owner, "/".join(names)


def parse_resource_type(value: Any) -> str:
    if value not in ResourceType.values:
        raise InvalidInput(
            f"Unknown resource type {value!r}; use one of {', '.join(ResourceType.values)}.",
            field="type",
            code="invalid_type",
        )
    return str(value)


def _fail(field: str, message: str) -> None:
    raise InvalidInput(message, field=f"config.{field}", code="invalid_config")


def _check_str(config: dict, field: str, *, nullable: bool = True) -> None:
    if field in config and not (
        isinstance(config[field], str) or (nullable and config[field] is None)
    ):
        _fail(field, f"config.{field} must be a string.")


def _check_int(config: dict, field: str, *, minimum: int, maximum: int | None = None) -> None:
    if field not in config or config[field] is None:
        return
    value = config[field]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (
        maximum is not None and value > maximum
    ):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        _fail(field, f"config.{field} must be a whole number {bound}.")


def _check_bool(config: dict, field: str) -> None:
    if field in config and config[field] is not None and not isinstance(config[field], bool):
        _fail(field, f"config.{field} must be true or false.")


def _check_str_list(config: dict, field: str) -> None:
    if field not in config or config[field] is None:
        return
    value = config[field]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        _fail(field, f"config.{field} must be a list of strings.")


def _check_str_map(config: dict, field: str) -> None:
    if field not in config or config[field] is None:
        return
    value = config[field]
    if not isinstance(value, dict) or not all(isinstance(item, str) for item in value.values()):
        _fail(field, f"config.{field} must be an object whose values are strings.")


def _check_object(config: dict, field: str) -> None:
    if field in config and config[field] is not None and not isinstance(config[field], dict):
        _fail(field, f"config.{field} must be an object.")


# A dotted Python name of at least two parts: no wildcards, no whole top-level module.
_DOTTED_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
MAX_PICKLE_ALLOW = 200  # the node daemon's limit too


def _check_pickle_allow(config: dict) -> None:
    """``pickle_allow``: the classes (or functions) callers with read access may send in
    pickled arguments beyond plain data, each named exactly (``mypkg.types.Point``)."""
    value = config.get("pickle_allow")
    if value is None:
        return
    if not isinstance(value, list) or len(value) > MAX_PICKLE_ALLOW:
        _fail("pickle_allow", f"config.pickle_allow must be a list of at most {MAX_PICKLE_ALLOW} "
                              "dotted names such as 'mypkg.types.Point'.")
    for name in value:
        if not isinstance(name, str) or not _DOTTED_NAME.match(name):
            _fail("pickle_allow", f"config.pickle_allow entries are dotted names of a class or "
                                  f"function such as 'mypkg.types.Point', not {name!r}: no "
                                  "wildcards or whole modules.")


def _check_address_field(config: dict, field: str) -> None:
    if field in config and config[field] is not None:
        if not isinstance(config[field], str):
            _fail(field, f"config.{field} must be an address such as /alice/name.")
        parse_address(config[field], field=f"config.{field}")


CLUSTER_PROVIDERS = frozenset(
    {
        "local", "ssh", "cheapest", "aws", "gcp", "azure", "kubernetes", "lambda",
        "paperspace", "runpod", "fluidstack", "cudo", "ibm", "oci", "scp", "vsphere",
        "nebius", "vast", "do",
    }
)


def _validate_cluster(config: dict) -> None:
    provider = config.get("provider")
    if provider is not None and provider not in CLUSTER_PROVIDERS:
        _fail("provider", f"config.provider must be one of {', '.join(sorted(CLUSTER_PROVIDERS))}.")
    _check_str_list(config, "ips")
    if provider == "ssh" and not config.get("ips"):
        _fail("ips", "config.ips must list at least one host for provider 'ssh'.")
    for field in ("ssh_user", "instance_type", "region", "name", "image"):
        _check_str(config, field)
    _check_address_field(config, "creds")
    _check_int(config, "ssh_port", minimum=1, maximum=65535)
    _check_int(config, "server_port", minimum=1, maximum=65535)
    _check_int(config, "num_nodes", minimum=1, maximum=1000)
    _check_int(config, "disk_size", minimum=1, maximum=65536)
    _check_int(config, "autostop_mins", minimum=-1)
    _check_bool(config, "use_spot")
    _check_bool(config, "den_auth")


def _validate_callable(config: dict) -> None:
    _check_address_field(config, "system")
    env = config.get("env")
    if isinstance(env, dict):
        _validate_env(env, prefix="env.")
    elif env is not None:
        _check_address_field(config, "env")
    _check_str(config, "code")
    _check_object(config, "pointers")
    _check_object(config, "signature")
    _check_pickle_allow(config)


def _validate_env(config: dict, prefix: str = "") -> None:
    for field, check in (
        ("reqs", _check_str_list),
        ("env_vars", _check_str_map),
        ("setup_cmds", _check_str_list),
    ):
        try:
            check(config, field)
        except InvalidInput as exc:
            raise InvalidInput(
                exc.message.replace("config.", f"config.{prefix}"),
                field=f"config.{prefix}{field}",
                code="invalid_config",
            ) from None
    if "python" in config and config["python"] is not None and not isinstance(config["python"], str):
        _fail(f"{prefix}python", f"config.{prefix}python must be a version string such as '3.11'.")


def _validate_secret(config: dict) -> None:
    if "values" in config:
        _fail("values", "Secret values do not belong in the config: PUT them to .../-/secret.")
    _check_str(config, "provider")


_VALIDATORS = {
    ResourceType.CLUSTER: _validate_cluster,
    ResourceType.FUNCTION: _validate_callable,
    ResourceType.MODULE: _validate_callable,
    ResourceType.ENV: _validate_env,
    ResourceType.SECRET: _validate_secret,
}


#: The config fields of each type that name another resource, and the type
#: that resource must have. ``registry.access.require_readable_references``
#: checks them against the writer's access on every write.
REFERENCE_FIELDS: dict[str, dict[str, str]] = {
    ResourceType.CLUSTER: {"creds": ResourceType.SECRET},
    ResourceType.FUNCTION: {"system": ResourceType.CLUSTER, "env": ResourceType.ENV},
    ResourceType.MODULE: {"system": ResourceType.CLUSTER, "env": ResourceType.ENV},
}


def config_references(resource_type: str, config: Any) -> dict[str, tuple[str, str]]:
    """``{field: (address, required type)}`` for the references in a validated
    config of ``resource_type``; an inline env (an object) is no reference."""
    if not isinstance(config, dict):
        return {}
    found: dict[str, tuple[str, str]] = {}
    for field, target_type in REFERENCE_FIELDS.get(resource_type, {}).items():
        value = config.get(field)
        if isinstance(value, str) and value:
            owner, name = parse_address(value, field=f"config.{field}")
            found[field] = (f"/{owner}/{name}", target_type)
    return found


def validate_config(resource_type: str, config: Any) -> dict:
    """Check a config against its type's fields and the size limit; return it."""
    if not isinstance(config, dict):
        raise InvalidInput("config must be a JSON object.", field="config", code="invalid_config")
    size = len(json.dumps(config, separators=(",", ":")).encode())
    if size > settings.DEN_MAX_CONFIG_BYTES:
        raise TooLarge(
            f"config is {size} bytes; the limit is {settings.DEN_MAX_CONFIG_BYTES} bytes (1 MiB).",
            field="config",
        )
    validator = _VALIDATORS.get(ResourceType(resource_type))
    if validator:
        validator(config)
    return config


# Text and JSON the database can store ---------------------------------------------

#: How deeply JSON may nest. Configs need a handful of levels; the bound keeps
#: every later step (json.dumps, the database, the diff) far from recursion limits.
MAX_JSON_DEPTH = 100
# PostgreSQL refuses NUL in text and in jsonb, and a lone surrogate cannot be
# encoded as UTF-8 at all; json.loads joins escaped pairs, so any surrogate
# left in a string is a lone one.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable_text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored (a NUL or a lone surrogate), or None."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "contains a NUL character (\\u0000)"
    return f"contains a lone surrogate (\\u{ord(found.group()):04x}), which is not valid Unicode"


def check_text(text: str, *, field: str) -> str:
    """``text``, or InvalidInput naming ``field`` if the database cannot store it."""
    problem = unstorable_text_problem(text)
    if problem:
        raise InvalidInput(f"{field} {problem}; remove it.", field=field, code="invalid_text")
    return text


_CONTAINERS = (dict, list)


def _join(path: str, key: str | int) -> str:
    return f"{path}.{key}" if path else str(key)


def _too_deep(value: Any, levels: int) -> bool:
    """True if ``value`` nests more than ``levels`` containers deep: one level
    at a time over containers only, the fastest walk in pure Python."""
    level = [value] if type(value) in _CONTAINERS else []
    while level:
        levels -= 1
        if levels < 0:
            return True
        below: list[Any] = []
        for item in level:
            children = item.values() if type(item) is dict else item
            below.extend([child for child in children if type(child) in _CONTAINERS])
        level = below
    return False


def check_json_depth(value: Any) -> Any:
    """``value`` (parsed JSON), or InvalidInput naming the top-level field that
    nests deeper than ``MAX_JSON_DEPTH`` (for a body known to hold no
    unstorable text or number; ``check_json`` checks everything)."""
    items = value.items() if type(value) is dict else [("", value)]
    for key, child in items:
        if _too_deep(child, MAX_JSON_DEPTH - 1):
            raise InvalidInput(
                f"{key or 'The request body'} nests more than {MAX_JSON_DEPTH} levels deep; "
                "flatten it.",
                field=key or None,
                code="too_deep",
            )
    return value


def check_json(value: Any, *, field: str = "") -> Any:
    """``value`` (parsed JSON), or InvalidInput naming the first field that the
    database cannot store: a NUL or lone surrogate in a string or a key, a
    number too large to be finite (``1e400``), or nesting deeper than
    ``MAX_JSON_DEPTH``. Iterative, so depth cannot exhaust the stack."""
    stack: list[tuple[Any, str, int]] = [(value, field, 0)]
    while stack:
        item, path, depth = stack.pop()
        where = path or "the request body"
        if isinstance(item, str):
            problem = unstorable_text_problem(item)
            if problem:
                raise InvalidInput(f"{where} {problem}; remove it.", field=path or None,
                                   code="invalid_text")
        elif isinstance(item, float):
            if item != item or item in (float("inf"), float("-inf")):
                raise InvalidInput(
                    f"{where} is a number JSON cannot hold (too large, or not a number); "
                    "send a finite number or a string.",
                    field=path or None,
                    code="invalid_number",
                )
        elif isinstance(item, dict | list):
            if depth >= MAX_JSON_DEPTH:
                # Named by its top-level field: the whole path would be a hundred segments.
                name = path.split(".", 1)[0] or None
                raise InvalidInput(
                    f"{name or 'The request body'} nests more than {MAX_JSON_DEPTH} levels "
                    "deep; flatten it.",
                    field=name,
                    code="too_deep",
                )
            if isinstance(item, dict):
                for key in item:
                    problem = unstorable_text_problem(key)
                    if problem:
                        raise InvalidInput(f"A key in {where} {problem}; remove it.",
                                           field=path or None, code="invalid_text")
                children = [(child, _join(path, key), depth + 1) for key, child in item.items()]
            else:
                children = [(child, _join(path, index), depth + 1)
                            for index, child in enumerate(item)]
            stack.extend(reversed(children))  # so that the first problem is reported first
    return value


def check_request_text(query: Any, kwargs: dict[str, Any]) -> None:
    """Refuse a NUL or lone surrogate in a URL segment (``kwargs``) or a query
    or form parameter (``query``, a QueryDict) with a 400 naming it, before any
    view looks the value up; the API's and the pages' base views call it."""
    for name, value in kwargs.items():
        if isinstance(value, str):
            check_text(value, field=name)
    for key, values in query.lists():
        check_text(key, field="query parameter")
        for value in values:
            check_text(value, field=key)
