"""The Runhouse-style entry points: ``den.function``, ``den.cluster``, ``den.env``, ...

Each describes a new resource, or loads a saved one when given a name alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from den.client.errors import ValidationError
from den.client.resources.base import Resource
from den.client.resources.clusters import Cluster
from den.client.resources.envs import Env
from den.client.resources.loading import load_typed
from den.client.resources.runnables import Function, Module
from den.client.resources.secrets import Secret
from den.client.session import Session


def _wants_load(name: str | None, load_flag: bool | None, given: dict[str, Any]) -> bool:
    if load_flag is not None:
        return load_flag
    return name is not None and all(value is None for value in given.values())


def function(
    fn: Callable[..., Any] | None = None,
    name: str | None = None,
    *,
    system: Cluster | str | None = None,
    env: Env | str | list[str] | dict[str, Any] | None = None,
    description: str | None = None,
    visibility: str | None = None,
    load: bool | None = None,
    session: Session | None = None,
) -> Function:
    """A :class:`Function`: ``den.function(train)`` wraps a Python function (capturing
    its pointers and signature; named after it); ``den.function(name="/alice/train")``
    loads a saved one by address or URL.

    ``load=True``/``False`` forces either; by default a name alone loads.
    """
    given = {"fn": fn, "system": system, "env": env, "description": description}
    if _wants_load(name, load, given):
        assert name is not None
        return load_typed(Function, name, session)
    if fn is None and name is None:
        raise ValidationError("den.function needs a function to wrap or a name to load.")
    return Function(
        fn,
        name,
        system=system,
        env=env,
        description=description,
        visibility=visibility,
        session=session,
    )


def module(
    cls: type | None = None,
    name: str | None = None,
    *,
    system: Cluster | str | None = None,
    env: Env | str | list[str] | dict[str, Any] | None = None,
    description: str | None = None,
    visibility: str | None = None,
    load: bool | None = None,
    session: Session | None = None,
) -> Module:
    """A :class:`Module`: ``den.module(Model)`` wraps a class (capturing its pointers
    and method signatures); ``den.module(name="/alice/model")`` loads a saved one."""
    given = {"cls": cls, "system": system, "env": env, "description": description}
    if _wants_load(name, load, given):
        assert name is not None
        return load_typed(Module, name, session)
    if cls is None and name is None:
        raise ValidationError("den.module needs a class to wrap or a name to load.")
    return Module(
        cls,
        name,
        system=system,
        env=env,
        description=description,
        visibility=visibility,
        session=session,
    )


def cluster(
    name: str | None = None,
    *,
    provider: str | None = None,
    ips: list[str] | None = None,
    ssh_creds: dict[str, Any] | Secret | str | None = None,
    ssh_user: str | None = None,
    ssh_port: int | None = None,
    instance_type: str | None = None,
    num_nodes: int | None = None,
    region: str | None = None,
    use_spot: bool | None = None,
    autostop_mins: int | None = None,
    server_port: int | None = None,
    den_auth: bool | None = None,
    description: str | None = None,
    visibility: str | None = None,
    load: bool | None = None,
    session: Session | None = None,
    **extra: Any,
) -> Cluster:
    """A :class:`Cluster`: ``den.cluster(name="cpu", provider="local")`` describes a new
    one; ``den.cluster(name="/alice/cpu")`` (a name alone) loads a saved one.

    ``ssh_creds`` is a secret (object or address) or a dict such as
    ``{"ssh_user": "ubuntu", "ssh_private_key": "~/.ssh/id_ed25519"}``, which is
    saved as the secret ``<cluster>-ssh-creds`` (the key file's contents are read
    into it). The provider defaults to ``ssh`` with ``ips``, else ``cheapest``
    with an ``instance_type``.
    """
    given = {
        "provider": provider,
        "ips": ips,
        "ssh_creds": ssh_creds,
        "ssh_user": ssh_user,
        "ssh_port": ssh_port,
        "instance_type": instance_type,
        "num_nodes": num_nodes,
        "region": region,
        "use_spot": use_spot,
        "autostop_mins": autostop_mins,
        "server_port": server_port,
        "den_auth": den_auth,
        "description": description,
        **extra,
    }
    if _wants_load(name, load, given):
        assert name is not None
        return load_typed(Cluster, name, session)
    if provider is None:
        provider = "ssh" if ips else ("cheapest" if instance_type else None)
    creds: Secret | str | None
    if isinstance(ssh_creds, dict):
        creds = Secret(provider="ssh", values=_read_ssh_creds(ssh_creds), session=session)
        ssh_user = ssh_user or ssh_creds.get("ssh_user")
    else:
        creds = ssh_creds
    return Cluster(
        name,
        provider=provider,
        ips=ips,
        ssh_user=ssh_user,
        ssh_port=ssh_port,
        creds=creds,
        instance_type=instance_type,
        num_nodes=num_nodes,
        region=region,
        use_spot=use_spot,
        autostop_mins=autostop_mins,
        server_port=server_port,
        den_auth=den_auth,
        data=extra or None,
        description=description,
        visibility=visibility,
        session=session,
    )


def _read_ssh_creds(creds: dict[str, Any]) -> dict[str, Any]:
    """Copy SSH creds, adding the private key's contents when given as a path."""
    import os

    values = dict(creds)
    key_path = values.get("ssh_private_key")
    if isinstance(key_path, str) and "PRIVATE KEY" not in key_path:
        path = os.path.expanduser(key_path)
        if os.path.isfile(path):
            with open(path) as handle:
                values["private_key"] = handle.read()
    return values


def env(
    reqs: list[str] | None = None,
    name: str | None = None,
    *,
    env_vars: dict[str, str] | None = None,
    setup_cmds: list[str] | None = None,
    python: str | None = None,
    description: str | None = None,
    visibility: str | None = None,
    load: bool | None = None,
    session: Session | None = None,
) -> Env:
    """An :class:`Env`: ``den.env(reqs=["scikit-learn"], name="sk")`` describes one;
    ``den.env(name="/alice/sk")`` (a name alone) loads a saved one."""
    given = {
        "reqs": reqs,
        "env_vars": env_vars,
        "setup_cmds": setup_cmds,
        "python": python,
        "description": description,
    }
    if _wants_load(name, load, given):
        assert name is not None
        return load_typed(Env, name, session)
    return Env(
        name,
        reqs=reqs,
        env_vars=env_vars,
        setup_cmds=setup_cmds,
        python=python,
        description=description,
        visibility=visibility,
        session=session,
    )


def secret(
    name: str | None = None,
    *,
    provider: str | None = None,
    values: dict[str, Any] | None = None,
    description: str | None = None,
    visibility: str | None = None,
    load: bool | None = None,
    session: Session | None = None,
    **metadata: Any,
) -> Secret:
    """A :class:`Secret`: ``den.secret(name="aws", provider="aws", values={...})``
    describes one (saving uploads the values); ``den.secret(name="/alice/aws")``
    loads one (``.values`` then fetches the values)."""
    given = {"provider": provider, "values": values, "description": description, **metadata}
    if _wants_load(name, load, given):
        assert name is not None
        return load_typed(Secret, name, session)
    return Secret(
        name,
        provider=provider,
        values=values,
        data=metadata or None,
        description=description,
        visibility=visibility,
        session=session,
    )


def resource(
    name: str | None = None,
    *,
    data: dict[str, Any] | None = None,
    description: str | None = None,
    visibility: str | None = None,
    load: bool | None = None,
    session: Session | None = None,
) -> Resource:
    """A plain JSON :class:`Resource`: ``den.resource(name="cfg", data={...})``
    describes one; ``den.resource(name="/alice/cfg")`` loads any resource."""
    if _wants_load(name, load, {"data": data, "description": description}):
        assert name is not None
        return load_typed(Resource, name, session)
    return Resource(
        name, data=data, description=description, visibility=visibility, session=session
    )
