"""Deleting a cluster resource must not leave its daemon running.

The registry deletes resources without knowing about compute; the cluster's
state row goes with it (cascade), and this receiver hands what the backend
needs to a task that tears the remains down after the deletion commits.
"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete
from django.dispatch import receiver

from compute import services
from compute.models import ClusterState


@receiver(post_delete, sender=ClusterState, dispatch_uid="compute.release_deleted_cluster")
def release_deleted_cluster(sender: Any, instance: ClusterState, **kwargs: Any) -> None:
    services.cluster_release_deleted(state=instance)
