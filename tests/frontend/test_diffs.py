"""The version pages: the diff is bounded in work whatever the configs look
like, says honestly when it is too large (offering both versions' JSON), and
the versions page opens on the latest change, never a version beside itself."""

from __future__ import annotations

import difflib

import pytest

from frontend import diffs
from registry import services
from tests.factories import ResourceFactory, UserFactory
from tests.frontend.conftest import text_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice():
    return UserFactory(username="alice")


def _resource_with(alice, *configs, name="cfg"):
    resource = ResourceFactory(owner=alice, name=name, config=configs[0])
    for config in configs[1:]:
        resource = services.resource_update_config(actor=alice, resource=resource, config=config)
    return resource


@pytest.fixture
def matcher_work(monkeypatch):
    """Counts the steps difflib's longest-match searches may take (each line
    of ``a`` looked at, times its occurrences in ``b``): the work of a diff,
    measured without a clock."""
    spent = {"steps": 0}
    original = difflib.SequenceMatcher.find_longest_match

    def counting(self, alo=0, ahi=None, blo=0, bhi=None):
        ahi = len(self.a) if ahi is None else ahi
        bhi = len(self.b) if bhi is None else bhi
        spent["steps"] += (ahi - alo) + sum(len(self.b2j.get(line, ())) for line in self.a[alo:ahi])
        return original(self, alo, ahi, blo, bhi)

    monkeypatch.setattr(difflib.SequenceMatcher, "find_longest_match", counting)
    return spent


def test_the_slow_shape_is_bounded(alice, client, matcher_work):
    """The reported case: lines that repeat (0s against alternating 0s and
    1s) made difflib cubic; a 2 KB config took seconds, a 4 KB one twenty."""
    _resource_with(alice, {"x": [0] * 600}, {"x": [0, 1] * 300})
    client.force_login(alice)
    response = client.get("/alice/cfg/-/versions/1?to=2")
    assert response.status_code == 200
    page = text_of(response)
    assert "Too large to diff here" in page or "Version 1 compared with version 2" in page
    assert matcher_work["steps"] <= diffs.MAX_DIFF_WORK


@pytest.mark.parametrize("n", [200, 600, 1400])
def test_every_shape_ends_in_a_diff_or_the_notice_within_the_budget(matcher_work, n):
    for old, new in [
        ({"x": [0] * n}, {"x": [0, 1] * (n // 2)}),
        ({"x": [0, 1] * (n // 2)}, {"x": [0, 0, 1, 1] * (n // 4)}),
        ({"items": [{"v": i % 3} for i in range(n)]}, {"items": [{"v": i % 2} for i in range(n)]}),
    ]:
        matcher_work["steps"] = 0
        diff = diffs.side_by_side(old, new)
        assert diff.too_large or any(row.kind != "same" for row in diff.rows)
        assert matcher_work["steps"] <= diffs.MAX_DIFF_WORK


def test_a_config_too_large_to_diff_offers_both_versions_json(alice, client):
    big = {"blob": ["x" * 100] * 3000}  # about 300 KB
    _resource_with(alice, big, {**big, "more": 1})
    client.force_login(alice)
    response = client.get("/alice/cfg/-/versions/1?to=2")
    page = response.content.decode()
    assert response.status_code == 200
    assert "Too large to diff here" in text_of(response)
    assert 'href="/api/v1/resources/alice/cfg/-/versions/1"' in page
    assert 'href="/api/v1/resources/alice/cfg/-/versions/2"' in page
    assert "Show v1's config" in text_of(response) and "Show v2's config" in text_of(response)


def test_long_similar_configs_diff_with_the_unchanged_runs_folded(alice, client):
    items = [{"name": f"item{i}", "value": i} for i in range(600)]
    changed = [dict(item) for item in items]
    changed[300]["value"] = "changed"
    _resource_with(alice, {"items": items}, {"items": changed})
    client.force_login(alice)
    response = client.get("/alice/cfg/-/versions/1?to=2")
    page = text_of(response)
    assert response.status_code == 200
    assert page.count("unchanged lines") == 2  # before and after the one change
    html = response.content.decode()
    assert html.count('class="diff-changed"') == 1
    assert html.count('class="diff-same"') == 2 * diffs.CONTEXT_LINES


def test_frequent_lines_paired_by_position_are_shown_unchanged():
    old = {"items": [{"name": f"n{i}", "v": i} for i in range(1000)]}
    new = {"items": [{"name": f"n{i}", "v": i + (i % 7 == 0)} for i in range(1000)]}
    diff = diffs.side_by_side(old, new)
    assert not diff.too_large
    changed = [row for row in diff.rows if row.kind == "changed"]
    assert len(changed) == len([i for i in range(1000) if i % 7 == 0])
    assert all(row.old_text != row.new_text for row in changed)


def test_the_current_version_opens_on_its_change_not_beside_itself(alice, client):
    _resource_with(alice, {"v": 1}, {"v": 2}, {"v": 3})
    client.force_login(alice)
    page = text_of(client.get("/alice/cfg/-/versions/3"))
    assert "Version 2 compared with version 3 (current)" in page
    assert "Version 3 compared with version 3" not in page
    assert "Restore version 2" in page
    # Asked for explicitly, a comparison with itself still works.
    assert "the same config" in text_of(client.get("/alice/cfg/-/versions/3?to=3"))
    # An older version is compared with the current one.
    assert "Version 1 compared with version 3 (current)" in text_of(
        client.get("/alice/cfg/-/versions/1"))


def test_a_single_version_is_shown_as_the_first(alice, client):
    _resource_with(alice, {"v": 1})
    client.force_login(alice)
    page = text_of(client.get("/alice/cfg/-/versions/1"))
    assert "It is the first version" in page
    assert "compared with" not in page
