"""den installs by its own name, from a wheel of this repository alone.

The name ``den`` on the package index belongs to an unrelated project, so
den's distribution is ``den-ml``; the import stays ``import den`` and the
command ``den``. These tests build the wheel, install it into a fresh
virtualenv with only its base dependencies, and run the client there; and
they resolve every install line of the README against that wheel, extras
included (``--find-links`` points pip at the wheel, everything else comes
from the package index as it would for a user).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DIST = "den-ml"
#: Generous: a wheel build and an install resolve packages through pip.
PIP_TIMEOUT = 600


def _run(*args: str | Path, cwd: Path | None = None, timeout: float = PIP_TIMEOUT
         ) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{args}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """``pip wheel --no-deps .``: the distribution as a user would get it."""
    # From a copy of the source, as a fresh clone would be: setuptools builds
    # in the source tree (build/), where a file since removed would linger.
    source = tmp_path_factory.mktemp("source") / "den"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "artifacts", ".*_cache"))
    out = tmp_path_factory.mktemp("wheel")
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", out, source)
    wheels = list(out.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory, wheel) -> Path:
    """A fresh virtualenv with the wheel and its base dependencies only."""
    home = tmp_path_factory.mktemp("venv") / "env"
    venv.EnvBuilder(with_pip=True).create(home)
    _run(home / "bin" / "python", "-m", "pip", "install", "--quiet", wheel)
    return home


def test_the_distribution_name_is_not_den():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["name"] == DIST
    assert project["scripts"]["den"] == "den.cli:main"
    # The dev extra refers to the distribution by its name.
    assert any(req.startswith(f"{DIST}[") for req in project["optional-dependencies"]["dev"])


def test_the_wheel_installs_the_client_without_django(client_venv, wheel):
    assert wheel.name.startswith("den_ml-")
    python = client_venv / "bin" / "python"
    shown = _run(python, "-m", "pip", "show", DIST).stdout
    assert f"Name: {DIST}" in shown
    help_text = _run(client_venv / "bin" / "den", "--help", timeout=60).stdout
    assert "login" in help_text and "usage" in help_text.lower()
    probe = ("import den, importlib.util, json, sys; "
             "print(json.dumps({'file': den.__file__, 'version': den.__version__, "
             "'django': importlib.util.find_spec('django') is not None, "
             "'celery': importlib.util.find_spec('celery') is not None, "
             "'loaded': sorted(m for m in sys.modules if m.split('.')[0] in "
             "('django', 'celery', 'rest_framework'))}))")
    found = json.loads(_run(python, "-c", probe, cwd=client_venv, timeout=60).stdout)
    assert str(client_venv) in found["file"], found  # the installed copy, not the checkout
    assert found["version"]
    assert found == {**found, "django": False, "celery": False, "loaded": []}


def _readme_install_specs() -> list[str]:
    """What the README tells people to ``pip install`` (quotes removed)."""
    text = (REPO / "README.md").read_text()
    specs = []
    for match in re.finditer(r"pip install (-e )?(\"[^\"]+\"|'[^']+'|[^\s`|)]+)", text):
        specs.append(match.group(2).strip("\"'"))
    return specs


def test_the_readme_installs_den_by_its_name():
    specs = _readme_install_specs()
    assert specs, "the README has no install line"
    wrong = [s for s in specs if re.fullmatch(r"den(\[.*\])?", s)]
    assert not wrong, f"the README still says `pip install den...`: {wrong}"
    named = {s for s in specs if s.startswith(DIST)}
    assert {DIST, f"{DIST}[server]", f"{DIST}[node]"} <= named, named


def test_every_readme_install_line_resolves(tmp_path, wheel):
    """Each README line (with the wheel offered through --find-links) resolves,
    extras included; only the server extra brings Django."""
    for spec in sorted(set(_readme_install_specs())):
        if not spec.startswith(DIST):
            # From a checkout: `pip install .` and the dev extra, resolved here.
            assert spec in (".", ".[dev]"), f"an install line den does not check: {spec}"
            if spec == ".[dev]":
                continue  # scripts/test installs it on every run
        report = tmp_path / "report.json"
        _run(sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
             "--quiet", "--find-links", wheel.parent, "--report", report, spec, cwd=REPO)
        installed = {item["metadata"]["name"].lower()
                     for item in json.loads(report.read_text())["install"]}
        assert DIST in installed, (spec, installed)
        assert ("django" in installed) == ("[server" in spec), (spec, sorted(installed))
        if "[node]" in spec:
            assert {"uvloop", "httptools"} <= installed, (spec, sorted(installed))
