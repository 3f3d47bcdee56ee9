"""Request ids and JSON log lines (``DEN_LOG_FORMAT=json``), read from the
output of den run as production runs it (gunicorn with den's config)."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.ops.conftest import wait_until

pytestmark = pytest.mark.e2e


def json_lines(den) -> list[dict]:
    return [json.loads(line) for line in den.log_text().splitlines() if line.strip()]


@pytest.fixture
def den(make_den, database):
    den = make_den(DATABASE_URL=database.url, DEN_LOG_FORMAT="json", DEN_ACCESS_LOG="-")
    den.start_processes()
    den.seed("alice")
    return den


def test_every_line_of_a_request_carries_its_id(den):
    path = "/api/v1/resources/nobody/thing"
    with den.client("alice", headers={"X-Request-ID": "req-0042.a:b"}) as alice:
        missing = alice.get(path)
    assert missing.status_code == 404
    assert missing.headers["X-Request-ID"] == "req-0042.a:b"

    def lines_of_request() -> list[dict]:
        return [line for line in json_lines(den) if path in line["message"]]

    mine = wait_until(lambda: len(lines_of_request()) >= 2 and lines_of_request(), 10,
                      "the request's log lines")
    assert {line["logger"] for line in mine} >= {"django.request", "gunicorn.access"}
    assert all(line.get("request_id") == "req-0042.a:b" for line in mine), mine
    access = next(line for line in mine if line["logger"] == "gunicorn.access")
    assert access["status"] == 404 and access["method"] == "GET" and access["path"] == path
    assert "Authorization" not in den.log_text() and den.tokens["alice"] not in den.log_text()


def test_ids_are_made_when_missing_or_not_plain(den):
    made = httpx.get(f"{den.url}/livez").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    forged = httpx.get(f"{den.url}/livez", headers={"X-Request-ID": "x\" level=ERROR"})
    assert re.fullmatch(r"[0-9a-f]{32}", forged.headers["X-Request-ID"])
    assert httpx.get(f"{den.url}/livez").headers["X-Request-ID"] != made


def test_the_servers_own_lines_are_json_too(den):
    lines = json_lines(den)  # every line parses, gunicorn's included
    assert any(line["logger"] == "gunicorn.error" and "Booting worker" in line["message"]
               for line in lines), lines[:5]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
