"""docker-compose.yml is den's production example, kept right by the suite:
it parses, its services are wired as a production den needs, their commands
are ``den/processes.py``'s (which the multi-process tests run), and the image
it builds holds every part of den. No container runs here: this machine has
no container engine, and its docker client no compose plugin, so the file is
checked by parsing it (PyYAML resolves the ``<<`` merges as compose does).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

from den import processes

REPO = Path(__file__).resolve().parents[2]
DEN_SERVICES = ("migrate", "web", "worker", "beat")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_every_service_runs_den_processes_command(compose):
    services = compose["services"]
    assert set(services) == {"postgres", "redis", *DEN_SERVICES}
    expected = {
        "migrate": processes.migrate_command(),
        "web": processes.web_command(bind="0.0.0.0:8000", workers=4, threads=4),
        "worker": processes.worker_command(),
        "beat": processes.beat_command(schedule="/var/lib/den/celerybeat-schedule"),
    }
    for name, argv in expected.items():
        assert services[name]["command"] == argv, name
    dockerfile = (REPO / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (\[.*?\])\s*$", dockerfile, re.M | re.S)
    assert cmd is not None
    assert yaml.safe_load(cmd.group(1).replace("\\\n", "")) == \
        processes.web_command(bind="0.0.0.0:8000")


def test_den_services_share_the_database_redis_and_keys(compose):
    services = compose["services"]
    environments = [services[name]["environment"] for name in DEN_SERVICES]
    assert all(env == environments[0] for env in environments)
    env = environments[0]
    assert env["DATABASE_URL"].startswith("postgres://") and "@postgres:5432/" in env["DATABASE_URL"]
    for name in ("CELERY_BROKER_URL", "REDIS_URL"):
        # Redis requires its password, and den's URLs carry it.
        assert env[name].startswith("redis://:${DEN_REDIS_PASSWORD:?"), name
        assert "@redis:6379/" in env[name]
    assert env["CELERY_BROKER_URL"] != env["REDIS_URL"]
    for name in ("DEN_SECRET_KEY", "DEN_ENCRYPTION_KEY"):
        assert env[name].startswith(f"${{{name}:?"), f"{name} must be required, not generated"
    # Nothing depends on a shared filesystem: no den service mounts a volume.
    assert not any("volumes" in services[name] for name in DEN_SERVICES)


def test_den_services_start_in_order(compose):
    services = compose["services"]
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["migrate"]["restart"] == "no"
    for name in ("web", "worker", "beat"):
        depends = services[name]["depends_on"]
        assert depends["postgres"] == {"condition": "service_healthy"}
        assert depends["redis"] == {"condition": "service_healthy"}
        assert depends["migrate"] == {"condition": "service_completed_successfully"}, name
    for name in ("postgres", "redis", "web"):
        assert services[name]["healthcheck"]["test"], name
    assert "/readyz" in " ".join(services["web"]["healthcheck"]["test"])
    assert services["web"]["ports"] == ["8000:8000"]
    assert "pgdata" in compose["volumes"]


def test_every_variable_it_reads_is_documented(compose):
    text = (REPO / "docker-compose.yml").read_text()
    names = set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)", text))
    documented = set(re.findall(r"^#?\s*([A-Z_][A-Z0-9_]*)=", (REPO / ".env.example").read_text(),
                                re.M))
    assert names, "no variables found"
    assert names <= documented, f"not in .env.example: {sorted(names - documented)}"


def test_the_image_holds_every_part_of_den():
    dockerfile = (REPO / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\S+) \1\s*$", dockerfile, re.M))
    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in include}
    assert packages <= copied, f"the image leaves out {sorted(packages - copied)}"
    assert re.search(r"^COPY manage\.py", dockerfile, re.M)
    assert "postgresql-client" in dockerfile  # pg_dump / pg_restore for backups
    assert "collectstatic" in dockerfile
    assert re.search(r"^USER den$", dockerfile, re.M)
