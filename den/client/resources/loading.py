"""Loading resources by address or URL, and listing what you can see."""

from __future__ import annotations

from typing import Any, TypeVar

from den.client import api
from den.client.resources.base import Resource, check_visibility
from den.client.session import Op, Session, arun, current, run

R = TypeVar("R", bound=Resource)


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


def load_typed(cls: type[R], name: str, session: Session | None) -> R:
    active = session or current()
    return run(_load_op(active, name, cls, session), active)


def list_op(session: Session, **filters: Any) -> Op[list[dict[str, Any]]]:
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
    op = list_op(
        session,
        type=type,
        owner=owner,
        query=query,
        shared=shared,
        visibility=check_visibility(visibility),
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
    op = list_op(
        session,
        type=type,
        owner=owner,
        query=query,
        shared=shared,
        visibility=check_visibility(visibility),
        limit=limit,
    )
    return await arun(op, session)


