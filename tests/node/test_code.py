"""Code bundles: building them on the caller's side and running code from them."""

from __future__ import annotations

import hashlib
import io
import tarfile
import textwrap
from pathlib import Path

import httpx
import pytest

from den.node.bundle import bundle_project, project_files
from den.node.caller import NodeClient
from den.node.errors import BadRequest, BundleTooLarge


def make_project(root: Path, greeting: str = "hello") -> Path:
    pkg = root / "mypkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "greet.py").write_text(textwrap.dedent(f"""
        import os

        GREETING = {greeting!r}

        def greet(name):
            return f"{{GREETING}}, {{name}}"

        class Greeter:
            def __init__(self, punct="!"):
                self.punct = punct

            def greet(self, name):
                return greet(name) + self.punct

        def cwd_file():
            return os.path.basename(__file__)
    """))
    (root / ".gitignore").write_text("data/\n*.log\n/build\n!keep.log\n")
    (root / "data").mkdir()
    (root / "data" / "big.bin").write_bytes(b"x" * 1000)
    (root / "run.log").write_text("noise")
    (root / "keep.log").write_text("kept")
    (root / "build").mkdir()
    (root / "build" / "out.txt").write_text("built")
    (root / "sub").mkdir()
    (root / "sub" / "build").mkdir()
    (root / "sub" / "build" / "x.txt").write_text("not anchored: kept")
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref")
    (root / ".venv").mkdir()
    (root / ".venv" / "pyvenv.cfg").write_text("")
    return root


def test_bundle_respects_gitignore(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj")
    names = [rel for rel, _ in project_files(root)]
    assert names == [".gitignore", "keep.log", "mypkg/__init__.py", "mypkg/greet.py",
                     "sub/build/x.txt"]
    sha, data = bundle_project(root)
    assert hashlib.sha256(data).hexdigest() == sha
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        assert sorted(tf.getnames()) == sorted(names)


def test_bundle_is_deterministic(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj")
    first = bundle_project(root)
    (root / "mypkg" / "greet.py").touch()
    assert bundle_project(root) == first
    (root / "mypkg" / "extra.py").write_text("x = 1\n")
    assert bundle_project(root)[0] != first[0]


def test_bundle_size_cap_names_biggest_files(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj")
    (root / "weights.bin").write_bytes(b"\0" * 300_000)
    (root / "mypkg" / "table.csv").write_bytes(b"1" * 200_000)
    with pytest.raises(BundleTooLarge) as info:
        bundle_project(root, max_bytes=100_000)
    message = str(info.value)
    assert "weights.bin (0.3 MB)" in message
    assert message.index("weights.bin") < message.index("mypkg/table.csv")
    assert ".gitignore" in message


def test_function_and_module_from_code_bundle(node: NodeClient, tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj", greeting="bonjour")
    sha = node.sync_code(root)
    assert node.has_code(sha)
    node.put_function("greet", code=sha, pointers={"module": "mypkg.greet", "qualname": "greet"})
    assert node.call("greet", args=("ada",)) == "bonjour, ada"
    node.put_module("greeter", code=sha,
                    pointers={"module": "mypkg.greet", "qualname": "Greeter"},
                    init_kwargs={"punct": "?"})
    assert node.call("greeter", "greet", args=("bob",)) == "bonjour, bob?"

    # A new version of the code replaces the old module in the worker.
    root2 = make_project(tmp_path / "proj2", greeting="hallo")
    sha2 = node.sync_code(root2)
    assert sha2 != sha
    node.put_function("greet", code=sha2, pointers={"module": "mypkg.greet", "qualname": "greet"})
    assert node.call("greet", args=("ada",)) == "hallo, ada"


def test_code_upload_is_idempotent_and_verified(node: NodeClient, daemon) -> None:
    root = make_project(Path(daemon.log_path).parent / "proj-idem")
    sha, data = bundle_project(root)
    assert node.has_code(sha) is False
    assert node.put_code(sha, data) is True
    assert node.put_code(sha, data) is False
    resp = httpx.put(f"{daemon.url}/code/{'0' * 64}", content=data)
    assert resp.status_code == 400
    assert "sha256" in resp.json()["error"]["message"]
    with pytest.raises(BadRequest, match="PUT /code"):
        node.put_function("ghost", code="1" * 64,
                          pointers={"module": "mypkg.greet", "qualname": "greet"})


def test_zip_bundle(node: NodeClient, daemon, tmp_path: Path) -> None:
    import zipfile

    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w") as zf:
        zf.writestr("zipped_mod.py", "def answer():\n    return 42\n")
    data = raw.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    assert node.put_code(sha, data)
    node.put_function("answer", code=sha, pointers={"module": "zipped_mod", "qualname": "answer"})
    assert node.call("answer") == 42


def test_import_error_on_put_is_reported(node: NodeClient, tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj")
    sha = node.sync_code(root)
    with pytest.raises(ModuleNotFoundError, match="no_such_module"):
        node.put_function("broken", code=sha,
                          pointers={"module": "no_such_module", "qualname": "f"})
