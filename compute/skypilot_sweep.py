"""The SkyPilot sweep: SkyPilot's view of den's clusters against den's own.

A beat task (``compute.sweep_skypilot``, every ``DEN_SKYPILOT_SWEEP_SECONDS``)
asks SkyPilot for every cluster (``sky.status``) and looks at those whose
name carries den's prefix (``DEN_SKYPILOT_CLUSTER_PREFIX``, then the
cluster's id):

- **Orphans**: a cluster den launched whose den record is gone, or that den
  holds as down, terminated or failed, is still billed. With
  ``DEN_SKYPILOT_ORPHANS=teardown`` (the default) den sends ``sky.down``;
  with ``flag`` it leaves it and tells an administrator (an audit row, once
  a day per cluster, and a warning in the logs). Either way it is recorded:
  an instance billed and unknown to den is the failure ruled out here.
- **Drift**: a cluster den holds as ``up`` that SkyPilot shows stopped or no
  longer has (stopped or deleted outside den, a spot instance reclaimed) gets
  an event saying so, and den stops or tears down its side through the usual
  request, so its status follows; one den holds as stopped that SkyPilot
  shows running gets an event (it is billed).

Clusters with a request under way (starting, stopping, tearing down) are left
to it. Every action is idempotent (a second ``sky.down`` of a cluster on its
way down does nothing), so overlapping sweeps are harmless.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from compute.backends import BackendError, skypilot
from compute.models import ClusterEvent, ClusterState, ClusterStatus
from registry.models import AuditEvent
from registry.services import audit_record

if TYPE_CHECKING:
    from compute.backends.skypilot_adapter import Adapter, SkyCluster

logger = logging.getLogger(__name__)
S = ClusterStatus
#: den statuses in which SkyPilot should have no machines for the cluster.
_RELEASED = (S.DOWN, S.TERMINATED, S.FAILED)
#: A failed start's own ``sky.down`` gets this long before the sweep steps in.
_GRACE = timedelta(minutes=2)


def cluster_sweep_skypilot(*, sky: Adapter | None = None) -> dict[str, int]:
    """One sweep; returns what it did (``orphans``, ``flagged``, ``drift``)."""
    from compute.backends.skypilot_adapter import SkyError

    counts = {"orphans": 0, "flagged": 0, "drift": 0}
    tracked = ClusterState.objects.filter(backend="skypilot")
    if sky is None and not (tracked.exists() or AuditEvent.objects.filter(
            action="cluster.up", data__backend="skypilot").exists()):
        # This den never launched a cloud cluster: do not make SkyPilot start
        # a local API server (1-2 GB) just to list nothing.
        return counts
    try:
        sky = sky or skypilot.adapter()
    except BackendError as exc:  # SkyPilot is not installed: nothing of den's can be there
        if tracked.exists():
            logger.warning("SkyPilot sweep: %s", exc)
        return counts
    try:
        clusters = sky.clusters()
    except SkyError as exc:
        logger.warning("SkyPilot sweep: could not list clusters: %s", exc)
        return counts
    ours = {c.name: c for c in clusters if skypilot.cluster_key_of(c.name)}
    keys = {int(str(skypilot.cluster_key_of(name))): name for name in ours}
    states = {s.resource_id: s for s in ClusterState.objects.filter(
        resource_id__in=list(keys)).select_related("resource__owner")}
    now = timezone.now()
    for key, name in keys.items():
        state = states.get(key)
        cluster = ours[name]
        if state is None or state.backend != "skypilot" or (
                state.status in _RELEASED and state.status_changed_at < now - _GRACE):
            counts[_orphan(sky, cluster, state)] += 1
        elif state.status == S.UP and cluster.status == "STOPPED":
            counts["drift"] += _drift(state, cluster, gone=False)
        elif state.status == S.STOPPED and cluster.status == "UP":
            counts["drift"] += _drift_billed(state, cluster)
    for state in tracked.filter(status=S.UP).select_related("resource__owner"):
        if skypilot.cluster_name(str(state.resource_id)) not in ours:
            counts["drift"] += _drift(state, None, gone=True)
    if any(counts.values()):
        logger.info("SkyPilot sweep: %s", counts)
    return counts


def _orphan(sky: Adapter, cluster: SkyCluster, state: ClusterState | None) -> str:
    """Tear down (or flag) a cluster den launched and no longer tracks."""
    from compute.backends.skypilot_adapter import SkyError
    from compute.services import event_record

    resource = state.resource if state is not None else None
    facts: dict[str, Any] = {"sky_cluster": cluster.name, "sky_status": cluster.status,
                             "den_status": state.status if state is not None else "deleted",
                             "instance_type": cluster.instance_type,
                             "region": cluster.region, "hourly_price": cluster.hourly_price}
    if settings.DEN_SKYPILOT_ORPHANS == "flag":
        recent = AuditEvent.objects.filter(
            action="cluster.orphan.flagged", data__sky_cluster=cluster.name,
            created_at__gte=timezone.now() - timedelta(days=1)).exists()
        if not recent:
            logger.warning("SkyPilot cluster %s was launched by den, which no longer tracks "
                           "it; tear it down (sky down %s) or set DEN_SKYPILOT_ORPHANS="
                           "teardown.", cluster.name, cluster.name)
            audit_record(actor=None, action="cluster.orphan.flagged", resource=resource,
                         **({} if resource else {"address": cluster.name}), **facts)
        return "flagged"
    try:
        under_way = sky.unfinished_requests(cluster.name)
        if any(what.endswith("down") for what in under_way.values()):
            return "orphans"
        request_id = sky.down(cluster.name)
    except SkyError as exc:
        logger.warning("SkyPilot sweep: could not tear down orphan %s: %s", cluster.name, exc)
        return "orphans"
    logger.warning("SkyPilot sweep: tearing down %s, which den launched and no longer "
                   "tracks.", cluster.name)
    with transaction.atomic():
        audit_record(actor=None, action="cluster.orphan.teardown", resource=resource,
                     **({} if resource else {"address": cluster.name}), request_id=request_id,
                     **facts)
        if state is not None:
            event_record(state=state, kind="orphan.teardown", message=(
                "SkyPilot still had machines for this cluster, which den holds as "
                f"{state.status}; den asked SkyPilot to tear them down."),
                request_id=request_id, sky_cluster=cluster.name)
    return "orphans"


def _drift(state: ClusterState, cluster: SkyCluster | None, *, gone: bool) -> int:
    """den holds the cluster up; SkyPilot has it stopped, or not at all."""
    from compute import services

    resource = state.resource
    if gone:
        message = ("SkyPilot no longer has this cluster (deleted outside den, or its spot "
                   "instances reclaimed); den is tearing down its side.")
    else:
        message = ("SkyPilot shows this cluster stopped (stopped outside den, or by "
                   "SkyPilot's autostop); den is stopping its side.")
    with transaction.atomic():
        current = ClusterState.objects.select_for_update().filter(
            id=state.pk, status=S.UP, request_seq=state.request_seq).first()
        if current is None:
            return 0
        services.event_record(state=state, kind="drift", message=message,
                              sky_status=cluster.status if cluster else "missing")
        audit_record(actor=None, action="cluster.drift", resource=resource,
                     sky_status=cluster.status if cluster else "missing")
    if gone:
        services.cluster_request_teardown(actor=None, resource=resource)
    else:
        services.cluster_request_stop(actor=None, resource=resource)
    return 1


def _drift_billed(state: ClusterState, cluster: SkyCluster) -> int:
    """den holds the cluster stopped, SkyPilot shows it running: say so (once a day)."""
    from compute.services import event_record

    if ClusterEvent.objects.filter(cluster=state, kind="drift.billed",
                                   created_at__gte=timezone.now() - timedelta(days=1)).exists():
        return 0
    event_record(state=state, kind="drift.billed", message=(
        "SkyPilot shows this cluster's machines running, and billed, while den holds it "
        "stopped; stop it again, or bring it up to use it."), sky_status=cluster.status)
    return 1
