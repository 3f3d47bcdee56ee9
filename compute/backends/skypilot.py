"""The ``skypilot`` backend: clouds and Kubernetes through SkyPilot.

For a cluster whose ``provider`` is a cloud (``aws``, ``gcp``, ...),
``kubernetes`` or ``cheapest``, with DESIGN's fields ``instance_type``
(``"A10G:1"``, ``"CPU:32+"``, or a cloud's own type), ``num_nodes``,
``region``, ``use_spot``, ``disk_size``, ``autostop_mins`` and ``image``.

Everything SkyPilot does goes through an adapter
(:mod:`compute.backends.skypilot_adapter`, the only code that imports
``sky``, made only inside worker tasks; ``DEN_SKYPILOT_ADAPTER`` names it,
and the test suite's fake cloud takes its place there). This module imports
neither SkyPilot nor the adapter's SDK, so web processes can ask it what a
stop will do.

- **up** is two-phase. ``begin_up`` sends ``sky.launch`` and returns its
  request id in the handles; each ``poll_up`` asks about that request,
  appends the log lines it has not shown yet to the cluster's events, and,
  once SkyPilot has the machines, reads their addresses and SSH credentials
  from ``sky.status`` and starts den's daemons on them (the bootstrap, a
  daemon per node). A poll on another worker, or after a worker was killed,
  carries on from the stored request id: one launch, one cluster. A start
  sent again before its request id was stored adopts the launch under way.
- **stop** is ``sky.stop`` where the infrastructure can stop machines, and
  ``sky.down`` where it cannot (Kubernetes, SSH node pools): the cluster then
  ends ``terminated``, and the cluster page says beforehand which it will be
  (:func:`stop_tears_down`). **teardown** is ``sky.down``. Both wait up to
  ``DEN_SKYPILOT_WAIT_SECONDS`` for SkyPilot, then retry (and find the same
  request again) rather than hold a worker for minutes.
- **autostop** is den's sweep (which never stops a cluster during a call),
  with SkyPilot's own autostop as a backstop for when den is gone, set at
  launch ``DEN_SKYPILOT_AUTOSTOP_GRACE_MINS`` later (autodown where machines
  cannot stop).
- SkyPilot's errors (no cloud credentials, quota, no capacity, an unknown
  instance type) fail the start with one sentence that says what to do.
- The handles keep what the cluster costs: instance type, region, spot, the
  hourly price when SkyPilot knows it, and when it was launched.

Clusters are named ``DEN_SKYPILOT_CLUSTER_PREFIX`` + the cluster's id (and
labelled ``den-cluster``), which is how the orphan sweep
(:mod:`compute.skypilot_sweep`) finds the ones den launched.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from django.conf import settings

from compute.backends import register_backend
from compute.backends.base import (
    BackendError,
    ClusterBackend,
    Launched,
    LaunchSpec,
    LogFn,
    Pending,
    TransientBackendError,
)

if TYPE_CHECKING:
    from compute.backends.skypilot_adapter import Adapter, SkyCluster, SkyError

#: Where machines cannot be stopped and kept: stop tears them down.
NO_STOP_PROVIDERS = frozenset({"kubernetes", "k8s", "ssh", "runpod", "vast", "fluidstack"})
#: How many new log lines one poll puts into the cluster's events, at most.
_LOG_LINES_PER_POLL = 200


def cluster_name(cluster_key: str) -> str:
    """The SkyPilot cluster name of den's cluster ``cluster_key``."""
    return f"{settings.DEN_SKYPILOT_CLUSTER_PREFIX}{cluster_key}".lower()


def cluster_key_of(name: str) -> str | None:
    """den's cluster key of a SkyPilot cluster den launched, else None."""
    prefix = settings.DEN_SKYPILOT_CLUSTER_PREFIX.lower()
    if not name.startswith(prefix):
        return None
    key = name[len(prefix):]
    return key if key.isdigit() else None


def stop_tears_down(config: Mapping[str, Any]) -> bool:
    """Whether stopping this cluster tears it down (its infrastructure cannot
    stop machines and keep them); the UI says so before anyone stops it."""
    return str(config.get("provider") or "").lower() in NO_STOP_PROVIDERS


def adapter() -> Adapter:
    """A new adapter (``DEN_SKYPILOT_ADAPTER``): imports SkyPilot, so only tasks call it."""
    module_name, _, attr = settings.DEN_SKYPILOT_ADAPTER.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr or "SkyPilotAdapter")
        return factory()  # type: ignore[no-any-return]
    except ImportError as exc:
        raise BackendError(
            "This den cannot reach clouds: SkyPilot is not installed where its workers run "
            "(pip install 'den-ml[skypilot]').", error=str(exc)[:500]) from None


def _backend_error(error: SkyError) -> BackendError:
    details = {"error_kind": error.kind, "skypilot": error.detail} if error.detail else {
        "error_kind": error.kind}
    if error.transient:
        return TransientBackendError(str(error), **details)
    return BackendError(str(error), **details)


def _cost(cluster: SkyCluster) -> dict[str, Any]:
    return {"cloud": cluster.cloud, "region": cluster.region, "zone": cluster.zone,
            "instance_type": cluster.instance_type, "accelerators": cluster.accelerators,
            "use_spot": cluster.use_spot, "hourly_price": cluster.hourly_price,
            "launched_at": cluster.launched_at, "num_nodes": len(cluster.nodes)}


def _price_text(price: float | None) -> str:
    return f"${price:.2f}/h" if price is not None else "price unknown"


@register_backend
class SkyPilotBackend(ClusterBackend):
    """Clusters SkyPilot provisions, with den's daemons bootstrapped on them."""

    name = "skypilot"
    keeps_machines_on_stop = True

    def start_timeout(self) -> float:
        return settings.DEN_SKYPILOT_START_TIMEOUT

    def stop_tears_down(self, config: Mapping[str, Any]) -> bool:
        return stop_tears_down(config)

    # Up ------------------------------------------------------------------------

    def begin_up(self, spec: LaunchSpec, log: LogFn) -> Launched | Pending:
        from compute.backends.skypilot_adapter import LaunchRequest, SkyError

        config = spec.config
        name = cluster_name(spec.cluster_key)
        provider = str(config.get("provider") or "cheapest")
        minutes = spec.autostop_mins
        backstop = minutes + settings.DEN_SKYPILOT_AUTOSTOP_GRACE_MINS if minutes > 0 else None
        request = LaunchRequest(
            cluster_name=name, provider=provider,
            instance_type=str(config.get("instance_type") or ""),
            num_nodes=int(config.get("num_nodes") or 1),
            region=str(config.get("region") or ""), use_spot=bool(config.get("use_spot")),
            disk_size=config.get("disk_size") if isinstance(config.get("disk_size"), int)
            else None,
            image=str(config.get("image") or ""),
            ports=(int(config.get("server_port") or 32300),),
            labels={"den-cluster": spec.cluster_key},
            idle_minutes_to_autostop=backstop, autostop_down=stop_tears_down(config))
        sky = adapter()
        try:
            under_way = {rid for rid, what in sky.unfinished_requests(name).items()
                         if what.endswith("launch")}
            if under_way:
                request_id = sorted(under_way)[0]
                log("launch.adopted", "A launch of this cluster was already under way; "
                    "following it.", request_id=request_id)
            else:
                request_id = sky.launch(request)
                log("launch.requested", (
                    f"Asked SkyPilot for {request.num_nodes} node(s) of "
                    f"{request.instance_type or 'its default type'} on {provider}"
                    f"{' in ' + request.region if request.region else ''}"
                    f"{' (spot)' if request.use_spot else ''}."), request_id=request_id,
                    sky_cluster=name)
        except SkyError as exc:
            raise _backend_error(exc) from None
        return self._pending({"sky_cluster": name, "provider": provider,
                              "launch_request": request_id, "log_lines": 0,
                              "phase": "launch"})

    def _pending(self, handles: dict[str, Any], waiting_for: str = "") -> Pending:
        return Pending(handles=handles, retry_in=settings.DEN_SKYPILOT_POLL_SECONDS,
                       waiting_for=waiting_for or (
                           f"SkyPilot to provision the machines (request "
                           f"{handles.get('launch_request')})"))

    def poll_up(self, spec: LaunchSpec, handles: Mapping[str, Any],
                log: LogFn) -> Launched | Pending:
        from compute.backends.skypilot_adapter import SUCCEEDED, SkyError

        current = dict(handles)
        sky = adapter()
        if current.get("phase") == "bootstrap":
            return self._poll_bootstrap(spec, current, sky, log)
        request_id = str(current["launch_request"])
        try:
            state = sky.request(request_id)
            self._stream_logs(sky, request_id, current, log)
        except SkyError as exc:
            raise _backend_error(exc) from None
        if not state.finished:
            return self._pending(current)
        if state.status != SUCCEEDED:
            if state.error is not None:
                raise _backend_error(state.error)
            raise BackendError("The SkyPilot launch ended without machines "
                               f"({state.status}); bring the cluster up again.")
        found = self._cluster(sky, current["sky_cluster"], credentials=False)
        if found is None or not found.nodes:
            raise BackendError("SkyPilot said the launch succeeded but shows no machines for "
                               "the cluster; bring it up again.")
        current["cost"] = _cost(found)
        current["phase"] = "bootstrap"
        log("provisioned", (
            f"SkyPilot has {len(found.nodes)} machine(s): {found.instance_type or '?'} in "
            f"{found.region or '?'}{' (spot)' if found.use_spot else ''}, "
            f"{_price_text(found.hourly_price)}."), **current["cost"])
        return self._poll_bootstrap(spec, current, sky, log)

    def _stream_logs(self, sky: Adapter, request_id: str, handles: dict[str, Any],
                     log: LogFn) -> None:
        lines = sky.request_logs(request_id)
        seen = int(handles.get("log_lines") or 0)
        new = lines[seen:seen + _LOG_LINES_PER_POLL]
        if new:
            log("sky.log", "\n".join(new)[-8000:], request_id=request_id)
            handles["log_lines"] = seen + len(new)

    def _cluster(self, sky: Adapter, name: str, *, credentials: bool) -> SkyCluster | None:
        from compute.backends.skypilot_adapter import SkyError

        try:
            found = sky.clusters([name], credentials=credentials)
        except SkyError as exc:
            if exc.kind == "not_found":
                return None
            raise _backend_error(exc) from None
        return next((c for c in found if c.name == name), None)

    # The bootstrap: den's daemons on SkyPilot's machines ----------------------------

    def _poll_bootstrap(self, spec: LaunchSpec, handles: dict[str, Any], sky: Adapter,
                        log: LogFn) -> Launched | Pending:
        mode = settings.DEN_SKYPILOT_BOOTSTRAP
        if mode != "local":
            raise BackendError(
                "SkyPilot has the machines, but this den has no SSH bootstrap to start its "
                "daemons on them yet; tear the cluster down (DEN_SKYPILOT_BOOTSTRAP).",
                bootstrap=mode)
        return self._poll_local(spec, handles, log)

    def _node_specs(self, spec: LaunchSpec, handles: Mapping[str, Any]) -> list[LaunchSpec]:
        count = int((handles.get("cost") or {}).get("num_nodes") or 1)
        return [replace(spec, cluster_key=f"{spec.cluster_key}-n{i}") for i in range(count)]

    def _poll_local(self, spec: LaunchSpec, handles: dict[str, Any],
                    log: LogFn) -> Launched | Pending:
        """The ``local`` bootstrap (a fake cloud whose machines are the worker's
        own): a local daemon per node, started and polled by the local backend."""
        from compute.backends.local import LocalBackend

        local = LocalBackend()
        nodes: list[Any] = list(handles.get("local_nodes") or [])
        specs = self._node_specs(spec, handles)
        pending = False
        for i, node_spec in enumerate(specs):
            if i < len(nodes) and nodes[i].get("url"):
                continue
            if i >= len(nodes):
                result = local.begin_up(node_spec, log)
                nodes.append({})
            else:
                result = local.poll_up(node_spec, nodes[i]["handles"], log)
            if isinstance(result, Pending):
                nodes[i] = {"handles": result.handles}
                pending = True
            else:
                nodes[i] = {"handles": result.handles, "url": result.daemon_url}
        handles["local_nodes"] = nodes
        if pending:
            return Pending(handles=handles, retry_in=0.5,
                           waiting_for="den's daemons on the new machines to answer")
        handles["nodes"] = [{"url": node["url"]} for node in nodes]
        return Launched(daemon_url=nodes[0]["url"], handles=handles)

    def _stop_daemons(self, cluster_key: str, handles: Mapping[str, Any], log: LogFn) -> None:
        from compute.backends.local import LocalBackend

        for i, node in enumerate(handles.get("local_nodes") or []):
            if isinstance(node, dict) and node.get("handles"):
                LocalBackend().teardown(f"{cluster_key}-n{i}", node["handles"], log)

    # Stop and teardown ------------------------------------------------------------

    def cancel_up(self, cluster_key: str, handles: Mapping[str, Any], log: LogFn) -> None:
        """A failed or replaced start: release the machines (``sky.down``) without
        waiting, so that nothing den launched stays billed; the orphan sweep
        checks later that it went."""
        from compute.backends.skypilot_adapter import SkyError

        self._stop_daemons(cluster_key, handles, log)
        name = str(handles.get("sky_cluster") or cluster_name(cluster_key))
        try:
            request_id = adapter().down(name)
        except SkyError as exc:
            if exc.kind != "not_found":
                raise _backend_error(exc) from None
            return
        log("down.requested", "Asked SkyPilot to release the machines of the start that "
            "did not finish.", request_id=request_id)

    def stop(self, cluster_key: str, handles: Mapping[str, Any], log: LogFn) -> None:
        config_says_down = str(handles.get("provider") or "").lower() in NO_STOP_PROVIDERS
        self._stop_daemons(cluster_key, handles, log)
        if config_says_down:
            log("stop.teardown", "Kubernetes and SSH node pools cannot stop machines and keep "
                "them: tearing the cluster down instead.")
            self._finish(cluster_key, handles, log, "down")
        else:
            self._finish(cluster_key, handles, log, "stop")

    def teardown(self, cluster_key: str, handles: Mapping[str, Any], log: LogFn) -> None:
        self._stop_daemons(cluster_key, handles, log)
        self._finish(cluster_key, handles, log, "down")

    def _finish(self, cluster_key: str, handles: Mapping[str, Any], log: LogFn,
                action: str) -> None:
        """Send ``sky.stop`` or ``sky.down`` (or follow one already under way) and
        wait for it, up to DEN_SKYPILOT_WAIT_SECONDS; then retry the task."""
        from compute.backends.skypilot_adapter import SUCCEEDED, SkyError

        name = str(handles.get("sky_cluster") or cluster_name(cluster_key))
        sky = adapter()
        try:
            under_way = [rid for rid, what in sky.unfinished_requests(name).items()
                         if what.endswith(action)]
            if under_way:
                request_id = under_way[0]
            else:
                request_id = sky.stop(name) if action == "stop" else sky.down(name)
                log(f"{action}.requested", f"Asked SkyPilot to {action} the cluster.",
                    request_id=request_id)
            deadline = time.monotonic() + settings.DEN_SKYPILOT_WAIT_SECONDS
            progress: dict[str, Any] = {"log_lines": 0}
            while True:
                state = sky.request(request_id)
                if state.finished:
                    break
                if time.monotonic() > deadline:
                    raise TransientBackendError(
                        f"SkyPilot is still working on the {action} (request {request_id}); "
                        "den checks again shortly.", request_id=request_id)
                time.sleep(min(settings.DEN_SKYPILOT_POLL_SECONDS, 2.0))
            self._stream_logs(sky, request_id, progress, log)
        except SkyError as exc:
            if exc.kind == "not_found":
                log(f"{action}.nothing", "SkyPilot has no such cluster any more; nothing to "
                    f"{action}.")
                return
            raise _backend_error(exc) from None
        if state.status != SUCCEEDED:
            error = state.error
            if error is not None and error.kind == "not_found":
                log(f"{action}.nothing", "SkyPilot has no such cluster any more; nothing to "
                    f"{action}.")
                return
            if error is not None:
                raise _backend_error(error)
            raise BackendError(f"SkyPilot's {action} ended {state.status}; try again.")

    def status(self, cluster_key: str, handles: Mapping[str, Any]) -> str:
        from compute.backends.local import LocalBackend

        found = self._cluster(adapter(), str(handles.get("sky_cluster")
                                             or cluster_name(cluster_key)), credentials=False)
        if found is None or found.status == "STOPPED":
            return "stopped"
        if found.status != "UP":
            return "unreachable"
        nodes = handles.get("local_nodes") or []
        if nodes and isinstance(nodes[0], dict) and nodes[0].get("handles"):
            return LocalBackend().status(f"{cluster_key}-n0", nodes[0]["handles"])
        return "up"
