"""The base resource: an address, a type, a versioned config and access rules.

Every network call has a blocking form (``save``) and an async one (``asave``);
both run the same operation (:mod:`den.client.session`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from den.client import api
from den.client.addresses import parse_address
from den.client.errors import ValidationError, WrongType
from den.client.session import Op, Session, arun, current, run

if TYPE_CHECKING:
    from typing import Self  # novm: Python 3.11; the node imports this module on 3.9 too

R = TypeVar("R", bound="Resource")

VISIBILITIES = ("private", "unlisted", "public")
ACCESS_LEVELS = ("read", "write")
#: Resource class per type name, filled by subclasses that set ``TYPE``.
RESOURCE_TYPES: dict[str, type[Resource]] = {}


def check_visibility(visibility: str | None) -> str | None:
    if visibility is not None and visibility not in VISIBILITIES:
        raise ValidationError(
            f"visibility must be one of {', '.join(VISIBILITIES)}, not {visibility!r}.",
            field="visibility",
        )
    return visibility


def _users(users: str | Iterable[str]) -> list[str]:
    return [users] if isinstance(users, str) else [str(user) for user in users]


def prune(fields: dict[str, Any]) -> dict[str, Any]:
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
        self._visibility = check_visibility(value)
        self._meta_changed.add("visibility")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "TYPE" in cls.__dict__:
            RESOURCE_TYPES[cls.TYPE] = cls

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
        target = RESOURCE_TYPES.get(type_name, Resource)
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
        teams: str | Iterable[str] | None = None,
    ) -> Op[dict[str, Any]]:
        if access_level not in ACCESS_LEVELS:
            raise ValidationError(
                f"access_level must be 'read' or 'write', not {access_level!r}.",
                field="access_level",
            )
        check_visibility(visibility)
        if self.version is None:
            yield from self._save_op(session)
        assert self.address is not None
        result: dict[str, Any] = {"granted": [], "invited": []}
        names = _users(users) if users else []
        team_names = _users(teams) if teams else []
        for team in team_names:
            if team.count("/") != 1:
                raise ValidationError(f"A team is named org/team, not {team!r}.", field="teams")
        if names or team_names:
            result = yield from api.access_grant(self.address, names, access_level, team_names)
        if visibility is not None:
            data = yield from api.resource_patch(self.address, visibility=visibility)
            self._apply({key: value for key, value in data.items() if key != "config"})
        return result

    def share(
        self,
        users: str | Iterable[str] | None = None,
        access_level: str = "read",
        visibility: str | None = None,
        *,
        teams: str | Iterable[str] | None = None,
    ) -> dict[str, Any]:
        """Give users (usernames or emails) and teams (``teams=["acme/ml"]``)
        ``read`` or ``write`` access; optionally set ``visibility``
        (``private``, ``unlisted``, ``public``).

        Saves the resource first if it was never saved. Returns the server's
        ``{"granted": [...], "invited": [...]}`` (and ``"teams"``): emails
        without an account get an invitation.
        """
        session = self._sess()
        return run(self._share_op(session, users, access_level, visibility, teams), session)

    async def ashare(
        self,
        users: str | Iterable[str] | None = None,
        access_level: str = "read",
        visibility: str | None = None,
        *,
        teams: str | Iterable[str] | None = None,
    ) -> dict[str, Any]:
        """Async :meth:`share`."""
        session = self._sess()
        return await arun(self._share_op(session, users, access_level, visibility, teams),
                          session)

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


def from_fields(cls: type[R], fields: dict[str, Any]) -> R:
    """An unnamed resource of type ``cls`` from config fields stored inline."""
    obj = cls()
    obj._set_fields(dict(fields))
    return obj

