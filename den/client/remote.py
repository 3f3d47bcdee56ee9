"""Remote execution: send functions and classes to a cluster's node daemon and call them.

The resource stubs (:class:`~den.client.resources.Function`,
:class:`~den.client.resources.Module`) call into this module; it talks to den for a
cluster's status (its daemon URL) and to the daemon through
:mod:`den.node.caller`, imported on first use so that ``import den`` stays light.

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
import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from den.client import api
from den.client.errors import (
    AuthenticationError,
    BadRequest,
    CallTimeout,
    DenError,
    NetworkError,
    NoRunningCluster,
    NotFound,
    PermissionDenied,
    ValidationError,
    WorkerCrashed,
)
from den.client.session import Session, run

if TYPE_CHECKING:
    from den.client.resources import Cluster, Module, Runnable
    from den.node.caller import NodeClient

__all__ = [
    "Deployment",
    "MethodHandle",
    "bring_up",
    "call",
    "deploy",
    "env_name",
    "instantiate",
    "object_name",
    "probe",
    "redeploy_after_save",
]

#: Cluster statuses on the way up, and statuses from which ``up`` must wait.
_COMING_UP = frozenset({"provisioning", "starting"})
_GOING_DOWN = frozenset({"stopping", "terminating"})

_lock = threading.Lock()
#: One pooled daemon client per (daemon URL, token).
_nodes: dict[tuple[str, str | None], NodeClient] = {}
#: Daemon URL per (den URL, cluster address, node), refreshed when it stops answering.
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
        url, pin = str(node.get("url") or ""), (str(node["tls_cert"]),
                                                 str(node.get("tls_fingerprint") or ""))
        if url and _tls.get(url) != pin:
            _tls[url] = pin
            _forget_node(url)


def placed_on(resource: Any) -> int | None:
    """The node a function or module was sent to (``.to(cluster, node=1)``;
    None: the head), kept in its config so callers by name use it too."""
    node = (getattr(resource, "data", None) or {}).get("node")
    return node if isinstance(node, int) and not isinstance(node, bool) else None


def node_url(status: dict[str, Any], node: int | None) -> str | None:
    """The URL of node ``node`` of a cluster (0 or None: the head)."""
    if not node:
        return str(status["daemon_url"]) if status.get("daemon_url") else None
    nodes = status.get("nodes") or []
    if not isinstance(node, int) or not 0 <= node < len(nodes):
        raise ValidationError(f"node={node!r}: the cluster has {len(nodes)} node(s), numbered "
                           f"from 0 (the head) to {max(len(nodes) - 1, 0)}.", field="node")
    return str(nodes[node]["url"])


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


def _describe(resource: Runnable, method: str | None = None) -> str:
    label = resource.address or resource.name or "(unnamed)"
    what = f"{resource.TYPE.capitalize()} {label}"
    return f"{what}.{method}" if method and method != "__init__" else what


def _session(resource: Runnable) -> Session:
    return resource._sess()


# -- clusters --------------------------------------------------------------------


def _cluster_address(session: Session, resource: Runnable, what: str) -> str:
    """The full address of the cluster ``resource`` runs on, without asking den
    when the cluster is a local object that was never saved (so it cannot be up)."""
    from den.client.resources import Cluster

    system = resource.system
    if system is None:
        raise NoRunningCluster(
            f"{what} has no running cluster to run on: send it to one with "
            ".to(den.cluster(...)) and save it, or call the local function instead."
        )
    if isinstance(system, Cluster):
        if system.version is None:
            label = system.address or system._name or "(unnamed)"
            raise NoRunningCluster(
                f"{what} is set to run on cluster {label}, which is not up: bring it up "
                f"with den.cluster(name={label!r}, ...).up_if_not() first."
            )
        if system.address is None:
            system.address = run(api.resolve(session, system._name or ""), session)
        return system.address
    return run(api.resolve(session, system), session)


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
    from den.node.caller import NodeClient

    key = (url, session.token)
    with _lock:
        node = _nodes.get(key)
        if node is None:
            # An HTTPS daemon's certificate is pinned: the one den gave for it.
            node = _nodes[key] = NodeClient(url, token=session.token, tls=_tls.get(url))
        return node


def _forget_node(url: str) -> None:
    with _lock:
        for key in [key for key in _nodes if key[0] == url]:
            _nodes.pop(key).close()


# -- errors ----------------------------------------------------------------------


def _translate(exc: BaseException, what: str) -> BaseException:
    """A daemon-side failure as the den error a user catches; remote exceptions
    (the user's own types) are returned unchanged."""
    from den.node import errors as node_errors

    if not isinstance(exc, node_errors.NodeError) or isinstance(exc, node_errors.RemoteError):
        return exc
    message = exc.message
    status = exc.status
    if isinstance(exc, node_errors.NodeUnauthorized):
        return AuthenticationError(
            f"The cluster refused your token: {message}. Run `den login` to sign in again.",
            status=status,
        )
    if isinstance(exc, node_errors.NodeForbidden):
        return PermissionDenied(f"{what}: {message}.", status=status)
    if isinstance(exc, node_errors.PickleRefused):
        # Read access to a function lets you call it with data, not run code.
        return BadRequest(f"{what}: {message}.", code="pickle_refused", status=status)
    if isinstance(exc, node_errors.ObjectNotFound):
        return NotFound(f"{what}: {message}.", status=status)
    if isinstance(exc, node_errors.WorkerCrashed):
        return WorkerCrashed(
            f"{what}: {message}. The worker was restarted; calling again is safe if the "
            "call is.",
            env=exc.env,
            exit_code=exc.exit_code,
            status=status,
        )
    if isinstance(exc, node_errors.CallTimeout):
        return CallTimeout(f"{what}: {message}.", status=status)
    if isinstance(exc, node_errors.BundleTooLarge):
        return ValidationError(f"Cannot send the code of {what}: {message}.", field="code")
    if isinstance(exc, node_errors.NodeUnreachable):
        return NetworkError(f"{what}: {message}.")
    if isinstance(exc, node_errors.ClusterStopping):
        return NoRunningCluster(f"{what}: {message}.", code="cluster_stopping", status=status)
    return DenError(f"{what}: {message}.", code=exc.code, status=status)


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


def _env_spec(session: Session, resource: Runnable) -> Any:
    """The daemon's env description for ``resource.env`` (None: the base env)."""
    from den.client.resources import Env

    env = resource.env
    if env is None:
        return None
    if isinstance(env, str):
        address = run(api.resolve(session, env), session)
        data = run(api.resource_get(address), session)
        config = dict(data.get("config") or {})
        label = address
    else:
        assert isinstance(env, Env)
        config = env._config_fields()
        if env.address or env._name:
            label = env.address or run(api.resolve(session, env._name or ""), session)
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


def _target_name(session: Session, resource: Runnable) -> tuple[str, str | None]:
    """The daemon object name for ``resource`` and the address to put it with
    (set only once the resource is saved, so den knows it)."""
    address = resource.address
    if address is None and resource._name:
        address = run(api.resolve(session, resource._name), session)
    if address is None:
        return f"{resource.TYPE}-{uuid.uuid4().hex[:12]}", None
    return object_name(address), address if resource.version is not None else None


def _local_object(resource: Runnable) -> Any:
    return getattr(resource, "fn", None) or getattr(resource, "cls", None)


def _build_spec(session: Session, node: NodeClient, resource: Runnable,
                address: str | None) -> tuple[dict[str, Any], str | None]:
    """The put body for ``resource`` and the bundled code root (None: by value/installed)."""
    from den.node.caller import function_spec, module_spec

    obj = _local_object(resource)
    env = _env_spec(session, resource)
    pointers = resource.pointers or {}
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
        elif resource.code:
            code = resource.code
            if not node.has_code(code):
                raise NotFound(
                    f"The code of {_describe(resource)} is not on its cluster any more (was the "
                    "cluster restarted?): its owner must send it again with .to(cluster).",
                    code="code_not_found",
                )
    # What callers with read access may send beyond plain data (the config's
    # pickle_allow); den validated it when it was saved, the daemon checks it again.
    allow = resource.data.get("pickle_allow") or None
    if resource.TYPE == "function":
        spec = function_spec(obj if node_pointers is None else None, env=env, code=code,
                             pointers=node_pointers, address=address, pickle_allow=allow)
    else:
        init: tuple[tuple[Any, ...], dict[str, Any]] = resource._init_args or ((), {})
        spec = module_spec(obj if node_pointers is None else None, init_args=init[0],
                           init_kwargs=init[1], env=env, code=code, pointers=node_pointers,
                           address=address, pickle_allow=allow)
    if code is not None:
        resource.code = code
    return spec, str(root) if root is not None else None


def _put(session: Session, resource: Runnable, url: str, name: str, spec: dict[str, Any],
         root: str | None) -> Deployment:
    node = _node(session, url)
    try:
        node.put_object(name, spec)
    except Exception as exc:
        raise _translate(exc, _describe(resource)) from None
    deployment = Deployment(daemon_url=url, name=name, spec=spec, root=root)
    resource._deployment = deployment
    if spec.get("address"):
        _keep_in_den(session, resource, name, spec)
    return deployment


def _keep_in_den(session: Session, resource: Runnable, name: str, spec: dict[str, Any]) -> None:
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


def _deploy_to(session: Session, resource: Runnable, url: str) -> Deployment:
    """Upload ``resource``'s code (once per hash) and put it on the daemon at ``url``."""
    node = _node(session, url)
    name, address = _target_name(session, resource)
    try:
        spec, root = _build_spec(session, node, resource, address)
    except Exception as exc:
        raise _translate(exc, _describe(resource)) from None
    return _put(session, resource, url, name, spec, root)


def _redeploy(session: Session, resource: Runnable, old: Deployment, url: str) -> Deployment:
    """Put what was put before on another daemon (the cluster was restarted)."""
    node = _node(session, url)
    if old.root is not None:
        try:
            code = _sync_code(node, Path(old.root))
        except Exception as exc:
            raise _translate(exc, _describe(resource)) from None
        old.spec["code"] = code
        resource.code = code
    return _put(session, resource, url, old.name, dict(old.spec), old.root)


def deploy(resource: Runnable) -> None:
    """Send ``resource`` to its cluster now (called by ``.to()``); raises
    :class:`den.NoRunningCluster` when den reports that cluster not up, rather
    than sending nothing.

    A cluster given as an address, or a local cluster object that was never saved,
    is not asked about here: ``.to()`` only records it (so it works offline, and
    a function can be saved for a cluster that is not up yet), and the first call
    sends it.
    """
    from den.client.resources import Cluster

    resource._deployment = None
    system = resource.system
    if not isinstance(system, Cluster) or system.version is None:
        return
    if _local_object(resource) is None:
        return
    session = _session(resource)
    what = _describe(resource)
    address = _cluster_address(session, resource, what)
    status = cluster_status(session, address, what)
    if status.get("status") != "up" or not status.get("daemon_url"):
        raise _not_up(session, address, status, what)
    node_index = placed_on(resource)
    url = node_url(status, node_index)
    _urls[(session.url, address, node_index or 0)] = str(url)
    if resource.TYPE == "module" and not getattr(resource, "is_instance", False):
        # A class is instantiated on the node by its calls; send its code now.
        node = _node(session, str(url))
        obj = _local_object(resource)
        if not _by_value(obj):
            root = code_root(obj)
            if root is not None:
                try:
                    resource.code = _sync_code(node, root)
                except Exception as exc:
                    raise _translate(exc, what) from None
        return
    _deploy_to(session, resource, str(url))


def redeploy_after_save(resource: Runnable) -> None:
    """After a save, put the object again under its saved address, so the daemon
    checks callers' access to the resource itself (teammates it is shared with).

    A module instance is re-created from its init arguments by this: name it when
    you make it (``Model(3, name="model")``) to share it without that.
    """
    old = getattr(resource, "_deployment", None)
    if old is None or resource.address is None or old.address == resource.address:
        return
    session = _session(resource)
    name = object_name(resource.address)
    spec = {**old.spec, "address": resource.address}
    _put(session, resource, old.daemon_url, name, spec, old.root)
    if name != old.name:
        # Best effort: an object left under the old name only wastes memory.
        with contextlib.suppress(Exception):
            _node(session, old.daemon_url).delete_object(old.name)


# -- calls -----------------------------------------------------------------------


def _ensure_deployed(session: Session, resource: Runnable, url: str, what: str) -> str:
    """The daemon object name to call, putting the object first when this process
    holds its code and it is not on that daemon yet."""
    deployment: Deployment | None = getattr(resource, "_deployment", None)
    if deployment is not None:
        if deployment.daemon_url == url:
            return deployment.name
        return _redeploy(session, resource, deployment, url).name
    if _local_object(resource) is not None and not _is_class(resource):
        return _deploy_to(session, resource, url).name
    if resource.address is None and resource._name is None:
        raise NoRunningCluster(f"{what} was never sent to its cluster: call .to(cluster) first.")
    address = resource.address or run(api.resolve(session, resource._name or ""), session)
    return object_name(address)


def _is_class(resource: Runnable) -> bool:
    return resource.TYPE == "module" and not getattr(resource, "is_instance", False)


def call(
    resource: Runnable, method: str | None, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Run ``resource`` (or one of its methods) on its cluster and return the result.

    Remote output is printed as it arrives; a remote exception is re-raised with its
    own type and the remote traceback as a note; a remote generator comes back as
    an iterator.
    """
    if _is_class(resource) and method == "__init__":
        return instantiate(resource, args, kwargs)  # type: ignore[arg-type]
    what = _describe(resource, method)
    session = _session(resource)
    cluster = _cluster_address(session, resource, what)
    url = daemon_url(session, cluster, what, via=resource.address, node=placed_on(resource))
    from den.node import errors as node_errors

    address = resource.address if resource.version is not None else None
    for attempt in (0, 1):
        name = _ensure_deployed(session, resource, url, what)
        pin = _tls.get(url)
        try:
            return _node(session, url).call(name, method, args, kwargs, address=address)
        except node_errors.NodeUnreachable as exc:
            # Tell den at once, which checks the daemon now (and marks the cluster
            # unreachable if it is gone) rather than after its heartbeat timeout;
            # maybe it came up again elsewhere. The call is retried only on
            # another daemon (or the same URL with a new certificate: a new
            # daemon, which refused nothing but the handshake), where it cannot
            # have run.
            fresh = _after_unreachable(session, cluster, what, via=resource.address,
                                       node=placed_on(resource))
            if attempt or (fresh == url and _tls.get(fresh) == pin):
                raise _translate(exc, what) from None
            _forget_node(url)
            url = fresh
        except node_errors.ObjectNotFound as exc:
            deployment = getattr(resource, "_deployment", None)
            if attempt or deployment is None or "no object named" not in exc.message:
                raise _translate(exc, what) from None
            # The daemon restarted on the same URL and lost what this process put.
            resource._deployment = None
            _redeploy(session, resource, deployment, url)
        except node_errors.NodeError as exc:
            raise _translate(exc, what) from None
    raise AssertionError("unreachable")  # pragma: no cover


def instantiate(module: Module, args: tuple[Any, ...], kwargs: dict[str, Any],
                name: str | None = None) -> Module:
    """Make a remote instance of ``module`` (a class) on its cluster: a
    :class:`~den.client.resources.Module` whose methods are remote calls.

    A named instance is saved first, so teammates it is shared with can call it.
    """
    from den.client.resources import Module

    what = _describe(module)
    session = _session(module)
    cluster = _cluster_address(session, module, what)
    url = daemon_url(session, cluster, what, node=placed_on(module))
    base = module.name or "module"
    instance = Module(
        None,
        name or f"{base}-{uuid.uuid4().hex[:8]}",
        system=module.system,
        env=module.env,
        pointers=module.pointers,
        signature=module.signature_data,
        code=module.code,
        data={**module.data, "instance": True},
        session=module._session,
    )
    instance.cls = module.cls
    instance._init_args = (tuple(args), dict(kwargs))
    if name is not None:
        instance.save()
    _deploy_to(session, instance, url)
    return instance


class MethodHandle:
    """A method of a remote module instance: calling it runs the method on the cluster."""

    def __init__(self, instance: Runnable, name: str) -> None:
        self.instance = instance
        self.name = name
        methods = (instance.signature_data or {}).get("methods") or {}
        doc = (methods.get(name) or {}).get("doc")
        if doc:
            self.__doc__ = doc

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return call(self.instance, self.name, args, kwargs)

    async def acall(self, *args: Any, **kwargs: Any) -> Any:
        """Call the method without blocking the event loop."""
        import asyncio

        return await asyncio.to_thread(call, self.instance, self.name, args, kwargs)

    def __repr__(self) -> str:
        return f"<remote method {self.name} of {self.instance!r}>"


# -- bringing clusters up -------------------------------------------------------------


def _say(quiet: bool, address: str, text: str) -> None:
    if not quiet:
        print(f"den: {address}: {text}", file=sys.stderr, flush=True)


def _new_events(session: Session, address: str, after: int) -> list[dict[str, Any]]:
    events = run(api.cluster_events(address, limit=50), session)
    return sorted((e for e in events if int(e.get("id", 0)) > after), key=lambda e: e["id"])


def _answers(session: Session, status: dict[str, Any]) -> bool:
    """Whether the daemon at the status's URL answers its health check."""
    from den.node import errors as node_errors

    url = status.get("daemon_url")
    if not url:
        return False
    try:
        _node(session, str(url)).health()
    except node_errors.NodeError:
        return False
    return True


def bring_up(cluster: Cluster, *, timeout: float = 600.0, quiet: bool = False) -> dict[str, Any]:
    """Save ``cluster`` if needed, ask den to bring it up unless it is up or on its
    way, and wait until it is up, printing its status changes and events to stderr.
    Returns its status.

    Raises :class:`den.NoRunningCluster` with the cluster's message if it fails to
    start, or when it is not up after ``timeout`` seconds.
    """
    from den.client.errors import Conflict

    session = cluster._sess()
    if cluster._dirty():
        cluster.save()
    address = run(cluster._resolve_own_address(session), session)
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


def run_command(cluster: Cluster, command: str | list[str], *, node: int | str | None = None,
                timeout: float | None = None, quiet: bool = False) -> list[CommandResult]:
    """Run ``command`` on the cluster's head, node ``node``, or every node
    (``node="all"``, one after the other), printing output as it arrives
    (prefixed with the node's number when there are several). Needs write
    access to the cluster (the daemon checks)."""
    from den.node import errors as node_errors

    session = cluster._sess()
    what = f"cluster {cluster.name or ''}".strip()
    address = run(cluster._resolve_own_address(session), session)
    status = cluster_status(session, address, what)
    if status.get("status") != "up" or not status.get("daemon_url"):
        raise _not_up(session, address, status, what)
    count = max(len(status.get("nodes") or []), 1)
    if node == "all":
        chosen = list(range(count))
    elif node is None or isinstance(node, int):
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
        except node_errors.NodeError as exc:
            raise _translate(exc, what) from None
        results.append(CommandResult(node=index, url=url, exit_code=code, stdout=out,
                                     stderr=err))
    return results
