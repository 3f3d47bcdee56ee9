"""Cluster routes, under a cluster resource's ``/-/cluster``. Included before
the registry's API routes in ``den/urls.py``."""

from django.urls import re_path

from compute.api import views
from registry.api.urls import ADDRESS

CLUSTER = rf"^resources/{ADDRESS}/-/cluster"

urlpatterns = [
    re_path(rf"{CLUSTER}$", views.ClusterView.as_view(), name="cluster-status"),
    re_path(rf"{CLUSTER}/up$", views.ClusterActionView.as_view(cluster_action="up"),
            name="cluster-up"),
    re_path(rf"{CLUSTER}/stop$", views.ClusterActionView.as_view(cluster_action="stop"),
            name="cluster-stop"),
    re_path(rf"{CLUSTER}/teardown$",
            views.ClusterActionView.as_view(cluster_action="teardown"), name="cluster-teardown"),
    re_path(rf"{CLUSTER}/autostop$", views.ClusterAutostopView.as_view(),
            name="cluster-autostop"),
    re_path(rf"{CLUSTER}/events$", views.ClusterEventsView.as_view(), name="cluster-events"),
    re_path(rf"{CLUSTER}/forget-host-key$", views.ClusterForgetHostKeyView.as_view(),
            name="cluster-forget-host-key"),
    re_path(rf"{CLUSTER}/probe$", views.ClusterProbeView.as_view(), name="cluster-probe"),
    re_path(rf"^resources/{ADDRESS}/-/deployment$", views.DeploymentView.as_view(),
            name="deployment"),
    re_path(rf"^resources/{ADDRESS}/-/deployment/code$", views.DeploymentCodeView.as_view(),
            name="deployment-code"),
    re_path(rf"{CLUSTER}/heartbeat$", views.ClusterHeartbeatView.as_view(),
            name="cluster-heartbeat"),
]
