"""den's boundary with SkyPilot: the only module that imports ``sky``.

:mod:`compute.backends.skypilot` never calls SkyPilot itself; it calls an
*adapter* with this module's small interface (:class:`Adapter`), whose every
call either returns at once with a SkyPilot **request id** (``launch``,
``stop``, ``down``, ``autostop``) or asks about one (``request``,
``request_logs``), plus ``clusters`` (``sky.status``) for the reconcile and
orphan sweeps. The backend keeps request ids on the cluster's state, so a
poll task on any worker, after any restart, picks the request up again.

:class:`SkyPilotAdapter` is the real one, on SkyPilot 0.14's client SDK
(which talks to a SkyPilot API server: ``SKYPILOT_API_SERVER_ENDPOINT``, or a
local one it starts unless ``SKYPILOT_DISABLE_LOCAL_API_SERVER=1``). ``sky``
is imported when an adapter is made, never when this module is, and only
worker tasks make one: web processes and ``import den`` never load SkyPilot
(2-3 s and some 150 MB). This module imports no Django, so the contract test
(tests/compute/test_skypilot_contract.py) can drive it in SkyPilot's own
virtualenv against a real API server.

SkyPilot's exceptions become :class:`SkyError` with a ``kind`` and one
sentence a user can act on; nothing above this module sees a ``sky`` type.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

#: SkyPilot's request statuses, lower-cased; the first three are unfinished.
PENDING, WAITING, RUNNING = "pending", "waiting", "running"
SUCCEEDED, FAILED, CANCELLED = "succeeded", "failed", "cancelled"
UNFINISHED = (PENDING, WAITING, RUNNING)


class SkyError(Exception):
    """A SkyPilot failure, as den tells it: ``kind`` is one of

    ``no_cloud_access``, ``quota``, ``no_capacity``, ``invalid_resources``,
    ``not_found`` (the cluster does not exist), ``not_supported``,
    ``cancelled``, ``api_unreachable`` (worth retrying) or ``unknown``.
    The message is one sentence that says what to do; ``detail`` is
    SkyPilot's own text, for the cluster's managers.
    """

    def __init__(self, kind: str, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.detail = detail

    @property
    def transient(self) -> bool:
        return self.kind == "api_unreachable"


@dataclass(frozen=True)
class LaunchRequest:
    """A cluster as SkyPilot should make it, from den's cluster config."""

    cluster_name: str
    provider: str  # aws, gcp, kubernetes, ... or cheapest
    instance_type: str = ""  # "A10G:1", "CPU:32+", or a cloud's own type
    num_nodes: int = 1
    region: str = ""
    use_spot: bool = False
    disk_size: int | None = None
    image: str = ""
    ports: tuple[int, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    #: Minutes of idleness after which SkyPilot stops (or downs) it: den's backstop.
    idle_minutes_to_autostop: int | None = None
    autostop_down: bool = False


@dataclass(frozen=True)
class RequestState:
    """Where a SkyPilot request is; ``error`` is set when it failed."""

    request_id: str
    status: str
    error: SkyError | None = None

    @property
    def finished(self) -> bool:
        return self.status not in UNFINISHED


@dataclass(frozen=True)
class SkyNode:
    """One machine of a cluster: where to reach its sshd."""

    ip: str
    ssh_port: int = 22
    internal_ip: str = ""


@dataclass(frozen=True)
class SkyCluster:
    """A cluster as ``sky.status`` sees it. ``status`` is SkyPilot's:
    ``INIT``, ``UP`` or ``STOPPED``. ``ssh_private_key`` is set only when
    asked for with credentials, and never leaves the worker."""

    name: str
    status: str
    nodes: tuple[SkyNode, ...] = ()
    ssh_user: str = ""
    ssh_private_key: str = field(default="", repr=False)
    cloud: str = ""
    region: str = ""
    zone: str = ""
    instance_type: str = ""
    accelerators: str = ""
    use_spot: bool = False
    hourly_price: float | None = None
    launched_at: float | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


class Adapter(Protocol):
    """What den asks of SkyPilot (the real adapter, or the test suite's fake cloud)."""

    def launch(self, request: LaunchRequest) -> str: ...
    def stop(self, cluster_name: str) -> str: ...
    def down(self, cluster_name: str) -> str: ...
    def autostop(self, cluster_name: str, idle_minutes: int, down: bool) -> str: ...
    def request(self, request_id: str) -> RequestState: ...
    def request_logs(self, request_id: str) -> list[str]: ...
    def unfinished_requests(self, cluster_name: str) -> dict[str, str]: ...
    def clusters(self, names: Sequence[str] | None = None, *,
                 credentials: bool = False) -> list[SkyCluster]: ...


_ACCELERATOR_RE = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*):(\d+(?:\.\d+)?)$")
_CPU_RE = re.compile(r"^(CPU|MEM):(\d+(?:\.\d+)?\+?)$", re.IGNORECASE)
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_QUOTA_RE = re.compile(r"quota|limit ?exceeded|vcpulimitexceeded", re.IGNORECASE)


def resource_fields(instance_type: str) -> dict[str, str]:
    """den's ``instance_type`` as SkyPilot's Resources fields: ``"A10G:1"`` is
    accelerators, ``"CPU:32+"`` cpus, ``"MEM:64+"`` memory, anything else a
    cloud's own instance type (``"p3.2xlarge"``)."""
    text = (instance_type or "").strip()
    if not text:
        return {}
    cpu = _CPU_RE.match(text)
    if cpu:
        return {"cpus" if cpu.group(1).upper() == "CPU" else "memory": cpu.group(2)}
    if _ACCELERATOR_RE.match(text):
        return {"accelerators": text}
    return {"instance_type": text}


def plain(text: str) -> str:
    """SkyPilot's text without terminal colours."""
    return _ANSI_RE.sub("", text or "").strip()


class SkyPilotAdapter:
    """The real adapter: SkyPilot 0.14's client SDK. Each call is one short
    HTTP request to the API server; none waits for a cluster."""

    def __init__(self) -> None:
        self.sky: Any = importlib.import_module("sky")
        self.exceptions: Any = importlib.import_module("sky.exceptions")

    # Requests ------------------------------------------------------------------

    def launch(self, request: LaunchRequest) -> str:
        sky = self.sky
        infra = None if request.provider in ("", "cheapest") else request.provider
        if infra and request.region:
            infra = f"{infra}/{request.region}"
        try:
            resources = sky.Resources(
                infra=infra, use_spot=request.use_spot, disk_size=request.disk_size,
                image_id=request.image or None, ports=list(request.ports) or None,
                labels=dict(request.labels) or None, **resource_fields(request.instance_type))
            task = sky.Task(name=request.cluster_name, num_nodes=request.num_nodes)
            task.set_resources(resources)
            with _quiet():
                request_id = sky.launch(
                    task, cluster_name=request.cluster_name, retry_until_up=False,
                    idle_minutes_to_autostop=request.idle_minutes_to_autostop,
                    down=request.autostop_down)
        except Exception as exc:
            raise self.error(exc, instance_type=request.instance_type,
                             region=request.region) from None
        return str(request_id)

    def stop(self, cluster_name: str) -> str:
        return self._call(lambda: self.sky.stop(cluster_name))

    def down(self, cluster_name: str) -> str:
        return self._call(lambda: self.sky.down(cluster_name))

    def autostop(self, cluster_name: str, idle_minutes: int, down: bool) -> str:
        return self._call(lambda: self.sky.autostop(cluster_name, idle_minutes, down=down))

    def _call(self, fn: Any) -> str:
        try:
            with _quiet():
                return str(fn())
        except Exception as exc:
            raise self.error(exc) from None

    # Asking about requests -------------------------------------------------------

    def request(self, request_id: str) -> RequestState:
        """The request's status; for a failed one, den's error for what SkyPilot raised."""
        try:
            with _quiet():
                found = self.sky.api_status([request_id])
        except Exception as exc:
            raise self.error(exc) from None
        if not found:
            raise SkyError("unknown", f"SkyPilot's API server has no request {request_id}; "
                           "it may have been restarted with a fresh state. Bring the cluster "
                           "up again.")
        status = str(getattr(found[0], "status", "")).lower().rsplit(".", 1)[-1]
        if status in UNFINISHED or status == SUCCEEDED:
            return RequestState(request_id, status)
        try:
            with _quiet():
                self.sky.get(request_id)
        except Exception as exc:
            return RequestState(request_id, status, self.error(exc))
        return RequestState(request_id, status,
                            SkyError("unknown", "The SkyPilot request failed without saying "
                                     "why; see SkyPilot's API server logs."))

    def request_logs(self, request_id: str) -> list[str]:
        """The request's log lines so far (never waits for it to finish)."""
        buffer = io.StringIO()
        try:
            with _quiet():
                self.sky.stream_and_get(request_id, follow=False, output_stream=buffer)
        except Exception as exc:
            raise self.error(exc) from None
        return [line for line in (plain(part) for part in buffer.getvalue().splitlines())
                if line]

    def unfinished_requests(self, cluster_name: str) -> dict[str, str]:
        """Requests for ``cluster_name`` still under way: id -> name (``sky.launch``, ...)."""
        try:
            with _quiet():
                found = self.sky.api_status(None, cluster_name=cluster_name)
        except Exception as exc:
            raise self.error(exc) from None
        return {str(r.request_id): str(r.name) for r in found
                if str(r.status).lower().rsplit(".", 1)[-1] in UNFINISHED
                and getattr(r, "cluster_name", cluster_name) == cluster_name}

    def clusters(self, names: Sequence[str] | None = None, *,
                 credentials: bool = False) -> list[SkyCluster]:
        """``sky.status`` of ``names`` (every user's clusters when None)."""
        try:
            with _quiet():
                request_id = self.sky.status(list(names) if names else None, all_users=True,
                                             _include_credentials=credentials)
                records = self.sky.get(request_id)
        except Exception as exc:
            raise self.error(exc) from None
        return [self._cluster(record) for record in records or ()]

    def _cluster(self, record: Any) -> SkyCluster:
        get = record.get if isinstance(record, dict) else (
            lambda key, default=None: getattr(record, key, default))
        handle = get("handle")
        resources = getattr(handle, "launched_resources", None)
        pairs = getattr(handle, "stable_internal_external_ips", None) or []
        ports = getattr(handle, "stable_ssh_ports", None) or []
        nodes = tuple(
            SkyNode(ip=str(external or internal), internal_ip=str(internal or ""),
                    ssh_port=int(ports[i]) if i < len(ports) else 22)
            for i, (internal, external) in enumerate(pairs))
        creds = get("credentials") or {}
        price = None
        if resources is not None:
            with contextlib.suppress(Exception):  # SkyPilot's catalog may not know it
                price = float(resources.get_cost(3600)) * max(
                    int(getattr(handle, "launched_nodes", 1) or 1), 1)
        status = get("status")
        return SkyCluster(
            name=str(get("name")),
            status=str(getattr(status, "value", status)),
            nodes=nodes,
            ssh_user=str(creds.get("ssh_user") or ""),
            ssh_private_key=str(creds.get("ssh_private_key_content") or ""),
            cloud=str(getattr(resources, "cloud", "") or get("cloud") or "").lower(),
            region=str(getattr(resources, "region", "") or get("region") or ""),
            zone=str(getattr(resources, "zone", "") or ""),
            instance_type=str(getattr(resources, "instance_type", "") or ""),
            accelerators=str(get("accelerators") or ""),
            use_spot=bool(getattr(resources, "use_spot", False)),
            hourly_price=price,
            launched_at=float(get("launched_at") or 0) or None,
            labels=dict(get("labels") or getattr(resources, "labels", None) or {}),
        )

    # Errors ------------------------------------------------------------------------

    def error(self, exc: BaseException, *, instance_type: str = "",
              region: str = "") -> SkyError:
        """den's error for an exception SkyPilot raised."""
        ex = self.exceptions
        detail = plain(str(exc))[:2000]
        where = {"instance_type": instance_type, "region": region, "detail": detail}
        if isinstance(exc, (ex.NoCloudAccessError, getattr(ex, "InvalidCloudCredentials", ()))):
            return error_for("no_cloud_access", **where)
        if isinstance(exc, ex.ClusterDoesNotExist):
            return error_for("not_found", **where)
        if isinstance(exc, ex.ResourcesUnavailableError):
            history = " ".join(str(e) for e in getattr(exc, "failover_history", []) or [])
            return error_for("quota" if _QUOTA_RE.search(f"{exc} {history}")
                             else "no_capacity", **where)
        if isinstance(exc, (ex.ResourcesMismatchError, ValueError)):
            return error_for("invalid_resources", **where)
        if isinstance(exc, ex.NotSupportedError):
            return error_for("not_supported", **where)
        if isinstance(exc, getattr(ex, "RequestCancelled", ())):
            return error_for("cancelled", **where)
        if isinstance(exc, (getattr(ex, "ApiServerConnectionError", ()), ConnectionError,
                            OSError)) or type(exc).__name__ in ("ConnectionError", "Timeout",
                                                                "ReadTimeout"):
            return error_for("api_unreachable", **where)
        return error_for("unknown", **where, name=type(exc).__name__)


def error_for(kind: str, *, instance_type: str = "", region: str = "", detail: str = "",
              name: str = "") -> SkyError:
    """den's error of ``kind``, with the one sentence a user can act on (the
    real adapter and the test suite's fake cloud say the same)."""
    what = f" {instance_type}" if instance_type else ""
    where = f" in {region}" if region else ""
    messages = {
        "no_cloud_access": (
            "SkyPilot has no credentials for the cloud this cluster asks for: set them up "
            "where SkyPilot's API server runs (`sky check` says what is missing), then bring "
            "the cluster up again."),
        "not_found": "SkyPilot has no such cluster (it is already gone).",
        "quota": (f"The cloud refused{what}{where} for lack of quota: ask the cloud for more "
                  "quota, or choose another region or instance type."),
        "no_capacity": (f"No cloud had capacity for{what or ' this cluster'}{where}: try "
                        "another region or instance type, or try again later."),
        "invalid_resources": (
            f"SkyPilot cannot place{what or ' this cluster'}{where}: check provider, "
            "instance_type and region (`sky show-gpus` lists what exists)."),
        "not_supported": ("SkyPilot cannot do that on this cluster's infrastructure; see the "
                          "event's details."),
        "cancelled": "The SkyPilot request was cancelled; bring the cluster up again.",
        "api_unreachable": ("den could not reach SkyPilot's API server; check that it runs "
                            "(SKYPILOT_API_SERVER_ENDPOINT)."),
    }
    message = messages.get(kind) or (
        f"SkyPilot failed ({name or 'unknown error'}); see the event's details, and tell "
        "den's administrators if it keeps failing.")
    return SkyError(kind if kind in messages else "unknown", message, detail)


@contextlib.contextmanager
def _quiet() -> Any:
    """SkyPilot's client prints progress to stdout; a worker's log is not the place."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield
