"""The test suite's cloud: a stand-in for SkyPilot at den's adapter boundary, and only there.

It implements :class:`compute.backends.skypilot_adapter.Adapter`, and keeps
its requests and clusters in a JSON file under ``DEN_FAKE_CLOUD_DIR`` (under
a lock), so that every worker process, a restarted worker and the test
itself see one cloud. Requests behave like SkyPilot's: each call returns a
request id at once; the request is pending, then running (its log growing),
then finished, ``FAKE_REQUEST_SECONDS`` after it was made. Its errors are
den's ``SkyError`` of the same kinds the real adapter maps SkyPilot's
exceptions to (tests/compute/test_skypilot_contract.py checks those against
a real SkyPilot API server).

What a test may change (``FakeCloud.configure``): ``no_access`` (providers
without credentials, or "*"), ``no_capacity`` (regions), ``quota``
(instance types), ``seconds`` (how long a request takes). The catalog knows
the instance types in ``CATALOG``; any other is an unknown one.

Machines: the launched cluster's nodes are this machine (127.0.0.1), where
den's ``local`` bootstrap (DEN_SKYPILOT_BOOTSTRAP=local) starts the daemons.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from compute.backends.skypilot_adapter import (
    CANCELLED,
    FAILED,
    PENDING,
    RUNNING,
    SUCCEEDED,
    LaunchRequest,
    RequestState,
    SkyCluster,
    SkyError,
    SkyNode,
    error_for,
)

#: den instance_type -> (the cloud's instance type, on-demand $/h).
CATALOG = {
    "": ("fake-cpu-4", 0.19),
    "CPU:2": ("fake-cpu-2", 0.10),
    "CPU:32+": ("fake-cpu-32", 1.60),
    "A10G:1": ("fake-g5-xlarge", 1.01),
    "A100:1": ("fake-a2-highgpu-1g", 3.67),
}
NO_STOP = ("kubernetes", "ssh")


def _dir() -> Path:
    return Path(os.environ["DEN_FAKE_CLOUD_DIR"])


@contextlib.contextmanager
def _locked() -> Iterator[dict[str, Any]]:
    folder = _dir()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "cloud.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = folder / "cloud.json"
        data = json.loads(path.read_text()) if path.exists() else {}
        data.setdefault("requests", {})
        data.setdefault("clusters", {})
        data.setdefault("config", {})
        data.setdefault("machines_made", 0)
        yield data
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)


class FakeCloud:
    """SkyPilot as den's adapter sees it, with a cloud made of this machine."""

    # What tests use ------------------------------------------------------------------

    @staticmethod
    def configure(**config: Any) -> None:
        with _locked() as data:
            data["config"].update(config)

    @staticmethod
    def snapshot() -> dict[str, Any]:
        with _locked() as data:
            return json.loads(json.dumps(data))

    @staticmethod
    def reset() -> None:
        with _locked() as data:
            data.clear()

    @staticmethod
    def add_cluster(name: str, **fields: Any) -> None:
        """A cluster SkyPilot runs that den may not know (an orphan)."""
        with _locked() as data:
            data["clusters"][name] = {"name": name, "status": "UP", "provider": "aws",
                                      "region": "fake-east-1", "instance_type": "fake-cpu-4",
                                      "spot": False, "price": 0.19, "nodes": 1,
                                      "launched_at": time.time(), "labels": {}, **fields}
            data["machines_made"] += 1

    # The adapter ------------------------------------------------------------------------

    def _new(self, data: dict[str, Any], name: str, cluster: str, **body: Any) -> str:
        request_id = str(uuid.uuid4())
        data["requests"][request_id] = {
            "id": request_id, "name": name, "cluster": cluster, "created": time.time(),
            "seconds": float(data["config"].get("seconds", 1.0)), "done": False,
            "status": PENDING, "error": None, "body": body}
        return request_id

    def launch(self, request: LaunchRequest) -> str:
        with _locked() as data:
            return self._new(data, "sky.launch", request.cluster_name, **{
                "provider": request.provider, "instance_type": request.instance_type,
                "num_nodes": request.num_nodes, "region": request.region,
                "use_spot": request.use_spot, "labels": dict(request.labels),
                "autostop": request.idle_minutes_to_autostop, "down": request.autostop_down})

    def stop(self, cluster_name: str) -> str:
        with _locked() as data:
            return self._new(data, "sky.stop", cluster_name)

    def down(self, cluster_name: str) -> str:
        with _locked() as data:
            return self._new(data, "sky.down", cluster_name)

    def autostop(self, cluster_name: str, idle_minutes: int, down: bool) -> str:
        with _locked() as data:
            return self._new(data, "sky.autostop", cluster_name, idle_minutes=idle_minutes,
                             down=down)

    def request(self, request_id: str) -> RequestState:
        with _locked() as data:
            found = data["requests"].get(request_id)
            if found is None:
                raise error_for("unknown", detail=f"no request {request_id}")
            self._advance(data, found)
            error = found["error"]
            return RequestState(request_id, found["status"],
                                SkyError(error["kind"], error["message"], error["detail"])
                                if error else None)

    def request_logs(self, request_id: str) -> list[str]:
        with _locked() as data:
            found = data["requests"].get(request_id)
            if found is None:
                raise error_for("unknown", detail=f"no request {request_id}")
            self._advance(data, found)
            return list(found.get("logs") or [])

    def unfinished_requests(self, cluster_name: str) -> dict[str, str]:
        with _locked() as data:
            out = {}
            for found in data["requests"].values():
                if found["cluster"] == cluster_name:
                    self._advance(data, found)
                    if not found["done"]:
                        out[found["id"]] = found["name"]
            return out

    def clusters(self, names: Sequence[str] | None = None, *,
                 credentials: bool = False) -> list[SkyCluster]:
        with _locked() as data:
            for found in data["requests"].values():
                self._advance(data, found)
            records = [c for n, c in data["clusters"].items() if not names or n in names]
        return [SkyCluster(
            name=c["name"], status=c["status"],
            nodes=tuple(SkyNode(ip="127.0.0.1", ssh_port=22) for _ in range(c["nodes"])),
            ssh_user="den" if credentials else "", cloud=c["provider"], region=c["region"],
            instance_type=c["instance_type"], use_spot=c["spot"], hourly_price=c["price"],
            launched_at=c["launched_at"], labels=c.get("labels") or {}) for c in records]

    # How the cloud behaves --------------------------------------------------------------

    def _advance(self, data: dict[str, Any], found: dict[str, Any]) -> None:
        if found["done"]:
            return
        elapsed = time.time() - found["created"]
        seconds = found["seconds"]
        logs = found.setdefault("logs", [])
        if elapsed < seconds * 0.2:
            return
        found["status"] = RUNNING
        if found["name"] == "sky.launch" and len(logs) < 1:
            body = found["body"]
            logs.append(f"Considered resources ({body['num_nodes']} node): "
                        f"{body['instance_type'] or 'default'} on {body['provider']}.")
        if found["name"] == "sky.launch" and elapsed >= seconds * 0.6 and len(logs) < 2:
            logs.append("Launching instances; waiting for SSH.")
        if elapsed < seconds:
            return
        error = self._apply(data, found)
        found["done"] = True
        found["status"] = FAILED if error else SUCCEEDED
        found["error"] = ({"kind": error.kind, "message": str(error), "detail": error.detail}
                          if error else None)
        logs.append(f"{found['name']} {'failed: ' + error.kind if error else 'done'}.")

    def _apply(self, data: dict[str, Any], found: dict[str, Any]) -> SkyError | None:
        config = data["config"]
        name, clusters = found["cluster"], data["clusters"]
        what = found["name"]
        if what == "sky.launch":
            body = found["body"]
            provider, region = body["provider"], body["region"]
            instance = body["instance_type"]
            no_access = config.get("no_access") or []
            if "*" in no_access or provider in no_access:
                return error_for("no_cloud_access", detail="fake: no credentials")
            if instance not in CATALOG:
                return error_for("invalid_resources", instance_type=instance, region=region,
                                 detail=f"fake: no instance type {instance}")
            if instance in (config.get("quota") or []):
                return error_for("quota", instance_type=instance, region=region,
                                 detail="fake: QUOTA_EXCEEDED")
            if region in (config.get("no_capacity") or []):
                return error_for("no_capacity", instance_type=instance, region=region,
                                 detail="fake: InsufficientInstanceCapacity")
            cloud_type, price = CATALOG[instance]
            existing = clusters.get(name)
            if existing is None:
                data["machines_made"] += body["num_nodes"]
            clusters[name] = {
                "name": name, "status": "UP", "provider": provider,
                "region": region or "fake-east-1", "instance_type": cloud_type,
                "spot": body["use_spot"], "price": round(price * (0.3 if body["use_spot"]
                                                                  else 1.0), 4),
                "nodes": body["num_nodes"], "labels": body["labels"],
                "launched_at": time.time() if existing is None else existing["launched_at"],
                "autostop": body["autostop"], "autodown": body["down"]}
            return None
        cluster = clusters.get(name)
        if cluster is None:
            return error_for("not_found", detail=f"fake: Cluster {name!r} does not exist.")
        if what == "sky.stop":
            if cluster["provider"] in NO_STOP:
                return error_for("not_supported", detail="fake: cannot stop")
            cluster["status"] = "STOPPED"
        elif what == "sky.down":
            del clusters[name]
        elif what == "sky.autostop":
            cluster["autostop"] = found["body"]["idle_minutes"]
            cluster["autodown"] = found["body"]["down"]
        return None


__all__ = ["CANCELLED", "FakeCloud"]
