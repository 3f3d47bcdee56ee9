"""The seam between resource stubs and remote execution.

A function or module runs on its cluster's node daemon. That part of den (the
``den.node.caller`` library) is not wired in yet, so for now :func:`call` says
clearly that there is no running cluster, and :func:`deploy` only records where
the resource should run. A later change fills these two functions in; nothing
else in the client needs to change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from den.client.errors import NoRunningCluster

if TYPE_CHECKING:
    from den.client.resources import Runnable

__all__ = ["call", "deploy"]


def _describe(resource: Runnable) -> str:
    label = resource.address or resource.name or "(unnamed)"
    return f"{resource.TYPE.capitalize()} {label}"


def deploy(resource: Runnable) -> None:
    """Send ``resource``'s code and env to its cluster (called by ``.to()``).

    Today this records nothing beyond ``system``/``env`` on the resource, which
    ``.to()`` has already set; sending the code bundle comes with the node caller.
    """
    return None


def call(
    resource: Runnable, method: str | None, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Run ``resource`` (or one of its methods) remotely and return the result.

    Raises :class:`den.NoRunningCluster` until remote execution is wired in.
    """
    what = _describe(resource)
    if method:
        what = f"{what}.{method}"
    system = resource.system_address
    if system is None:
        raise NoRunningCluster(
            f"{what} has no running cluster to run on: send it to one with "
            ".to(den.cluster(...)) and save it, or call the local function instead."
        )
    raise NoRunningCluster(
        f"{what} has no running cluster: it is set to run on {system}, but this version "
        "of the den client cannot call remote clusters yet."
    )
