"""``/metrics``: Prometheus figures from every web process, the database's
den-wide figures, Celery tasks run by a real worker, and who may scrape.

den runs as production runs it (``den.processes``: gunicorn with two worker
processes, a Celery worker), on a database of its own and a Redis of the
test's own.
"""

from __future__ import annotations

import json

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.ops.conftest import wait_until

pytestmark = pytest.mark.e2e

CLUSTERS = """
from compute.models import ClusterState
from django.contrib.auth import get_user_model
from django.utils import timezone
from registry import services
alice = get_user_model().objects.get(username="alice")
for name, status, calls in (("a", "up", 3), ("b", "up", 2), ("c", "stopped", 0)):
    resource = services.resource_create(actor=alice, name=name, type="cluster",
                                        config={"provider": "local"})
    ClusterState.objects.update_or_create(resource=resource, defaults={
        "status": status, "calls_in_flight": calls, "last_heartbeat_at": timezone.now()})
"""

ENQUEUE = """
from ops.logs import request_id_var
from compute.tasks import sweep_clusters
request_id_var.set("req-from-a-request")
sweep_clusters.delay()
"""


def scrape(url: str, **headers: str) -> dict[tuple[str, tuple], float]:
    """One scrape on a connection of its own: (sample name, labels) -> value."""
    response = httpx.get(f"{url}/metrics", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def den(make_den, database, redis_server):
    den = make_den(workers=2, DATABASE_URL=database.url, REDIS_URL=f"{redis_server.url}/0",
                   CELERY_BROKER_URL=f"{redis_server.url}/1", DEN_LOG_FORMAT="json")
    den.start_processes()
    den.seed("alice")
    return den


def test_request_figures_add_up_over_every_web_process(den):
    headers = {"Authorization": f"Bearer {den.tokens['alice']}"}
    for _ in range(30):  # a connection each, so both processes answer some
        assert httpx.get(f"{den.url}/api/v1/me", headers=headers).status_code == 200
    missing = httpx.get(f"{den.url}/api/v1/resources/alice/private-name", headers=headers)
    assert missing.status_code == 404
    for _ in range(6):  # whichever process answers the scrape sees all 30
        samples = scrape(den.url)
        assert value(samples, "den_http_requests_total", method="GET", route="api/v1/me",
                     status="200") == 30
        assert value(samples, "den_http_request_duration_seconds_count", method="GET",
                     route="api/v1/me") == 30
        assert value(samples, "den_http_requests_in_flight") == 1  # this scrape
    labels = {v for _, pairs in samples for _, v in pairs}
    assert not any("private-name" in label for label in labels), "a path became a label"
    assert value(samples, "den_database_up") == 1


def test_clusters_calls_and_tasks_are_den_wide(den):
    den.manage("shell", "-c", CLUSTERS)
    samples = scrape(den.url)
    assert value(samples, "den_clusters", status="up") == 2
    assert value(samples, "den_clusters", status="stopped") == 1
    assert value(samples, "den_clusters", status="failed") == 0
    assert value(samples, "den_cluster_calls_in_flight") == 5

    den.start_worker()
    den.manage("shell", "-c", ENQUEUE)
    sweep = {"task": "compute.sweep_clusters", "outcome": "succeeded"}

    def swept() -> float | None:
        return value(scrape(den.url), "den_celery_task_duration_seconds_count", **sweep)

    wait_until(swept, 60, "the worker's sweep to show in /metrics", interval=0.5)
    samples = scrape(den.url)
    assert value(samples, "den_celery_task_duration_seconds_bucket", le="+Inf", **sweep) == \
        value(samples, "den_celery_task_duration_seconds_count", **sweep)
    assert value(samples, "den_celery_task_duration_seconds_sum", **sweep) > 0
    # The task logs the id of the request (here: of the shell) that enqueued it.
    lines = [json.loads(line) for line in
             den.log.with_name("worker-w1.log").read_text().splitlines() if line.startswith("{")]
    assert any(line.get("request_id") == "req-from-a-request"
               and "compute.sweep_clusters" in line["message"] for line in lines), lines[-5:]


def test_an_anonymous_scrape_from_outside_the_allow_list_is_refused(make_den):
    den = make_den(DEN_METRICS_ALLOW="10.0.0.0/8", DEN_METRICS_TOKEN="scrape-secret-1")
    den.start()  # embedded defaults: SQLite, no broker server
    refused = httpx.get(f"{den.url}/metrics")
    assert refused.status_code == 403
    assert "DEN_METRICS_ALLOW" in refused.json()["error"]["message"]
    assert "den_http" not in refused.text
    wrong = httpx.get(f"{den.url}/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    samples = scrape(den.url, Authorization="Bearer scrape-secret-1")
    assert value(samples, "den_http_requests_total", method="GET", route="metrics",
                 status="403") == 1
    assert value(samples, "den_database_up") == 1


def test_a_scrape_through_a_proxy_den_does_not_know_is_refused(make_den):
    """With no proxy configured (DEN_NUM_PROXIES=0), a request that carries
    X-Forwarded-For came through one anyway: loopback is then the proxy's
    address, not the scraper's."""
    den = make_den().start()
    assert httpx.get(f"{den.url}/metrics").status_code == 200  # loopback, by default
    forwarded = httpx.get(f"{den.url}/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert forwarded.status_code == 403
