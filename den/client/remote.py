"""Remote execution: send functions and classes to a cluster's node daemon and call them.

The resource stubs (:class:`~den.client.resources.Function`,
:class:`~den.client.resources.Module`) call into this module with a
:class:`Target`: a plain description of what to run and where (addresses, the
env, the local object if any, what was put on a daemon before). This module
never touches a resource object; it records what it sent (:attr:`Target.deployment`,
:attr:`Target.code`) on the target, and the resource takes that back. It talks to
den for a cluster's status (its daemon URL) and to the daemon through
:mod:`den.node.caller`, imported on first use so that ``import den`` stays light.

Errors
    The daemon's errors are den's own classes (:mod:`den.client.errors`): nothing is
    translated here; a den error only gets the name of the function or module it is
    about put before its message (:meth:`den.DenError.with_context`).

Names on the daemon
    An object's name on the daemon is derived from the resource's address
    (:func:`object_name`), so an owner's ``.to()`` and a teammate's
    ``den.function(name="/alice/train")`` reach the same object. An object is put
    with its den address once the resource is saved; the daemon then checks each
    caller's token for ``read`` on that address (a teammate needs access to the
    function, not to the cluster). Before it is saved, the daemon checks access to
    the cluster instead.

Code
    A function or class defined in an importable module is sent by reference: its
    project directory (the folder its module is imported from, or the enclosing
    project) is bundled (``.gitignore`` respected), uploaded once per content hash,
    and imported on the node. One defined in ``__main__`` or a notebook is sent by
    value (cloudpickle).

Restarts
    Whenever a saved resource is put on a daemon, den keeps a copy (its code
    bundle by hash, and the put body: pointers or by-value pickle, a module's
    constructor arguments, the env). Calls name the saved resource they are for
    (``X-Den-Address``), so a daemon that restarted since (a stop and up, a
    crash, autostop) puts it back from den's copy and runs the call, for the
    owner and for every teammate allowed to call, with nothing sent again. A
    module instance comes back from its constructor arguments (its output says
    that later state was lost).

Dead daemons
    A call that cannot connect tells den (``POST .../-/cluster/probe``), which
    checks the daemon at once and marks the cluster ``unreachable`` if it is
    gone; the call raises :class:`den.NoRunningCluster`, and ``up_if_not()``
    (which also checks an ``up`` cluster's daemon itself) starts it again.

Every request to a daemon carries the caller's own den token.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from den.client import api
from den.client.errors import (
    DaemonUnreachable,
    DenError,
    NoRunningCluster,
    NotFound,
    ObjectNotFound,
    RefElsewhere,
    ValidationError,
)
from den.client.refs import Ref
from den.client.session import Session, run

if TYPE_CHECKING:
    from den.node.caller import NodeClient

__all__ = [
    "ClusterRef",
    "Deployment",
    "Target",
    "bring_up",
    "call",
    "deploy",
    "env_name",
    "object_name",
    "probe",
    "put",
    "redeploy_after_save",
    "running_daemon",
]

#: Cluster statuses on the way up, and statuses from which ``up`` must wait.
_COMING_UP = frozenset({"provisioning", "starting"})
_GOING_DOWN = frozenset({"stopping", "terminating"})

_lock = threading.Lock()
#: One pooled daemon client per (daemon URL, token, output callback).
_nodes: dict[tuple[str, str | None, Any], NodeClient] = {}
#: Daemon URL per (den URL, cluster address), refreshed when it stops answering.
_urls: dict[tuple[str | None, str, int], str] = {}
#: What to pin for an HTTPS daemon, per URL: (certificate PEM, fingerprint), as
#: den gave them in the cluster's status (a new start makes a new certificate).
_tls: dict[str, tuple[str, str]] = {}


def _remember_tls(status: dict[str, Any]) -> None:
    """Keep the certificate den gives for each of a cluster's HTTPS nodes; a
    daemon client made with an older certificate is dropped."""
    for node in status.get("nodes") or ():
        if not isinstance(node, dict) or not node.get("tls_cert"):
            continue
        url = str(node.get("url") or "")
        pin = (str(node["tls_cert"]), str(node.get("tls_fingerprint") or ""))
        if url and _tls.get(url) != pin:
            _tls[url] = pin
            _forget_node(url)


def node_url(status: dict[str, Any], node: int | None) -> str | None:
    """The URL of node ``node`` of a cluster (0 or None: the head)."""
    if not node:
        return str(status["daemon_url"]) if status.get("daemon_url") else None
    nodes = status.get("nodes") or []
    if not isinstance(node, int) or not 0 <= node < len(nodes):
        raise ValidationError(f"node={node!r}: the cluster has {len(nodes)} node(s), numbered "
                              f"from 0 (the head) to {max(len(nodes) - 1, 0)}.", field="node")
    return str(nodes[node]["url"])


def _after_fork_in_child() -> None:
    # The cached daemon clients hold the parent's connections (den.node.caller drops
    # them too); a lock another thread held at the fork would never be released.
    global _lock
    _lock = threading.Lock()
    _nodes.clear()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)


@dataclass
class Deployment:
    """What this process put on a daemon for one resource, to put it again when needed."""

    daemon_url: str
    name: str
    spec: dict[str, Any]
    root: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def address(self) -> str | None:
        value = self.spec.get("address")
        return str(value) if value else None


@dataclass
class ClusterRef:
    """The cluster a function or module runs on, as its resource knows it."""

    #: Its address or name (None: a cluster object with no name).
    name: str | None
    #: False for a cluster object that was never saved (so it cannot be up).
    saved: bool = True
    #: True when given as a cluster object (``.to()`` then sends at once), not an address.
    is_object: bool = False


@dataclass
class Target:
    """What a function or module gives remote execution: a plain value, no resource.

    :class:`~den.client.resources.Runnable` makes one per operation; the functions of
    this module read it and record on it what they sent (``deployment``, ``code``),
    which the resource then takes back.
    """

    #: ``function`` or ``module``.
    kind: str
    #: What it is, for messages: ``Function /alice/train``.
    label: str
    session: Session
    #: Its full address, when known (saved, or named with an owner).
    address: str | None = None
    #: The name it was given, resolved when ``address`` is not known.
    name: str | None = None
    #: Whether den has it (a version): the daemon then checks callers' access to it.
    saved: bool = False
    cluster: ClusterRef | None = None
    #: The env's address or name (None with ``env_config``: an unnamed env).
    env_name: str | None = None
    #: An env object's fields (None with ``env_name``: the saved env's config is fetched).
    env_config: dict[str, Any] | None = None
    #: The local function or class, when this process holds it.
    obj: Any = None
    pointers: dict[str, Any] = field(default_factory=dict)
    #: Content hash of the code bundle (set here when code is sent).
    code: str | None = None
    #: Types callers with read access may send beyond plain data (the config's).
    pickle_allow: Any = None
    #: A module instance (made on a cluster), not a class.
    instance: bool = False
    #: A module instance's constructor arguments, when made in this process.
    init_args: tuple[tuple[Any, ...], dict[str, Any]] | None = None
    #: What this process put on a daemon for it (set here when it puts it).
    deployment: Deployment | None = None
    #: The node of a cluster with several it runs on (``.to(cluster, node=1)``;
    #: None: the head), kept in its config as ``node``.
    node: int | None = None

    @property
    def is_class(self) -> bool:
        return self.kind == "module" and not self.instance


# -- names -----------------------------------------------------------------------


def _slug(text: str, allowed: str) -> str:
    return re.sub(f"[^{allowed}]", "_", text)[:120]


def object_name(address: str) -> str:
    """The daemon object name of the resource at ``address`` (``/alice/train`` ->
    ``alice.train-<hash>``): readable, valid on the daemon, and unique per address."""
    digest = hashlib.sha256(address.encode()).hexdigest()[:10]
    return f"{_slug(address.strip('/').replace('/', '.'), 'A-Za-z0-9._-')}-{digest}"


def env_name(label: str) -> str:
    """The daemon env name for an env address or description (letters, digits, ``-``, ``_``)."""
    digest = hashlib.sha256(label.encode()).hexdigest()[:10]
    return f"{_slug(label.strip('/').replace('/', '_'), 'A-Za-z0-9_-')}-{digest}"


def _describe(target: Target, method: str | None = None) -> str:
    what = target.label
    return f"{what}.{method}" if method and method != "__init__" else what


@contextlib.contextmanager
def _about(what: str) -> Iterator[None]:
    """Name what a den error raised inside is about (the one hierarchy: no translation)."""
    try:
        yield
    except DenError as exc:
        exc.with_context(what)
        raise


# -- clusters --------------------------------------------------------------------


def _cluster_address(target: Target, what: str) -> str:
    """The full address of the cluster ``target`` runs on, without asking den
    when the cluster is a local object that was never saved (so it cannot be up)."""
    cluster = target.cluster
    if cluster is None:
        raise NoRunningCluster(
            f"{what} has no running cluster to run on: send it to one with "
            ".to(den.cluster(...)) and save it, or call the local function instead."
        )
    if not cluster.saved or not cluster.name:
        label = cluster.name or "(unnamed)"
        raise NoRunningCluster(
            f"{what} is set to run on cluster {label}, which is not up: bring it up "
            f"with den.cluster(name={label!r}, ...).up_if_not() first."
        )
    return run(api.resolve(target.session, cluster.name), target.session)


def cluster_status(session: Session, address: str, what: str,
                   via: str | None = None) -> dict[str, Any]:
    """den's runtime status of a cluster, with a clear error if the caller cannot see it.

    ``via`` is the saved function or module that runs there: den answers for
    its cluster to anyone who may call it, when the cluster is its owner's.
    """
    try:
        status = run(api.cluster_status(address), session)
        _remember_tls(status)
        return status
    except NotFound:
        if via:
            try:
                status = run(api.cluster_status(via), session)
                _remember_tls(status)
                return status
            except NotFound:
                pass
        raise NotFound(
            f"{what} runs on cluster {address}, which does not exist or you cannot see: "
            "ask its owner to share the cluster with you (read access is enough to call).",
            code="cluster_not_found",
            status=404,
        ) from None


def _may_bring_up(session: Session, address: str) -> bool:
    """Whether the caller may bring the cluster up (write access to it); asked
    only when a call found it down, so the advice fits who is calling."""
    try:
        level = run(api.resource_get(address), session).get("access_level")
    except DenError:
        return False  # e.g. a function shared without its cluster: not theirs to start
    return level in ("write", "owner")


def _not_up(session: Session, address: str, status: dict[str, Any],
            what: str) -> NoRunningCluster:
    state = status.get("status") or "down"
    detail = f" ({status['message']})" if status.get("message") else ""
    if _may_bring_up(session, address):
        advice = f"Bring it up with den.cluster(name={address!r}).up_if_not()."
    else:
        owner = address.strip("/").split("/")[0]
        advice = (f"You may not start it yourself: ask its owner ({owner}) to bring it up, "
                  "then call again.")
    return NoRunningCluster(f"{what} cannot run: cluster {address} is {state}{detail}. {advice}",
                            code="cluster_not_up")


def daemon_url(session: Session, address: str, what: str, *, refresh: bool = False,
               via: str | None = None, node: int | None = None) -> str:
    """The URL of the cluster's node daemon (the head's, or node ``node``'s),
    from den (cached until it stops answering)."""
    key = (session.url, address, node or 0)
    if not refresh:
        cached = _urls.get(key)
        if cached:
            return cached
    status = cluster_status(session, address, what, via)
    if status.get("status") != "up" or not status.get("daemon_url"):
        _urls.pop(key, None)
        raise _not_up(session, address, status, what)
    url = node_url(status, node)
    assert url is not None
    _urls[key] = url
    return url


def probe(session: Session, address: str, what: str, via: str | None = None
          ) -> dict[str, Any]:
    """Tell den that the daemon of cluster ``address`` did not answer; den checks
    it at once and answers the cluster's status (``unreachable`` if it is gone).
    ``via``: the saved function or module being called, for a caller who may
    call it but not see its cluster."""
    try:
        status = run(api.cluster_probe(address), session)
    except NotFound:
        if not via:
            raise
        status = run(api.cluster_probe(via), session)
    _remember_tls(status)
    return status


def _after_unreachable(session: Session, address: str, what: str, via: str | None,
                       node: int | None = None) -> str:
    """A call could not reach the daemon: have den check it, and return the URL
    den now gives (the same one if den still reaches the daemon). Raises
    NoRunningCluster when den finds the daemon gone."""
    for key in [k for k in _urls if k[:2] == (session.url, address)]:
        _urls.pop(key, None)
    try:
        status = probe(session, address, what, via)
    except DenError:
        status = cluster_status(session, address, what, via)
    if status.get("status") != "up" or not status.get("daemon_url"):
        raise _not_up(session, address, status, what)
    url = node_url(status, node)
    assert url is not None
    _urls[(session.url, address, node or 0)] = url
    return url


def _node(session: Session, url: str) -> NodeClient:
    from den.node.caller import NodeClient, print_output

    key = (url, session.token, session.output)
    with _lock:
        node = _nodes.get(key)
        if node is None:
            # An HTTPS daemon's certificate is pinned: the one den gave for it.
            node = _nodes[key] = NodeClient(url, token=session.token, tls=_tls.get(url),
                                            stream=session.output or print_output)
        return node


def _forget_node(url: str) -> None:
    with _lock:
        for key in [key for key in _nodes if key[0] == url]:
            _nodes.pop(key).close()


# -- code and specs ---------------------------------------------------------------


def _is_installed(path: Path) -> bool:
    return any(part in {"site-packages", "dist-packages"} for part in path.parts)


def code_root(obj: Any) -> Path | None:
    """The directory to bundle for ``obj``'s module: its project root when the module
    is importable from there, else the folder it is imported from. None for code
    that is installed (site-packages) or has no file."""
    import inspect

    from den.client.introspect import find_project_root

    module = getattr(obj, "__module__", None) or ""
    try:
        source = inspect.getsourcefile(obj)
    except TypeError:
        return None
    if not source or not Path(source).exists():
        return None
    file = Path(source).resolve()
    if _is_installed(file):
        return None
    depth = module.count(".") + (1 if file.name == "__init__.py" else 0)
    if depth >= len(file.parents):
        return None
    import_root = file.parents[depth]
    project = find_project_root(file.parent)
    try:
        project.relative_to(import_root)
    except ValueError:
        # The project root is at or above the import root: bundle the project when
        # the module imports from there, which keeps data files beside the code.
        relative = file.relative_to(project).with_suffix("")
        parts = list(relative.parts)
        if parts and parts[-1] == "__init__":
            parts.pop()
        if ".".join(parts) == module:
            return project
    return import_root


def _by_value(obj: Any) -> bool:
    from den.node.caller import pointers_for

    return pointers_for(obj) is None


def _env_spec(target: Target) -> Any:
    """The daemon's env description for the target's env (None: the base env)."""
    session = target.session
    if target.env_config is None and target.env_name is None:
        return None
    if target.env_config is None:
        assert target.env_name is not None
        address = run(api.resolve(session, target.env_name), session)
        data = run(api.resource_get(address), session)
        config = dict(data.get("config") or {})
        label = address
    else:
        config = dict(target.env_config)
        if target.env_name:
            label = run(api.resolve(session, target.env_name), session)
        else:
            label = "env:" + json.dumps(config, sort_keys=True)
    spec = {key: config[key] for key in ("reqs", "env_vars", "setup_cmds", "python")
            if config.get(key)}
    if label.startswith("/"):
        spec["name"] = env_name(label)
    else:  # an unnamed env: named after its description, so equal ones share a worker
        spec["name"] = "inline-" + hashlib.sha256(label.encode()).hexdigest()[:12]
    return spec


#: The last few bundles this process made, by hash: den keeps a copy of the
#: bundle of whatever is saved (see _keep_in_den), without bundling twice.
_bundles: dict[str, bytes] = {}
_MAX_KEPT_BUNDLES = 4


def _sync_code(node: NodeClient, root: Path) -> str:
    sha, data = _bundle(root)
    with _lock:
        _bundles.pop(sha, None)
        _bundles[sha] = data
        while len(_bundles) > _MAX_KEPT_BUNDLES:
            _bundles.pop(next(iter(_bundles)))
    if not node.has_code(sha):
        node.put_code(sha, data)
    return sha


def _bundle(root: Path) -> tuple[str, bytes]:
    from den.node.caller import bundle_project

    return bundle_project(root)


def _full_address(target: Target) -> str | None:
    if target.address is None and target.name:
        return run(api.resolve(target.session, target.name), target.session)
    return target.address


def _target_name(target: Target) -> tuple[str, str | None]:
    """The daemon object name for ``target`` and the address to put it with
    (set only once the resource is saved, so den knows it)."""
    address = _full_address(target)
    if address is None:
        return f"{target.kind}-{uuid.uuid4().hex[:12]}", None
    return object_name(address), address if target.saved else None


def _build_spec(node: NodeClient, target: Target,
                address: str | None) -> tuple[dict[str, Any], str | None]:
    """The put body for ``target`` and the bundled code root (None: by value/installed)."""
    from den.node.caller import function_spec, module_spec

    obj = target.obj
    env = _env_spec(target)
    pointers = target.pointers or {}
    code: str | None = None
    root: Path | None = None
    node_pointers: dict[str, str] | None = None
    if obj is not None and _by_value(obj):
        node_pointers = None
    else:
        node_pointers = {"module": str(pointers.get("module") or getattr(obj, "__module__", "")),
                         "qualname": str(pointers.get("qualname")
                                         or getattr(obj, "__qualname__", ""))}
        if obj is not None:
            root = code_root(obj)
            if root is not None:
                code = _sync_code(node, root)
        elif target.code:
            code = target.code
            if not node.has_code(code):
                raise NotFound(
                    f"The code of {target.label} is not on its cluster any more (was the "
                    "cluster restarted?): its owner must send it again with .to(cluster).",
                    code="code_not_found",
                )
    # What callers with read access may send beyond plain data (the config's
    # pickle_allow); den validated it when it was saved, the daemon checks it again.
    allow = target.pickle_allow or None
    if target.kind == "function":
        spec = function_spec(obj if node_pointers is None else None, env=env, code=code,
                             pointers=node_pointers, address=address, pickle_allow=allow)
    else:
        init: tuple[tuple[Any, ...], dict[str, Any]] = target.init_args or ((), {})
        spec = module_spec(obj if node_pointers is None else None, init_args=init[0],
                           init_kwargs=init[1], env=env, code=code, pointers=node_pointers,
                           address=address, pickle_allow=allow)
    if code is not None:
        target.code = code
    return spec, str(root) if root is not None else None


def _put(target: Target, url: str, name: str, spec: dict[str, Any],
         root: str | None) -> Deployment:
    session = target.session
    node = _node(session, url)
    with _about(target.label):
        node.put_object(name, spec)
    deployment = Deployment(daemon_url=url, name=name, spec=spec, root=root)
    target.deployment = deployment
    if spec.get("address"):
        _keep_in_den(session, name, spec)
    return deployment


def _keep_in_den(session: Session, name: str, spec: dict[str, Any]) -> None:
    """Let den keep what was just put for a saved resource (its code bundle and
    the put body), so that after the cluster restarts its daemon puts it back
    for whoever calls next, with nothing sent again from here.

    A den that cannot keep it (too large, an older server) is said once, as a
    warning: calls work until the cluster restarts.
    """
    code = spec.get("code")
    address = str(spec["address"])
    try:
        if code and not run(api.code_exists(code), session):
            data = _bundles.get(code)
            if data is None:
                raise ValidationError(f"this process no longer holds the code bundle {code}")
            run(api.code_put(code, data), session)
        run(api.deployment_put(address, name, spec), session)
    except DenError as exc:
        import warnings

        warnings.warn(
            f"den could not keep a copy of what runs for {address} ({exc}); it works until "
            "its cluster restarts, after which its owner must send it again with "
            ".to(cluster).", stacklevel=4)


def put(target: Target, url: str) -> Deployment:
    """Upload the target's code (once per hash) and put it on the daemon at ``url``."""
    node = _node(target.session, url)
    name, address = _target_name(target)
    with _about(target.label):
        spec, root = _build_spec(node, target, address)
    return _put(target, url, name, spec, root)


def _redeploy(target: Target, old: Deployment, url: str) -> Deployment:
    """Put what was put before on another daemon (the cluster was restarted)."""
    node = _node(target.session, url)
    if old.root is not None:
        with _about(target.label):
            code = _sync_code(node, Path(old.root))
        old.spec["code"] = code
        target.code = code
    return _put(target, url, old.name, dict(old.spec), old.root)


def running_daemon(target: Target) -> str:
    """The URL of the daemon of the target's cluster; raises :class:`den.NoRunningCluster`
    (saying who may bring it up) when den does not report it up."""
    what = _describe(target)
    address = _cluster_address(target, what)
    return daemon_url(target.session, address, what)


def deploy(target: Target) -> None:
    """Send the target to its cluster now (called by ``.to()``); raises
    :class:`den.NoRunningCluster` when den reports that cluster not up, rather
    than sending nothing.

    A cluster given as an address, or a local cluster object that was never saved,
    is not asked about here: ``.to()`` only records it (so it works offline, and
    a function can be saved for a cluster that is not up yet), and the first call
    sends it.
    """
    target.deployment = None
    cluster = target.cluster
    if cluster is None or not cluster.is_object or not cluster.saved:
        return
    if target.obj is None:
        return
    session = target.session
    what = _describe(target)
    address = _cluster_address(target, what)
    status = cluster_status(session, address, what)
    if status.get("status") != "up" or not status.get("daemon_url"):
        raise _not_up(session, address, status, what)
    url = node_url(status, target.node)
    _urls[(session.url, address, target.node or 0)] = str(url)
    if target.is_class:
        # A class is instantiated on the node by its calls; send its code now.
        node = _node(session, str(url))
        if not _by_value(target.obj):
            root = code_root(target.obj)
            if root is not None:
                with _about(what):
                    target.code = _sync_code(node, root)
        return
    put(target, str(url))


def redeploy_after_save(target: Target) -> None:
    """After a save, put the object again under its saved address, so the daemon
    checks callers' access to the resource itself (teammates it is shared with).

    A module instance is re-created from its init arguments by this: name it when
    you make it (``Model(3, name="model")``) to share it without that.
    """
    old = target.deployment
    if old is None or target.address is None or old.address == target.address:
        return
    session = target.session
    name = object_name(target.address)
    spec = {**old.spec, "address": target.address}
    _put(target, old.daemon_url, name, spec, old.root)
    if name != old.name:
        # Best effort: an object left under the old name only wastes memory.
        with contextlib.suppress(Exception):
            _node(session, old.daemon_url).delete_object(old.name)


# -- calls -----------------------------------------------------------------------


def _ensure_deployed(target: Target, url: str, what: str) -> str:
    """The daemon object name to call, putting the object first when this process
    holds its code and it is not on that daemon yet."""
    deployment = target.deployment
    if deployment is not None:
        if deployment.daemon_url == url:
            return deployment.name
        return _redeploy(target, deployment, url).name
    if target.obj is not None and not target.is_class:
        return put(target, url).name
    address = _full_address(target)
    if address is None:
        raise NoRunningCluster(f"{what} was never sent to its cluster: call .to(cluster) first.")
    return object_name(address)


def _refs_on(cluster: str, what: str) -> Callable[[list[Ref]], None]:
    def check(refs: list[Ref]) -> None:
        for ref in refs:
            if ref.cluster != cluster:
                raise RefElsewhere(
                    f"{what} runs on cluster {cluster}, and one of its arguments is a ref kept "
                    f"on {ref.cluster}: refs are not moved between clusters; fetch it with "
                    "ref.get() and pass the value, or run the function on the ref's cluster.")
    return check


def call(target: Target, method: str | None, args: tuple[Any, ...],
         kwargs: dict[str, Any], *, keep: float | None = None) -> Any:
    """Run the target (or one of its methods) on its cluster and return the result.

    Remote output is printed as it arrives; a remote exception is re-raised with its
    own type and the remote traceback as a note; a remote generator comes back as
    an iterator. What was put on a daemon on the way is recorded on ``target``.
    ``keep``: keep the result on the cluster that many seconds and return a
    :class:`den.Ref` to it. Refs among the arguments must be of the same cluster.
    """
    what = _describe(target, method)
    session = target.session
    cluster = _cluster_address(target, what)
    via = target.address
    url = daemon_url(session, cluster, what, via=via, node=target.node)
    address = target.address if target.saved else None
    check = _refs_on(cluster, what)
    for attempt in (0, 1):
        name = _ensure_deployed(target, url, what)
        pin = _tls.get(url)
        try:
            result = _node(session, url).call(name, method, args, kwargs, address=address,
                                              keep=keep, refs_check=check)
            if keep is None:
                return result
            return Ref(cluster, str(result["key"]), type=result.get("type"),
                       size=result.get("size"), function=target.address,
                       owner=result.get("owner"), expires_at=result.get("expires_at"),
                       session=session)
        except DaemonUnreachable as exc:
            # Tell den at once, which checks the daemon now (and marks the cluster
            # unreachable if it is gone) rather than after its heartbeat timeout;
            # maybe it came up again elsewhere. The call is retried only on
            # another daemon (or the same URL with a new certificate: a new
            # daemon, which refused nothing but the handshake), where it cannot
            # have run.
            fresh = _after_unreachable(session, cluster, what, via=via, node=target.node)
            if attempt or (fresh == url and _tls.get(fresh) == pin):
                raise exc.with_context(what) from None
            _forget_node(url)
            url = fresh
        except ObjectNotFound as exc:
            deployment = target.deployment
            if attempt or deployment is None or "no object named" not in exc.message:
                raise exc.with_context(what) from None
            # The daemon restarted on the same URL and lost what this process put.
            target.deployment = None
            _redeploy(target, deployment, url)
        except DenError as exc:
            raise exc.with_context(what) from None
    raise AssertionError("unreachable")  # pragma: no cover


def _ref_node(session: Session, ref: Ref) -> tuple[str, NodeClient]:
    what = f"Ref {ref.key[:8]}... on {ref.cluster}"
    url = daemon_url(session, ref.cluster, what, via=ref.function)
    return what, _node(session, url)


def ref_get(session: Session, ref: Ref) -> Any:
    """The object a ref keeps, fetched from its cluster's daemon."""
    what, node = _ref_node(session, ref)
    with _about(what):
        return node.ref_get(ref.key)


def ref_delete(session: Session, ref: Ref) -> None:
    """Free the object a ref keeps on its cluster."""
    what, node = _ref_node(session, ref)
    with _about(what):
        node.ref_delete(ref.key)


# -- bringing clusters up -------------------------------------------------------------


def _say(quiet: bool, address: str, text: str) -> None:
    if not quiet:
        print(f"den: {address}: {text}", file=sys.stderr, flush=True)


def _new_events(session: Session, address: str, after: int) -> list[dict[str, Any]]:
    events = run(api.cluster_events(address, limit=50), session)
    return sorted((e for e in events if int(e.get("id", 0)) > after), key=lambda e: e["id"])


def _answers(session: Session, status: dict[str, Any]) -> bool:
    """Whether the daemon at the status's URL answers its health check."""
    url = status.get("daemon_url")
    if not url:
        return False
    try:
        _node(session, str(url)).health()
    except DenError:
        return False
    return True


def bring_up(session: Session, address: str, *, timeout: float = 600.0,
             quiet: bool = False) -> dict[str, Any]:
    """Ask den to bring the (saved) cluster at ``address`` up unless it is up or on
    its way, and wait until it is up, printing its status changes and events to
    stderr. Returns its status.

    Raises :class:`den.NoRunningCluster` with the cluster's message if it fails to
    start, or when it is not up after ``timeout`` seconds.
    """
    from den.client.errors import Conflict

    status = run(api.cluster_status(address), session)
    _remember_tls(status)
    if status.get("status") == "up":
        if _answers(session, status):
            return status
        # den still says up, but its daemon is gone (killed, crashed): have den
        # check it now, which marks it unreachable, and bring it up again.
        status = probe(session, address, f"Cluster {address}")
        if status.get("status") == "up":
            return status
    latest = run(api.cluster_events(address, limit=1), session)
    seen = max((int(event["id"]) for event in latest), default=0)
    deadline = time.monotonic() + timeout
    printed: str | None = None
    asked = False
    delay = 0.05
    while True:
        state = str(status.get("status") or "down")
        for event in _new_events(session, address, seen):
            seen = max(seen, int(event["id"]))
            _say(quiet, address, str(event.get("message") or event.get("kind")))
        if state != printed and (asked or state != "down"):
            _say(quiet, address, f"status: {state}")
            printed = state
        if state == "up":
            return status
        if state not in _COMING_UP and state not in _GOING_DOWN:
            if asked:
                reason = status.get("message") or "no reason given"
                raise NoRunningCluster(
                    f"Cluster {address} did not come up: it is {state} ({reason}).",
                    code="cluster_failed",
                )
            try:
                status = run(api.cluster_action(address, "up"), session)
                _remember_tls(status)
                asked = True
                continue
            except Conflict:
                pass  # it started stopping meanwhile: wait, then ask
        if time.monotonic() > deadline:
            raise NoRunningCluster(
                f"Cluster {address} is still {state} after {timeout:.0f} s; see its events "
                "on its page and try again.",
                code="timeout",
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
        status = run(api.cluster_status(address), session)
        _remember_tls(status)


# -- shell commands ----------------------------------------------------------------


@dataclass
class CommandResult:
    """What a command run on one node printed, and how it ended."""

    node: int
    url: str
    exit_code: int
    stdout: str
    stderr: str


def run_command(session: Session, address: str, command: str | list[str], *,
                node: int | str | None = None, timeout: float | None = None,
                quiet: bool = False) -> list[CommandResult]:
    """Run ``command`` on the head of the (saved) cluster at ``address``, node
    ``node``, or every node (``node="all"``, one after the other), printing
    output as it arrives (prefixed with the node's number when there are
    several). Needs write access to the cluster (the daemon checks)."""
    what = f"Cluster {address}"
    status = cluster_status(session, address, what)
    if status.get("status") != "up" or not status.get("daemon_url"):
        raise _not_up(session, address, status, what)
    count = max(len(status.get("nodes") or []), 1)
    if node == "all":
        chosen = list(range(count))
    elif node is None or (isinstance(node, int) and not isinstance(node, bool)):
        chosen = [node or 0]
    else:
        raise ValidationError(f"node={node!r}: give a node's number (0 is the head) or 'all'.",
                              field="node")
    results = []
    for index in chosen:
        url = node_url(status, index)
        assert url is not None
        prefix = f"[{index}] " if len(chosen) > 1 else ""

        def show(stream: str, text: str, prefix: str = prefix) -> None:
            if not quiet:
                print(prefix + text, end="", file=sys.stderr if stream == "stderr" else sys.stdout,
                      flush=True)

        try:
            code, out, err = _node(session, url).run_command(command, timeout, show)
        except DenError as exc:
            raise exc.with_context(what) from None
        results.append(CommandResult(node=index, url=url, exit_code=code, stdout=out,
                                     stderr=err))
    return results
