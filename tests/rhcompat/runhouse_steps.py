"""Runs inside the runhouse 0.0.42 client's own virtualenv (never den's):
``python runhouse_steps.py '<json list of steps>'``. Each step is one call a
runhouse user makes; each prints ``RH_RESULT <json>`` with what came back, or
the exception the client raised. The test (test_runhouse_client.py) sets HOME,
the working directory and API_SERVER_URL before this imports runhouse, as the
client freezes them at import."""

from __future__ import annotations

import json
import sys
import traceback
from typing import Any

import runhouse as rh


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def login(step: dict) -> Any:
    rh.configs.set("default_autostop", -1)  # what login would prompt for
    rh.login(token=step["token"], interactive=False)
    return {"username": rh.configs.username, "api_server_url": rh.configs.get("api_server_url")}


def upload_defaults(step: dict) -> Any:
    for key, value in step["settings"].items():
        rh.configs.set(key, value)
    rh.configs.upload_defaults()
    return rh.configs.load_defaults_from_den()


def save_static_cluster(step: dict) -> Any:
    cluster = rh.cluster(name=step["name"], host=step["host"],
                         ssh_creds={"ssh_user": "ubuntu", "ssh_private_key": step["key"]},
                         server_connection_type="ssh", image=rh.Image(name="img").pip_install(
                             ["numpy==1.26.4"]).set_env_vars({"OMP_NUM_THREADS": "1"}))
    cluster.save()
    return {"rns_address": cluster.rns_address, "config": cluster.config()}


def load_cluster(step: dict) -> Any:
    cluster = rh.cluster(name=step["name"], dryrun=True)
    return {"rns_address": cluster.rns_address, "type": type(cluster).__name__,
            "ips": cluster.ips, "config": cluster.config(),
            "shared": getattr(cluster, "_is_shared", None)}


def save_ondemand(step: dict) -> Any:
    cluster = rh.ondemand_cluster(name=step["name"], instance_type="CPU:2", provider="aws",
                                  launcher="local", autostop_mins=30, dryrun=True)
    cluster.save()
    return {"rns_address": cluster.rns_address, "config": cluster.config()}


def save_cluster_again(step: dict) -> Any:
    cluster = rh.cluster(name=step["name"], dryrun=True)
    cluster.save()
    return {"rns_address": cluster.rns_address}


def save_secret(step: dict) -> Any:
    secret = rh.secret(name=step["name"], values=step["values"])
    secret.save()
    return {"rns_address": secret.rns_address}


def load_secret(step: dict) -> Any:
    secret = rh.secret(name=step["name"])
    return {"rns_address": secret.rns_address, "values": secret.values}


def save_function(step: dict) -> Any:
    import my_fns

    # The full address up front: a save that changes a function's or module's
    # address renames it on its cluster too, which needs a live cluster.
    fn = rh.function(my_fns.summer, name=_full(step["name"]))
    fn.system = rh.cluster(name=step["system"], dryrun=True)  # what .to() would record
    fn.save()
    return {"rns_address": fn.rns_address, "config": fn.config()}


def load_function(step: dict) -> Any:
    fn = rh.function(name=step["name"])
    return {"rns_address": fn.rns_address, "config": fn.config()}


def save_module(step: dict) -> Any:
    import my_fns

    counter_cls = rh.module(my_fns.Counter, name=_full(step["name"]))
    counter_cls.system = rh.cluster(name=step["system"], dryrun=True)
    counter_cls.save()
    return {"rns_address": counter_cls.rns_address, "config": counter_cls.config()}


def load_module(step: dict) -> Any:
    module = rh.module(name=step["name"])
    return {"rns_address": module.rns_address, "config": module.config()}


def load_config(step: dict) -> Any:
    from runhouse.globals import rns_client

    return rns_client.load_config(step["name"])


def history(step: dict) -> Any:
    return rh.function(name=step["name"]).history() if step.get("kind") == "function" else \
        rh.cluster(name=step["name"], dryrun=True).history()


def exists(step: dict) -> Any:
    return rh.exists(step["name"])


def share(step: dict) -> Any:
    resource = _load(step)
    added, new, valid = resource.share(users=step["users"], access_level=step["level"],
                                       notify_users=False)
    return {"added": added, "new": new, "valid": sorted(valid)}


def revoke(step: dict) -> Any:
    _load(step).revoke(users=step["users"])
    return {}


def delete(step: dict) -> Any:
    from runhouse.globals import rns_client

    rns_client.delete_configs(step["name"])
    return {}


def delete_secret(step: dict) -> Any:
    rh.secret(name=step["name"]).delete()
    return {}


def list_clusters(step: dict) -> Any:
    from runhouse.resources.hardware.utils import get_clusters_from_den

    response = get_clusters_from_den({"all": True}, force=False)
    return {"status": response.status_code, "data": response.json().get("data")}


def _full(name: str) -> str:
    return name if name.startswith("/") else f"/{rh.configs.username}/{name}"


def _load(step: dict) -> Any:
    kind = step.get("kind", "function")
    if kind == "cluster":
        return rh.cluster(name=step["name"], dryrun=True)
    if kind == "secret":
        return rh.secret(name=step["name"])
    return rh.function(name=step["name"])


def main() -> None:
    for step in json.loads(sys.argv[1]):
        try:
            result = {"ok": True, "value": _jsonable(globals()[step["op"]](step))}
        except BaseException as exc:  # noqa: BLE001 - the test asserts on what the client raised
            result = {"ok": False, "error": type(exc).__name__, "message": str(exc)[:2000],
                      "traceback": traceback.format_exc()[-3000:]}
        print("RH_RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
