"""Refs: results kept on the cluster that made them, as small handles.

``ref = fn.remote(data)`` runs ``fn`` like ``fn(data)`` but keeps the result in
the worker on the cluster and returns a :class:`Ref` (cluster, key, type, size,
the function that made it, its owner, when it expires): a few hundred bytes
however large the result, so it fits in an Airflow XCom. Passing a ref to a
function on the same cluster (``evaluate(ref)``, anywhere in its arguments)
hands that function the kept object itself, without a trip through the caller;
``ref.get()`` fetches it; ``ref.delete()`` frees it; it also expires (a day by
default; ``fn.keep_for(seconds).remote(...)`` chooses, up to a week).

Access follows the function that made the ref: whoever may call (read) that
function may use and fetch its refs, the owner and the cluster's writers may
delete them; anyone else gets the same 404 as for a missing ref. A ref is used
on the cluster and in the env that made it; passed to a function on another
cluster it raises :class:`den.RefElsewhere` (fetch it with ``.get()`` and pass
the value instead). Refs live in the env's worker process: a restart of the
worker or the daemon loses them (:class:`den.RefGone`).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from den.client.session import Session

__all__ = ["Ref"]

_FIELDS = ("cluster", "key", "type", "size", "function", "owner", "expires_at")

#: Set while a worker decodes a call's arguments: turns a ref's key into its object.
_resolver: contextvars.ContextVar[Callable[[str], Any] | None] = contextvars.ContextVar(
    "den_ref_resolver", default=None)
#: Set while a caller pickles a call's arguments: collects the refs among them.
_collector: contextvars.ContextVar[list[Ref] | None] = contextvars.ContextVar(
    "den_ref_collector", default=None)


class Ref:
    """A result kept on a cluster: ``get()`` it, pass it to functions there, ``delete()`` it.

    Attributes: ``cluster`` (its address), ``key``, ``type`` (the kept object's
    type name), ``size`` (bytes, when known), ``function`` (the address of the
    function or module that made it), ``owner`` (who made it) and ``expires_at``
    (a Unix time).
    """

    #: Version of :meth:`serialize`'s output (Airflow's serializer records it).
    __version__: ClassVar[int] = 1

    def __init__(self, cluster: str, key: str, *, type: str | None = None,
                 size: int | None = None, function: str | None = None,
                 owner: str | None = None, expires_at: float | None = None,
                 session: Session | None = None) -> None:
        self.cluster = cluster
        self.key = key
        self.type = type
        self.size = size
        self.function = function
        self.owner = owner
        self.expires_at = expires_at
        self._session = session

    def __repr__(self) -> str:
        size = f", {self.size} bytes" if self.size is not None else ""
        return f"<den.Ref {self.type or 'object'}{size} on {self.cluster} ({self.key[:8]}...)>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ref) and (other.cluster, other.key) == (self.cluster, self.key)

    def __hash__(self) -> int:
        return hash((self.cluster, self.key))

    # -- as data ----------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The ref as a JSON-ready dict (what :meth:`from_json` takes back)."""
        return {name: getattr(self, name) for name in _FIELDS}

    @classmethod
    def from_json(cls, data: dict[str, Any], *, session: Session | None = None) -> Ref:
        """A ref from :meth:`to_json`'s output."""
        return cls(str(data["cluster"]), str(data["key"]), type=data.get("type"),
                   size=data.get("size"), function=data.get("function"),
                   owner=data.get("owner"), expires_at=data.get("expires_at"), session=session)

    def serialize(self) -> dict[str, Any]:
        """For Airflow's XCom serializer (with :meth:`deserialize`)."""
        return self.to_json()

    @staticmethod
    def deserialize(data: dict[str, Any], version: int) -> Ref:
        """For Airflow's XCom serializer."""
        return Ref.from_json(data)

    def __reduce__(self) -> tuple[Any, ...]:
        collected = _collector.get()
        if collected is not None:
            collected.append(self)
        return (_ref, (self.to_json(),))

    # -- on the cluster -----------------------------------------------------------

    def _sess(self) -> Session:
        from den.client.session import current

        return self._session or current()

    def get(self) -> Any:
        """Fetch the kept object from its cluster (needs read access to its function)."""
        from den.client import remote

        return remote.ref_get(self._sess(), self)

    def delete(self) -> None:
        """Free the kept object on its cluster (its owner, or a writer of the cluster)."""
        from den.client import remote

        remote.ref_delete(self._sess(), self)


def _ref(state: dict[str, Any]) -> Any:
    """How a pickled ref comes back: the kept object itself inside a worker that
    resolves refs (the call's arguments, on the ref's cluster), else a :class:`Ref`."""
    resolve = _resolver.get()
    if resolve is not None:
        return resolve(str(state.get("key")))
    return Ref.from_json(state)


@contextmanager
def resolving(resolve: Callable[[str], Any] | None) -> Iterator[None]:
    """Unpickle refs as the objects ``resolve(key)`` gives (the node's worker uses this)."""
    token = _resolver.set(resolve)
    try:
        yield
    finally:
        _resolver.reset(token)


@contextmanager
def collecting() -> Iterator[list[Ref]]:
    """Collect the refs pickled inside the block (the caller library declares them)."""
    found: list[Ref] = []
    token = _collector.set(found)
    try:
        yield found
    finally:
        _collector.reset(token)
