"""Resource objects: clusters, functions, modules, envs, secrets and plain JSON resources.

A resource object holds a config (the JSON signature den stores) and, once saved
or loaded, its ``address`` and ``version``. Every network call has a blocking
form (``save``) and an async one (``asave``); both run the same operation.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from den.client import api
from den.client.addresses import parse_address
from den.client.errors import ValidationError, WrongType
from den.client.session import Op, Session, arun, current, run

if TYPE_CHECKING:
    import inspect
    from typing import Self  # novm: Python 3.11; the node imports this module on 3.9 too

    from den.client import remote

__all__ = [
    "Cluster",
    "Env",
    "Function",
    "Module",
    "Resource",
    "Runnable",
    "Secret",
    "alist_resources",
    "aload",
    "cluster",
    "env",
    "function",
    "list_resources",
    "load",
    "module",
    "resource",
    "secret",
]

R = TypeVar("R", bound="Resource")

VISIBILITIES = ("private", "unlisted", "public")
ACCESS_LEVELS = ("read", "write")
_RESOURCE_TYPES: dict[str, type[Resource]] = {}


def _check_visibility(visibility: str | None) -> str | None:
    if visibility is not None and visibility not in VISIBILITIES:
        raise ValidationError(
            f"visibility must be one of {', '.join(VISIBILITIES)}, not {visibility!r}.",
            field="visibility",
        )
    return visibility


def _users(users: str | Iterable[str]) -> list[str]:
    return [users] if isinstance(users, str) else [str(user) for user in users]


def _prune(fields: dict[str, Any]) -> dict[str, Any]:
    """Drop unset (None) fields: the server validates the types of the ones present."""
    return {key: value for key, value in fields.items() if value is not None}


class Resource:
    """A saved thing with an address, a type, a versioned config and access rules.

    This base class is also the ``resource`` type: any JSON object, kept in
    :attr:`data`. Typed subclasses (:class:`Cluster`, :class:`Function`, ...) keep
    their known config fields as attributes and any other keys in :attr:`data`.
    """

    TYPE: ClassVar[str] = "resource"

    def __init__(
        self,
        name: str | None = None,
        *,
        data: dict[str, Any] | None = None,
        description: str | None = None,
        visibility: str | None = None,
        session: Session | None = None,
    ) -> None:
        self._name: str | None = None
        #: Full address ``/<owner>/<name>``, once known.
        self.address: str | None = None
        #: Version on the server, once saved or loaded.
        self.version: int | None = None
        #: Owner's username, once saved or loaded.
        self.owner: str | None = None
        #: The resource's web page, once saved or loaded.
        self.url: str | None = None
        #: Your access level (``read``, ``write``, ``owner``), once saved or loaded.
        self.access_level: str | None = None
        # Metadata set here or by assignment is sent on save; metadata that came
        # from the server is not, so a save never undoes someone else's change.
        self._meta_changed: set[str] = set()
        self._description: str | None = None
        self._visibility: str | None = None
        if description is not None:
            self.description = description
        if visibility is not None:
            self.visibility = visibility
        #: Config keys this class does not model, kept and saved unchanged.
        self.data: dict[str, Any] = dict(data or {})
        self._session = session
        self._saved_fields: dict[str, Any] | None = None
        if name is not None:
            self._set_name(name)

    @property
    def description(self) -> str | None:
        """A human description, shown in listings and on the web page."""
        return self._description

    @description.setter
    def description(self, value: str | None) -> None:
        self._description = value
        self._meta_changed.add("description")

    @property
    def visibility(self) -> str | None:
        """``private``, ``unlisted`` or ``public`` (``None``: not known yet / server default)."""
        return self._visibility

    @visibility.setter
    def visibility(self, value: str | None) -> None:
        self._visibility = _check_visibility(value)
        self._meta_changed.add("visibility")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "TYPE" in cls.__dict__:
            _RESOURCE_TYPES[cls.TYPE] = cls

    # -- names ------------------------------------------------------------------

    def _set_name(self, name: str) -> None:
        owner, rest = parse_address(name)
        if owner is not None:
            address = f"/{owner}/{rest}"
            if address != self.address:
                self.version = None
            self.address = address
        else:
            if self.address is not None:
                self.version = None
            self.address = None
        self._name = name

    @property
    def name(self) -> str | None:
        """The resource's name within its owner's namespace (``train`` for ``/alice/train``)."""
        if self.address:
            return self.address.split("/", 2)[2]
        if self._name is None:
            return None
        return parse_address(self._name)[1]

    @name.setter
    def name(self, value: str) -> None:
        self._set_name(value)

    def _sess(self) -> Session:
        return self._session or current()

    def __repr__(self) -> str:
        label = self.address or self._name or "unnamed"
        version = f" v{self.version}" if self.version is not None else ""
        return f"<{type(self).__name__} {label}{version}>"

    # -- config -----------------------------------------------------------------

    def _config_fields(self) -> dict[str, Any]:
        """This resource's config as stored by den (references as addresses or names)."""
        return dict(self.data)

    def _set_fields(self, config: dict[str, Any]) -> None:
        """Set attributes from a stored config; unknown keys go to :attr:`data`."""
        self.data = dict(config)

    def _wire_config(self, session: Session) -> Op[dict[str, Any]]:
        """The config to send: references resolved and saved as needed."""
        return self._config_fields()
        yield  # pragma: no cover  (makes this a generator)

    def config(self) -> dict[str, Any]:
        """This resource as a JSON-ready dict: ``type``, ``name``, ``description``,
        ``visibility``, ``version`` and ``config`` (the stored fields).

        ``Resource.from_config(r.config())`` gives back an equal resource, and
        the dict needs no server to make.
        """
        return {
            "type": self.TYPE,
            "name": self.address or self._name,
            "description": self.description,
            "visibility": self.visibility,
            "version": self.version,
            "config": self._config_fields(),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], *, session: Session | None = None) -> Self:
        """Make a resource object from :meth:`config`'s output or a server's answer.

        Called on :class:`Resource`, the ``type`` key picks the class; called on a
        subclass, a config of another type raises :class:`den.WrongType`.
        """
        type_name = str(config.get("type") or cls.TYPE)
        target = _RESOURCE_TYPES.get(type_name, Resource)
        if cls is not Resource and not issubclass(target, cls):
            label = config.get("address") or config.get("name") or "This config"
            raise WrongType(
                f"{label} is a {type_name}, not a {cls.TYPE}; load it with den.load(...) "
                f"or den.{type_name}(name=...).",
                field="type",
            )
        obj = target(session=session)
        obj._apply(config)
        assert isinstance(obj, cls)
        return obj

    def _apply(self, data: dict[str, Any]) -> None:
        """Take metadata (and the config, when present) from a server answer or config dict."""
        name = data.get("address") or data.get("name")
        if name:
            self._name = str(name)
            owner, rest = parse_address(self._name)
            self.address = f"/{owner}/{rest}" if owner is not None else None
        for key in ("version", "owner", "url", "access_level"):
            if key in data:
                setattr(self, key, data[key])
        if "visibility" in data:
            self._visibility = data["visibility"]
        if "description" in data:
            self._description = data["description"]
        if isinstance(data.get("config"), dict):
            self._set_fields(dict(data["config"]))
            if self.version is not None:
                self._saved_fields = self._config_fields()

    def _dirty(self) -> bool:
        return self.version is None or self._saved_fields != self._config_fields()

    # -- saving ------------------------------------------------------------------

    def _resolve_own_address(self, session: Session) -> Op[str]:
        if self.address is None:
            if self._name is None:
                raise ValidationError(
                    f"This {self.TYPE} has no name: save it with .save(name='...').",
                    field="name",
                )
            self.address = yield from api.resolve(session, self._name)
        return self.address

    def _save_op(self, session: Session, name: str | None = None, force: bool = False) -> Op[Self]:
        if name is not None:
            self._set_name(name)
        address = yield from self._resolve_own_address(session)
        config = yield from self._wire_config(session)
        # A new object sends all its metadata; a loaded one only what was changed.
        changed = self._meta_changed if self.version is not None else {"visibility", "description"}
        visibility = self.visibility if "visibility" in changed else None
        data = yield from api.resource_put(
            address,
            self.TYPE,
            config,
            description=self.description if "description" in changed else None,
            visibility=visibility,
            if_match=None if force else self.version,
        )
        if visibility is not None and data.get("visibility") != visibility:
            data = yield from api.resource_patch(address, visibility=visibility)
        self._apply({key: value for key, value in data.items() if key != "config"})
        self._meta_changed = set()
        self._saved_fields = self._config_fields()
        return self

    def _ensure_saved(self, session: Session) -> Op[str]:
        """Save this resource if it changed since it was loaded or saved; return its address."""
        if self._dirty():
            yield from self._save_op(session)
        assert self.address is not None
        return self.address

    def save(self, name: str | None = None, *, force: bool = False) -> Self:
        """Save this resource to den, making a new version; returns ``self``.

        ``name`` (``"train"``, ``"~/train"``, ``"/team/train"``) saves it under
        that address. Resources it refers to (a function's cluster and env) are
        saved first when they have changed. Raises :class:`den.Conflict` when the
        resource changed on the server since this object loaded or saved it;
        ``force=True`` overwrites regardless.
        """
        session = self._sess()
        return run(self._save_op(session, name, force), session)

    async def asave(self, name: str | None = None, *, force: bool = False) -> Self:
        """Async :meth:`save`."""
        session = self._sess()
        return await arun(self._save_op(session, name, force), session)

    # -- sharing -----------------------------------------------------------------

    def _share_op(
        self,
        session: Session,
        users: str | Iterable[str] | None,
        access_level: str,
        visibility: str | None,
    ) -> Op[dict[str, Any]]:
        if access_level not in ACCESS_LEVELS:
            raise ValidationError(
                f"access_level must be 'read' or 'write', not {access_level!r}.",
                field="access_level",
            )
        _check_visibility(visibility)
        if self.version is None:
            yield from self._save_op(session)
        assert self.address is not None
        result: dict[str, Any] = {"granted": [], "invited": []}
        names = _users(users) if users else []
        if names:
            result = yield from api.access_grant(self.address, names, access_level)
        if visibility is not None:
            data = yield from api.resource_patch(self.address, visibility=visibility)
            self._apply({key: value for key, value in data.items() if key != "config"})
        return result

    def share(
        self,
        users: str | Iterable[str] | None = None,
        access_level: str = "read",
        visibility: str | None = None,
    ) -> dict[str, Any]:
        """Give users (usernames or emails) ``read`` or ``write`` access; optionally
        set ``visibility`` (``private``, ``unlisted``, ``public``).

        Saves the resource first if it was never saved. Returns the server's
        ``{"granted": [...], "invited": [...]}``: emails without an account get
        an invitation.
        """
        session = self._sess()
        return run(self._share_op(session, users, access_level, visibility), session)

    async def ashare(
        self,
        users: str | Iterable[str] | None = None,
        access_level: str = "read",
        visibility: str | None = None,
    ) -> dict[str, Any]:
        """Async :meth:`share`."""
        session = self._sess()
        return await arun(self._share_op(session, users, access_level, visibility), session)

    def _revoke_op(self, session: Session, users: str | Iterable[str]) -> Op[None]:
        address = yield from self._resolve_own_address(session)
        for user in _users(users):
            yield from api.access_revoke(address, user)

    def revoke(self, users: str | Iterable[str]) -> None:
        """Take away the access of users (usernames or emails) granted with :meth:`share`."""
        session = self._sess()
        run(self._revoke_op(session, users), session)

    async def arevoke(self, users: str | Iterable[str]) -> None:
        """Async :meth:`revoke`."""
        session = self._sess()
        await arun(self._revoke_op(session, users), session)

    def _access_op(self, session: Session) -> Op[dict[str, Any]]:
        address = yield from self._resolve_own_address(session)
        return (yield from api.access_get(address))

    def access(self) -> dict[str, Any]:
        """Who may use this resource: ``owner``, ``visibility``, ``grants`` and ``pending``."""
        session = self._sess()
        return run(self._access_op(session), session)

    async def aaccess(self) -> dict[str, Any]:
        """Async :meth:`access`."""
        session = self._sess()
        return await arun(self._access_op(session), session)

    # -- versions ----------------------------------------------------------------

    def _history_op(self, session: Session) -> Op[list[dict[str, Any]]]:
        address = yield from self._resolve_own_address(session)
        return (yield from api.version_list(address))

    def history(self) -> list[dict[str, Any]]:
        """The versions of this resource, newest first: ``version``, ``type``,
        ``author`` and ``created_at`` of each."""
        session = self._sess()
        return run(self._history_op(session), session)

    async def ahistory(self) -> list[dict[str, Any]]:
        """Async :meth:`history`."""
        session = self._sess()
        return await arun(self._history_op(session), session)

    def _restore_op(self, session: Session, version: int) -> Op[Self]:
        address = yield from self._resolve_own_address(session)
        data = yield from api.resource_restore(address, version)
        if not isinstance(data.get("config"), dict):
            data = yield from api.resource_get(address)
        self._apply(data)
        return self

    def restore(self, version: int) -> Self:
        """Make a new version with the config of ``version``, and load it into this object."""
        session = self._sess()
        return run(self._restore_op(session, version), session)

    async def arestore(self, version: int) -> Self:
        """Async :meth:`restore`."""
        session = self._sess()
        return await arun(self._restore_op(session, version), session)

    def _delete_op(self, session: Session) -> Op[None]:
        address = yield from self._resolve_own_address(session)
        yield from api.resource_delete(address)
        self.version = None
        self._saved_fields = None

    def delete(self) -> None:
        """Delete this resource from den (owner only). The local object stays usable."""
        session = self._sess()
        run(self._delete_op(session), session)

    async def adelete(self) -> None:
        """Async :meth:`delete`."""
        session = self._sess()
        await arun(self._delete_op(session), session)

    def _reload_op(self, session: Session) -> Op[Self]:
        address = yield from self._resolve_own_address(session)
        data = yield from api.resource_get(address)
        self._apply(data)
        return self

    def reload(self) -> Self:
        """Replace this object's config and version with the server's latest."""
        session = self._sess()
        return run(self._reload_op(session), session)

    async def areload(self) -> Self:
        """Async :meth:`reload`."""
        session = self._sess()
        return await arun(self._reload_op(session), session)


class Env(Resource):
    """An environment for code to run in: pip ``reqs``, ``env_vars``,
    ``setup_cmds`` (shell commands run once) and a ``python`` version."""

    TYPE = "env"

    def __init__(
        self,
        name: str | None = None,
        *,
        reqs: list[str] | None = None,
        env_vars: dict[str, str] | None = None,
        setup_cmds: list[str] | None = None,
        python: str | None = None,
        data: dict[str, Any] | None = None,
        description: str | None = None,
        visibility: str | None = None,
        session: Session | None = None,
    ) -> None:
        super().__init__(
            name, data=data, description=description, visibility=visibility, session=session
        )
        self.reqs: list[str] = list(reqs or [])
        self.env_vars: dict[str, str] = dict(env_vars or {})
        self.setup_cmds: list[str] = list(setup_cmds or [])
        self.python = python

    def _config_fields(self) -> dict[str, Any]:
        fields = {
            "reqs": list(self.reqs),
            "env_vars": dict(self.env_vars),
            "setup_cmds": list(self.setup_cmds),
            "python": self.python,
        }
        # Empty lists mean the same as absent ones; leave them out.
        return {**self.data, **{key: value for key, value in fields.items() if value}}

    def _set_fields(self, config: dict[str, Any]) -> None:
        self.reqs = list(config.pop("reqs", None) or [])
        self.env_vars = dict(config.pop("env_vars", None) or {})
        self.setup_cmds = list(config.pop("setup_cmds", None) or [])
        self.python = config.pop("python", None)
        self.data = config


class Secret(Resource):
    """Credentials: non-secret ``provider`` and metadata in the config, the secret
    ``values`` stored encrypted by den and read or written through their own
    endpoint (write access needed; every read is audited)."""

    TYPE = "secret"

    def __init__(
        self,
        name: str | None = None,
        *,
        provider: str | None = None,
        values: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        description: str | None = None,
        visibility: str | None = None,
        session: Session | None = None,
    ) -> None:
        super().__init__(
            name, data=data, description=description, visibility=visibility, session=session
        )
        self.provider = provider
        self._values: dict[str, Any] | None = dict(values) if values is not None else None
        self._values_dirty = values is not None

    def _config_fields(self) -> dict[str, Any]:
        return {**self.data, **_prune({"provider": self.provider})}

    def _set_fields(self, config: dict[str, Any]) -> None:
        self.provider = config.pop("provider", None)
        values = config.pop("values", None)
        if isinstance(values, dict):
            self._values, self._values_dirty = dict(values), True
        self.data = config

    def _dirty(self) -> bool:
        return self._values_dirty or super()._dirty()

    def _save_op(self, session: Session, name: str | None = None, force: bool = False) -> Op[Self]:
        yield from super()._save_op(session, name, force)
        if self._values_dirty and self._values is not None:
            assert self.address is not None
            yield from api.secret_put(self.address, self._values)
            self._values_dirty = False
        return self

    @property
    def values(self) -> dict[str, Any]:
        """The secret values: the ones set locally, else fetched from den (and cached)."""
        if self._values is None:
            self._values = self.get_values()
        return self._values

    @values.setter
    def values(self, values: dict[str, Any]) -> None:
        self._values, self._values_dirty = dict(values), True

    def _get_values_op(self, session: Session) -> Op[dict[str, Any]]:
        address = yield from self._resolve_own_address(session)
        values = yield from api.secret_get(address)
        self._values, self._values_dirty = dict(values), False
        return values

    def get_values(self) -> dict[str, Any]:
        """Fetch the secret values from den (needs write access; audited)."""
        session = self._sess()
        return run(self._get_values_op(session), session)

    async def aget_values(self) -> dict[str, Any]:
        """Async :meth:`get_values`."""
        session = self._sess()
        return await arun(self._get_values_op(session), session)

    def _set_values_op(self, session: Session, values: dict[str, Any]) -> Op[None]:
        self._values, self._values_dirty = dict(values), True
        if self.version is None:
            yield from self._save_op(session)
            return
        assert self.address is not None
        yield from api.secret_put(self.address, self._values)
        self._values_dirty = False

    def set_values(self, values: dict[str, Any]) -> None:
        """Replace the secret values on den (saving the secret first if it is new)."""
        session = self._sess()
        run(self._set_values_op(session, values), session)

    async def aset_values(self, values: dict[str, Any]) -> None:
        """Async :meth:`set_values`."""
        session = self._sess()
        await arun(self._set_values_op(session, values), session)


_CLUSTER_FIELDS = (
    "provider",
    "ips",
    "ssh_user",
    "ssh_port",
    "instance_type",
    "num_nodes",
    "region",
    "use_spot",
    "autostop_mins",
    "server_port",
    "den_auth",
)


#: Inline SSH keys this process has said it saved (said once per secret).
_SAID_SAVED: set[str] = set()


class Cluster(Resource):
    """Compute to run functions and modules on: a local process (``provider="local"``),
    existing hosts over SSH (``ips`` and ``creds``) or a cloud or Kubernetes
    through SkyPilot (``instance_type``, ``provider="aws"``, ...)."""

    TYPE = "cluster"

    def __init__(
        self,
        name: str | None = None,
        *,
        provider: str | None = None,
        ips: list[str] | None = None,
        ssh_user: str | None = None,
        ssh_port: int | None = None,
        creds: Secret | str | None = None,
        instance_type: str | None = None,
        num_nodes: int | None = None,
        region: str | None = None,
        use_spot: bool | None = None,
        autostop_mins: int | None = None,
        server_port: int | None = None,
        den_auth: bool | None = None,
        data: dict[str, Any] | None = None,
        description: str | None = None,
        visibility: str | None = None,
        session: Session | None = None,
    ) -> None:
        super().__init__(
            name, data=data, description=description, visibility=visibility, session=session
        )
        self.provider = provider
        self.ips = list(ips) if ips is not None else None
        self.ssh_user = ssh_user
        self.ssh_port = ssh_port
        self.creds: Secret | str | None = creds
        self.instance_type = instance_type
        self.num_nodes = num_nodes
        self.region = region
        self.use_spot = use_spot
        self.autostop_mins = autostop_mins
        self.server_port = server_port
        self.den_auth = den_auth

    def _creds_ref(self) -> Any:
        creds = self.creds
        if isinstance(creds, Secret):
            return creds.address or creds._name or creds._config_fields()
        return creds

    def _config_fields(self) -> dict[str, Any]:
        fields = {name: getattr(self, name) for name in _CLUSTER_FIELDS}
        if fields["ips"] is not None:
            fields["ips"] = list(fields["ips"])
        fields["creds"] = self._creds_ref()
        return {**self.data, **_prune(fields)}

    def _set_fields(self, config: dict[str, Any]) -> None:
        for name in _CLUSTER_FIELDS:
            setattr(self, name, config.pop(name, None))
        creds = config.pop("creds", None)
        self.creds = _from_fields(Secret, creds) if isinstance(creds, dict) else creds
        self.data = config

    def _wire_config(self, session: Session) -> Op[dict[str, Any]]:
        config = self._config_fields()
        creds = self.creds
        if isinstance(creds, Secret):
            inline = creds._name is None and creds.address is None
            if inline:
                # Inline SSH credentials become a secret beside the cluster.
                own = yield from self._resolve_own_address(session)
                creds._set_name(f"{own}-ssh-creds")
                creds.provider = creds.provider or "ssh"
            config["creds"] = yield from creds._ensure_saved(session)
            if inline and config["creds"] not in _SAID_SAVED:
                _SAID_SAVED.add(config["creds"])
                print(f"den: saved your SSH key as the secret {config['creds']}, encrypted in "
                      "den and private to you; the cluster uses it through den, and people you "
                      "share the cluster with cannot read it.", file=sys.stderr, flush=True)
        elif isinstance(creds, str):
            config["creds"] = yield from api.resolve(session, creds)
        return config

    def _action_op(self, session: Session, action: str) -> Op[dict[str, Any]]:
        if action == "up" and self._dirty():
            yield from self._save_op(session)
        address = yield from self._resolve_own_address(session)
        return (yield from api.cluster_action(address, action))

    def _status_op(self, session: Session) -> Op[dict[str, Any]]:
        address = yield from self._resolve_own_address(session)
        return (yield from api.cluster_status(address))

    def status(self) -> dict[str, Any]:
        """The cluster's runtime status from den (``status``, daemon URL, last heartbeat...)."""
        session = self._sess()
        return run(self._status_op(session), session)

    async def astatus(self) -> dict[str, Any]:
        """Async :meth:`status`."""
        session = self._sess()
        return await arun(self._status_op(session), session)

    def up(self) -> Self:
        """Ask den to bring the cluster up (saving it first if it changed); returns at once.

        Use :meth:`up_if_not` to wait until it is up.
        """
        session = self._sess()
        run(self._action_op(session, "up"), session)
        return self

    def up_if_not(self, *, timeout: float = 600.0, quiet: bool = False) -> Self:
        """Bring the cluster up unless it is up already, and wait until it is.

        Saves the cluster first if it is new or changed, asks den to bring it up
        (unless it is up or on its way), and prints its progress to stderr (unless
        ``quiet``). Raises :class:`den.NoRunningCluster` with the cluster's message
        if it fails to start or is not up after ``timeout`` seconds.
        """
        from den.client import remote

        remote.bring_up(self, timeout=timeout, quiet=quiet)
        return self

    def stop(self) -> None:
        """Ask den to stop the cluster (it can come up again)."""
        session = self._sess()
        run(self._action_op(session, "stop"), session)

    def teardown(self) -> None:
        """Ask den to tear the cluster down and release its machines."""
        session = self._sess()
        run(self._action_op(session, "teardown"), session)

    def run(self, command: str | list[str], *, node: int | str | None = None,
            timeout: float | None = None, quiet: bool = False) -> Any:
        """Run a shell command on the head (``node=1``: another host;
        ``node="all"``: every host), printing its output as it arrives; needs
        write access. Returns a ``CommandResult`` (``exit_code``, ``stdout``,
        ``stderr``), or a list of them, one per node, with ``node="all"``."""
        from den.client import remote

        results = remote.run_command(self, command, node=node, timeout=timeout, quiet=quiet)
        return results if node == "all" else results[0]

    def forget_host_key(self, host: str) -> None:
        """Stop trusting the SSH host key den recorded for ``host`` (one of
        ``ips``), after that machine was reinstalled: the next ``up`` trusts
        the key it presents then."""
        session = self._sess()
        address = run(self._resolve_own_address(session), session)
        run(api.cluster_forget_host_key(address, host), session)


class Runnable(Resource):
    """What functions and modules share: code ``pointers``, a ``signature``, the
    ``system`` (cluster) to run on and the ``env`` to run in."""

    def __init__(
        self,
        name: str | None = None,
        *,
        system: Cluster | str | None = None,
        env: Env | str | list[str] | dict[str, Any] | None = None,
        pointers: dict[str, Any] | None = None,
        signature: dict[str, Any] | None = None,
        code: str | None = None,
        data: dict[str, Any] | None = None,
        description: str | None = None,
        visibility: str | None = None,
        session: Session | None = None,
    ) -> None:
        super().__init__(
            name, data=data, description=description, visibility=visibility, session=session
        )
        self.system: Cluster | str | None = system
        self.env: Env | str | None = _as_env(env)
        self.pointers = pointers
        self.signature_data = signature
        self.code = code
        # What this process put on a cluster's daemon (see den.client.remote).
        self._deployment: remote.Deployment | None = None
        # A module instance's constructor arguments, when made in this process.
        self._init_args: tuple[tuple[Any, ...], dict[str, Any]] | None = None

    @property
    def system_address(self) -> str | None:
        """The address (or name, if not yet saved) of the cluster this runs on."""
        if isinstance(self.system, Cluster):
            return self.system.address or self.system._name
        return self.system

    def _config_fields(self) -> dict[str, Any]:
        system: Any = self.system
        if isinstance(system, Cluster):
            system = system.address or system._name or system._config_fields()
        env: Any = self.env
        if isinstance(env, Env):
            env = env.address or env._name or env._config_fields()
        fields = {
            "system": system,
            "env": env,
            "code": self.code,
            "pointers": self.pointers,
            "signature": self.signature_data,
        }
        return {**self.data, **_prune(fields)}

    def _set_fields(self, config: dict[str, Any]) -> None:
        system = config.pop("system", None)
        self.system = _from_fields(Cluster, system) if isinstance(system, dict) else system
        env = config.pop("env", None)
        self.env = _as_env(env)
        self.code = config.pop("code", None)
        self.pointers = config.pop("pointers", None)
        self.signature_data = config.pop("signature", None)
        self.data = config

    def _wire_config(self, session: Session) -> Op[dict[str, Any]]:
        config = self._config_fields()
        if isinstance(self.system, Cluster):
            if self.system.address is None and self.system._name is None:
                raise ValidationError(
                    f"The cluster of this {self.TYPE} has no name; name it "
                    "(den.cluster(name='cpu', ...)) so it can be saved and shared.",
                    field="system",
                )
            config["system"] = yield from self.system._ensure_saved(session)
        elif isinstance(self.system, str):
            config["system"] = yield from api.resolve(session, self.system)
        if isinstance(self.env, Env):
            if self.env.address is None and self.env._name is None:
                config["env"] = self.env._config_fields()  # unnamed: stored inline
            else:
                config["env"] = yield from self.env._ensure_saved(session)
        elif isinstance(self.env, str):
            config["env"] = yield from api.resolve(session, self.env)
        return config

    def _save_op(self, session: Session, name: str | None = None, force: bool = False) -> Op[Self]:
        yield from super()._save_op(session, name, force)
        if self._deployment is not None:
            from den.client import remote

            remote.redeploy_after_save(self)
        return self

    def to(
        self,
        system: Cluster | str | None,
        env: Env | str | list[str] | dict[str, Any] | None = None,
        *,
        node: int | None = None,
    ) -> Self:
        """Send this function or class to a cluster (a :class:`Cluster` or its address)
        to run there, optionally in an env (an :class:`Env`, its address, or a list of
        pip requirements). Returns ``self``, whose calls now run on the cluster.

        When den reports the cluster up, its code goes at once: the project
        directory of its module, bundled (``.gitignore`` respected) and uploaded
        once per content; a function defined in ``__main__`` or a notebook goes by
        value. Otherwise it goes at the first call. Saving records the cluster and
        env, so teammates can call it by name. ``node`` places it on another
        host of a cluster with several (``node=1``; 0, the head, by default).
        """
        self.system = system
        if env is not None:
            self.env = _as_env(env)
        if node:
            if isinstance(node, bool) or not isinstance(node, int) or node < 0:
                raise ValidationError("node must be a node's number (0 is the head).",
                                      field="node")
            self.data["node"] = node
        else:
            self.data.pop("node", None)
        self._send_to_system()
        return self

    def _send_to_system(self) -> None:
        """Send code and env to the cluster now, if it is up (see :mod:`den.client.remote`)."""
        from den.client import remote

        remote.deploy(self)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_deployment"] = None  # daemon handles belong to this process
        return state


def _from_fields(cls: type[R], fields: dict[str, Any]) -> R:
    """An unnamed resource of type ``cls`` from config fields stored inline."""
    obj = cls()
    obj._set_fields(dict(fields))
    return obj


def _as_env(env: Env | str | list[str] | dict[str, Any] | None) -> Env | str | None:
    if env is None or isinstance(env, (Env, str)):  # tuples, not unions: 3.9 on nodes
        return env
    if isinstance(env, (list, tuple)):
        return Env(reqs=[str(req) for req in env])
    if isinstance(env, dict):
        return _from_fields(Env, env)
    raise TypeError(
        f"env must be an Env, an address, a list of requirements or a dict, not {env!r}"
    )


class Function(Runnable):
    """A Python function saved by reference: where its code is (``pointers``), how it
    is called (``signature``), where it runs (``system``) and in what (``env``).

    Calling a function that wraps a local callable and has no cluster runs it
    locally; otherwise the call goes to its cluster.
    """

    TYPE = "function"

    def __init__(
        self,
        fn: Callable[..., Any] | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        if fn is not None:
            from den.client import introspect

            kwargs.setdefault("pointers", introspect.pointers_for(fn))
            kwargs.setdefault("signature", introspect.function_signature(fn))
            if name is None:
                name = getattr(fn, "__name__", None)
                if name == "<lambda>":
                    name = None
        super().__init__(name, **kwargs)
        self.fn = fn
        if self.signature_data and self.signature_data.get("doc"):
            self.__doc__ = self.signature_data["doc"]

    def _set_fields(self, config: dict[str, Any]) -> None:
        super()._set_fields(config)
        self.__doc__ = (self.signature_data or {}).get("doc") or type(self).__doc__

    @property
    def signature(self) -> inspect.Signature:
        """The function's :class:`inspect.Signature`, rebuilt from the stored one."""
        from den.client import introspect

        return introspect.signature_from_json(self.signature_data)

    @property
    def __signature__(self) -> inspect.Signature:
        return self.signature

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function: locally if it wraps a local callable and has no cluster,
        else on its cluster. Arguments are checked against the signature first."""
        if self.fn is not None and self.system is None:
            return self.fn(*args, **kwargs)
        if self.signature_data:
            self.signature.bind(*args, **kwargs)
        from den.client import remote

        return remote.call(self, None, args, kwargs)

    async def acall(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function (see :meth:`__call__`) without blocking the event loop."""
        import asyncio

        return await asyncio.to_thread(self.__call__, *args, **kwargs)


class Module(Runnable):
    """A Python class saved by reference: its ``pointers``, and in ``signature`` its
    name, doc, ``__init__`` and public method signatures. Calling the module makes
    an instance (locally without a cluster, on the cluster otherwise)."""

    TYPE = "module"

    def __init__(self, cls: type | None = None, name: str | None = None, **kwargs: Any) -> None:
        if cls is not None:
            from den.client import introspect

            kwargs.setdefault("pointers", introspect.pointers_for(cls))
            kwargs.setdefault("signature", introspect.class_signature(cls))
            if name is None:
                name = cls.__name__
        super().__init__(name, **kwargs)
        self.cls = cls

    @property
    def methods(self) -> dict[str, inspect.Signature]:
        """The public methods and their signatures."""
        from den.client import introspect

        methods = (self.signature_data or {}).get("methods") or {}
        return {name: introspect.signature_from_json(sig) for name, sig in methods.items()}

    @property
    def signature(self) -> inspect.Signature:
        """The signature of the class's constructor."""
        from den.client import introspect

        init = (self.signature_data or {}).get("init")
        if init is None and self.signature_data is not None:
            import inspect as _inspect

            return _inspect.Signature([])
        return introspect.signature_from_json(init)

    @property
    def is_instance(self) -> bool:
        """True for a remote instance (made by calling a module on a cluster)."""
        return bool(self.__dict__.get("data", {}).get("instance"))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Make an instance: locally if this wraps a local class and has no cluster,
        else on the cluster, returning a remote instance whose methods run there.

        ``name="..."`` (when the constructor takes no ``name``) names the remote
        instance and saves it, so it can be shared and loaded by name with its
        state. Calling a remote instance calls its ``__call__`` method.
        """
        from den.client import remote

        if self.is_instance:
            return remote.call(self, "__call__", args, kwargs)
        if self.cls is not None and self.system is None:
            return self.cls(*args, **kwargs)
        name: str | None = None
        if "name" in kwargs and "name" not in self._init_parameters():
            name = str(kwargs.pop("name"))
        if self.signature_data:
            self.signature.bind(*args, **kwargs)
        return remote.instantiate(self, args, kwargs, name=name)

    def _init_parameters(self) -> set[str]:
        init = (self.signature_data or {}).get("init") or {}
        return {str(param.get("name")) for param in init.get("parameters") or []}

    def method(self, name: str) -> remote.MethodHandle:
        """A handle on a method of this remote instance (for names that attributes of
        the resource itself hide, such as ``version`` or ``save``)."""
        from den.client import remote

        if not self.is_instance:
            raise WrongType(
                f"{self!r} is a class; make an instance on its cluster first "
                "(instance = module(...)) and call its methods.",
            )
        return remote.MethodHandle(self, name)

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes the object does not have: remote methods.
        if name.startswith("_") or not self.is_instance:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        methods = (self.__dict__.get("signature_data") or {}).get("methods")
        if methods and name not in methods:
            raise AttributeError(
                f"{self!r} has no method {name!r}; its methods: {', '.join(sorted(methods))}"
            )
        return self.method(name)


# -- loading -------------------------------------------------------------------------


def _load_op(session: Session, name: str, expected: type[R], bind: Session | None = None) -> Op[R]:
    address = yield from api.resolve(session, name)
    data = yield from api.resource_get(address)
    return expected.from_config(data, session=bind)


def load(name: str, *, session: Session | None = None) -> Resource:
    """Load any resource by address (``/alice/train``, ``~/train``, ``train``) or by the
    URL of its page (``https://den.example.com/alice/train``).

    Returns a :class:`Function`, :class:`Cluster`, ... according to its type.
    Raises :class:`den.NotFound` when it does not exist or you have no access.
    """
    active = session or current()
    return run(_load_op(active, name, Resource, session), active)


async def aload(name: str, *, session: Session | None = None) -> Resource:
    """Async :func:`load`."""
    active = session or current()
    return await arun(_load_op(active, name, Resource, session), active)


def _load_typed(cls: type[R], name: str, session: Session | None) -> R:
    active = session or current()
    return run(_load_op(active, name, cls, session), active)


def _list_op(session: Session, **filters: Any) -> Op[list[dict[str, Any]]]:
    owner = filters.get("owner")
    if owner in {"~", "me"}:
        filters["owner"] = yield from api.username(session)
    return (yield from api.resource_list(**filters))


def list_resources(
    *,
    type: str | None = None,
    owner: str | None = None,
    query: str | None = None,
    shared: bool = False,
    visibility: str | None = None,
    limit: int | None = None,
    session: Session | None = None,
) -> list[dict[str, Any]]:
    """Resources you can see, as dicts (``address``, ``type``, ``owner``,
    ``visibility``, ``version``, ``url``...; no ``config``).

    Filters: ``type``; ``owner`` (``"~"`` for yourself); ``query`` (search text);
    ``shared=True`` for what others shared with you; ``visibility``; ``limit``.
    """
    session = session or current()
    op = _list_op(
        session,
        type=type,
        owner=owner,
        query=query,
        shared=shared,
        visibility=_check_visibility(visibility),
        limit=limit,
    )
    return run(op, session)


async def alist_resources(
    *,
    type: str | None = None,
    owner: str | None = None,
    query: str | None = None,
    shared: bool = False,
    visibility: str | None = None,
    limit: int | None = None,
    session: Session | None = None,
) -> list[dict[str, Any]]:
    """Async :func:`list_resources`."""
    session = session or current()
    op = _list_op(
        session,
        type=type,
        owner=owner,
        query=query,
        shared=shared,
        visibility=_check_visibility(visibility),
        limit=limit,
    )
    return await arun(op, session)


# -- factories (the Runhouse-style entry points) ---------------------------------------


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
        return _load_typed(Function, name, session)
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
        return _load_typed(Module, name, session)
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
        return _load_typed(Cluster, name, session)
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
        return _load_typed(Env, name, session)
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
        return _load_typed(Secret, name, session)
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
        return _load_typed(Resource, name, session)
    return Resource(
        name, data=data, description=description, visibility=visibility, session=session
    )
