"""Runs den's real SkyPilot adapter in SkyPilot's own virtualenv, for the
contract test: ``python -m tests.compute.sky_driver '<json list of steps>'``
prints one JSON list of results. Imports no Django (neither does the adapter)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from compute.backends.skypilot_adapter import LaunchRequest, SkyError, SkyPilotAdapter


def _state(sky: SkyPilotAdapter, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        state = sky.request(request_id)
        if state.finished or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    error = state.error
    return {"status": state.status, "error": error and {
        "kind": error.kind, "message": str(error), "detail": error.detail}}


def _sky_error(sky: SkyPilotAdapter, request_id: str) -> str:
    try:
        sky.sky.get(request_id)
    except Exception as exc:
        return type(exc).__name__
    return ""


def main(steps: list[list[Any]]) -> list[Any]:
    sky = SkyPilotAdapter()
    out: list[Any] = []
    for name, *args in steps:
        try:
            if name == "clusters":
                out.append({"ok": [c.name for c in sky.clusters()]})
                continue
            if name == "launch":
                cluster, provider, instance_type = args
                request_id = sky.launch(LaunchRequest(cluster_name=cluster, provider=provider,
                                                      instance_type=instance_type))
            elif name == "autostop":
                request_id = sky.autostop(*args)
            else:
                request_id = getattr(sky, name)(*args)
            result = {"request_id": request_id, "state": _state(sky, request_id),
                      "sky_error": _sky_error(sky, request_id),
                      "logs": sky.request_logs(request_id)}
            if name == "launch":
                result["unfinished_after"] = sky.unfinished_requests(args[0])
            out.append(result)
        except SkyError as exc:
            out.append({"raised": exc.kind, "message": str(exc), "detail": exc.detail})
    return out


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
