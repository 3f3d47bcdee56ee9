"""``den cluster status``: a cluster's runtime, and for a cloud cluster what it costs."""

from __future__ import annotations

import argparse
from typing import Any

from den.cli.base import EXIT_OK, Commands, Output, address_of, cell, session_for
from den.client import api
from den.client.session import run


def _uptime(seconds: Any) -> str:
    if not isinstance(seconds, int):
        return "-"
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h {rest // 60} min" if hours else f"{rest // 60} min {rest % 60} s"


def cost_lines(cost: dict[str, Any] | None) -> list[tuple[str, str]]:
    """A cloud cluster's cost facts (instance type, where, spot, hourly price,
    uptime), as (label, text); none for clusters without a cloud bill."""
    if not cost:
        return []
    price = cost.get("hourly_price")
    where = " / ".join(str(cost[k]) for k in ("cloud", "region", "zone") if cost.get(k))
    nodes = cost.get("num_nodes") or 1
    return [
        ("instance type", f"{cost.get('instance_type') or '-'}"
                          f"{f' ({nodes} nodes)' if nodes > 1 else ''}"),
        ("where", where or "-"),
        ("spot", cell(bool(cost.get("use_spot")), "use_spot")),
        ("hourly price", f"${price:.2f}" if isinstance(price, (int, float))
         else "unknown"),
        ("uptime", _uptime(cost.get("uptime_seconds"))),
    ]


def cmd_cluster_status(args: argparse.Namespace, out: Output) -> int:
    """den cluster status: where a cluster is, its daemon, autostop, and its cost."""
    session = session_for(args)
    address = address_of(session, args.address)
    status = run(api.cluster_status(address), session)
    out.json(status)
    out.line(f"{status.get('address') or address}  {status.get('status')}")
    lines = [
        ("backend", cell(status.get("backend"), "backend")),
        ("since", cell(status.get("status_changed_at"), "status_changed_at")),
        ("daemon", cell(status.get("daemon_url"), "daemon_url")),
        ("nodes", str(len(status.get("nodes") or []))),
        ("autostop", "never" if (status.get("autostop_mins") or -1) <= 0
         else f"{status['autostop_mins']} idle min"),
        *cost_lines(status.get("cost")),
    ]
    if status.get("stop_tears_down"):
        lines.append(("stop", "tears it down (its infrastructure cannot stop machines)"))
    if status.get("message"):
        lines.append(("message", str(status["message"])))
    for label, text in lines:
        out.line(f"  {label + ':':<15}{text}")
    return EXIT_OK


def register(commands: Commands) -> None:
    """Add ``den cluster``."""
    cluster = commands.group("cluster", "clusters: their status and cost")
    status = cluster.add("status", cmd_cluster_status,
                         "a cluster's status, daemon, autostop and (clouds) cost")
    status.add_argument("address", help="address (/alice/gpu, ~/gpu) or page URL")
