"""Cluster runtime state and its event log, one module per concept."""

from compute.models.clusters import ClusterState, ClusterStatus
from compute.models.deployments import Deployment
from compute.models.events import ClusterEvent

__all__ = ["ClusterEvent", "ClusterState", "ClusterStatus", "Deployment"]
