"""Secrets: metadata in the config, values encrypted by den behind their own endpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from den.client import api
from den.client.resources.base import Resource, prune
from den.client.session import Op, Session, arun, run

if TYPE_CHECKING:
    from typing import Self  # novm: Python 3.11; the node imports this module on 3.9 too


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
        return {**self.data, **prune({"provider": self.provider})}

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


