"""The Content-Security-Policy header, and templates that need no exception to it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TEMPLATE_DIRS = [REPO / "frontend" / "templates", REPO / "registry" / "templates"]
#: What the policy (script-src 'self'; style-src 'self') refuses in markup.
INLINE = {
    "inline script": re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I),
    "inline style element": re.compile(r"<style\b", re.I),
    "style attribute": re.compile(r"\sstyle\s*=", re.I),
    "event handler attribute": re.compile(r"\son[a-z]+\s*=", re.I),
    "javascript: URL": re.compile(r"javascript:", re.I),
}


def test_templates_have_no_inline_code():
    found = []
    for folder in TEMPLATE_DIRS:
        for path in sorted(folder.rglob("*.html")):
            text = path.read_text()
            for what, pattern in INLINE.items():
                for match in pattern.finditer(text):
                    line = text.count("\n", 0, match.start()) + 1
                    found.append(f"{path.relative_to(REPO)}:{line}: {what}")
    assert not found, "\n".join(found)


@pytest.mark.django_db
def test_html_pages_carry_the_policy_and_json_does_not_need_it(client, settings):
    page = client.get("/login")
    policy = page["Content-Security-Policy"]
    assert policy == settings.DEN_CSP
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "Content-Security-Policy" in client.get("/api/docs/")
    assert "Content-Security-Policy" not in client.get("/api/v1/me")  # JSON, not a page
    assert "Content-Security-Policy" in client.get("/no/such/page")
