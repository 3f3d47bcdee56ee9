"""The node runtime: built from den's own environment for a target python,
named by its contents, installed into a virtualenv that runs the daemon."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

from compute.backends import BackendError, node_runtime
from compute.backends.node_runtime import Interpreter, build_runtime, install_runtime

SYSTEM_PYTHON = next(p for p in ("/usr/bin/python3", sys.executable) if os.path.exists(p))


@pytest.fixture(scope="module")
def target() -> Interpreter:
    done = subprocess.run(node_runtime.probe_command(SYSTEM_PYTHON), capture_output=True,
                          text=True, check=True, timeout=60)
    return Interpreter.from_probe(SYSTEM_PYTHON, done.stdout)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runtime-cache")


def _names(archive: Path) -> set[str]:
    with tarfile.open(archive) as tar:
        return set(tar.getnames())


def test_a_runtime_holds_the_node_and_what_it_imports(target: Interpreter, cache: Path) -> None:
    built = build_runtime(target, cache)
    names = _names(built.path)
    assert {"den-runtime.json", "site/den/__init__.py", "site/den/node/server.py",
            "site/den/client/session.py", "site/httpx/__init__.py", "site/httpcore/__init__.py",
            "site/cloudpickle/__init__.py"} <= names
    assert not any(n.startswith(("site/den/settings", "site/den/celery", "site/registry",
                                 "site/compute", "site/django")) for n in names)
    assert not any(n.endswith(".pyc") or n.startswith("site/..") for n in names)
    assert {"httpx", "cloudpickle"} <= set(built.packages)
    assert built.path.name == f"den-node-runtime-{built.sha256}.tar.gz"


def test_the_same_contents_make_the_same_archive(target: Interpreter, cache: Path,
                                                 tmp_path: Path) -> None:
    first = build_runtime(target, cache)
    made_at = first.path.stat().st_mtime_ns
    again = build_runtime(target, cache)
    assert again.sha256 == first.sha256 and again.path.stat().st_mtime_ns == made_at  # reused
    elsewhere = build_runtime(target, tmp_path)
    assert elsewhere.path.read_bytes() == first.path.read_bytes()  # reproducible


def test_compiled_extras_go_only_where_they_load(target: Interpreter, cache: Path) -> None:
    if not any(n.endswith(".so") for n in _names(build_runtime(target, cache).path)):
        pytest.skip("den's environment has no compiled extras (uvloop, httptools)")
    other_abi = dataclasses.replace(target, ext_suffixes=(".cpython-399-x86_64-linux-gnu.so",
                                                          ".abi3.so", ".so"))
    built = build_runtime(other_abi, cache)
    assert not any(n.endswith(".so") for n in _names(built.path))
    left = " ".join(built.left_out.values())
    assert "does not load on Python" in left
    assert {"httpx", "cloudpickle"} <= set(built.packages)  # the daemon still runs


def test_too_old_a_python_is_refused(target: Interpreter, cache: Path) -> None:
    old = dataclasses.replace(target, version=(3, 8, 18))
    with pytest.raises(BackendError, match=r"needs Python 3\.9 or newer"):
        build_runtime(old, cache)


def _fake_dist(folder: Path, name: str, requires_python: str) -> None:
    info = folder / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
                                   f"Requires-Python: {requires_python}\n")
    (info / "RECORD").write_text(f"{name}-1.0.dist-info/METADATA,,\n")


def test_a_required_package_that_does_not_fit_says_which_and_why(
        target: Interpreter, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_dist(tmp_path, "den_test_future_only", ">=3.99")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(node_runtime, "REQUIRED", ("httpx", "den_test_future_only"))
    with pytest.raises(BackendError, match=r"den_test_future_only 1\.0 needs Python >=3\.99"):
        build_runtime(target, cache)
    monkeypatch.setattr(node_runtime, "REQUIRED", ("den-test-not-installed",))
    with pytest.raises(BackendError, match="not installed in den's environment"):
        build_runtime(target, cache)
    # An optional one that does not fit is left out, with the reason.
    monkeypatch.setattr(node_runtime, "REQUIRED", ("httpx",))
    monkeypatch.setattr(node_runtime, "OPTIONAL", ("den_test_future_only",))
    built = build_runtime(target, cache)
    assert "needs Python >=3.99" in built.left_out["den_test_future_only"]


def test_an_installed_runtime_runs_the_node(target: Interpreter, cache: Path) -> None:
    built = build_runtime(target, cache)
    root = Path(tempfile.mkdtemp(prefix="den-runtime-test-"))
    try:
        first = install_runtime(built, target, root)
        assert first.fresh and install_runtime(built, target, root) == dataclasses.replace(
            first, fresh=False)
        done = subprocess.run(
            [str(first.python), "-c", "import sys, den.node.server, den.node.worker, httpx, "
             "cloudpickle; print(den.node.server.__file__); print(sys.prefix)"],
            capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"}, cwd="/")
        assert done.returncode == 0, done.stderr
        server_file, prefix = done.stdout.split()
        assert server_file.startswith(str(root)) and prefix.startswith(str(root))
        # Readable by everyone, writable by its owner only; byte code compiled.
        for path in (root, *root.rglob("*")):
            if not path.is_symlink():
                assert not path.stat().st_mode & 0o022, path
        assert any(root.rglob("den/node/__pycache__/server.*.pyc"))
    finally:
        shutil.rmtree(root, ignore_errors=True)
