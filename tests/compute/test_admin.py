"""The Django admin: every model of every den app is registered, and the
compute models are shown read-only, with stop and teardown as actions that go
through ``compute.services`` (and so leave their event and audit rows)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import Permission

from compute import services
from compute.models import ClusterEvent, ClusterState
from registry.models import AuditEvent
from tests.factories import ResourceFactory, UserFactory

REPO = Path(__file__).resolve().parents[2]


def den_models():
    """Models of the apps that live in this repository (not Django's or DRF's)."""
    for config in apps.get_app_configs():
        path = Path(config.path).resolve()
        # The virtualenv may live inside the checkout too: only our own folders count.
        if path.is_relative_to(REPO) and "site-packages" not in path.parts:
            yield from config.get_models()


def test_every_den_model_is_in_the_admin():
    models = list(den_models())
    assert ClusterState in models and AuditEvent in models  # the walk finds den's apps
    missing = [model._meta.label for model in models if not admin.site.is_registered(model)]
    assert not missing, f"register these in their app's admin.py: {', '.join(missing)}"


@pytest.fixture
def cluster_state(db):
    alice = UserFactory(username="alice")
    cpu = ResourceFactory(owner=alice, name="cpu", type="cluster", config={"provider": "local"})
    state = ClusterState.objects.create(resource=cpu, status="up", backend="local",
                                        daemon_url="http://127.0.0.1:40000")
    ClusterEvent.objects.create(cluster=state, kind="up", message="The cluster is up.")
    return state


@pytest.fixture
def staff_client(client, db):
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(root)
    return client


def test_compute_rows_are_shown_read_only(staff_client, cluster_state):
    for path in ["/admin/compute/clusterstate/", f"/admin/compute/clusterstate/{cluster_state.pk}/change/",
                 "/admin/compute/clusterevent/",
                 f"/admin/compute/clusterevent/?cluster__id__exact={cluster_state.pk}"]:
        response = staff_client.get(path)
        assert response.status_code == 200, path
    page = staff_client.get(f"/admin/compute/clusterstate/{cluster_state.pk}/change/").content.decode()
    assert 'name="_save"' not in page and "http://127.0.0.1:40000" in page
    assert staff_client.get("/admin/compute/clusterstate/add/").status_code == 403
    assert staff_client.get("/admin/compute/clusterevent/add/").status_code == 403
    assert staff_client.get(
        f"/admin/compute/clusterstate/{cluster_state.pk}/delete/").status_code == 403
    staff_client.post(f"/admin/compute/clusterstate/{cluster_state.pk}/change/",
                      {"status": "down", "daemon_url": ""})
    cluster_state.refresh_from_db()
    assert cluster_state.status == "up" and cluster_state.daemon_url


def test_stop_action_goes_through_the_service(staff_client, cluster_state, monkeypatch):
    sent = []
    monkeypatch.setattr(services, "_enqueue",
                        lambda name, state, *args, **kwargs: sent.append((name, state.pk)))
    response = staff_client.post("/admin/compute/clusterstate/", {
        "action": "request_stop", "_selected_action": [cluster_state.pk],
    }, follow=True)
    assert response.status_code == 200
    assert "Asked to stop 1 cluster." in response.content.decode()
    cluster_state.refresh_from_db()
    assert cluster_state.status == "stopping"
    assert sent == [("cluster_stop", cluster_state.pk)]
    assert AuditEvent.objects.filter(action="cluster.stop", actor_username="root").exists()
    assert ClusterEvent.objects.filter(cluster=cluster_state, kind="stop.requested").exists()


def test_actions_are_for_superusers_only(client, cluster_state):
    staff = UserFactory(username="ops", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_clusterstate"))
    client.force_login(staff)
    page = client.get("/admin/compute/clusterstate/")
    assert page.status_code == 200
    assert "request_stop" not in page.content.decode()
