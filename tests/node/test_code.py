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


GITIGNORED_TREE = {
    ".gitignore": "*.py[cod]\n*.log\n!keep.log\n/build\ndata/\ndocs/**/*.tmp\n\\#notes\n*.bak\n"
                  "report-[0-9].txt\n",
    "mod.py": "", "mod.pyd": "", "run.log": "", "keep.log": "", "build/out.txt": "",
    "sub/build/x.txt": "", "data/a.bin": "", "sub/data/b.bin": "", "docs/a/b/c.tmp": "",
    "docs/c.tmp": "", "docs/c.txt": "", "#notes": "", "a.bak": "", "t.csv": "",
    "report-1.txt": "", "report-x.txt": "",
    "sub/.gitignore": "!a.bak\n*.csv\n", "sub/a.bak": "", "sub/t.csv": "",
}
GIT_KEEPS = [".gitignore", "docs/c.txt", "keep.log", "mod.py", "report-x.txt",
             "sub/.gitignore", "sub/a.bak", "sub/build/x.txt", "t.csv"]


def test_gitignore_is_matched_with_git_rules(tmp_path: Path) -> None:
    """Character classes (``*.py[cod]``), ``**``, escapes, anchoring, directory
    patterns and a nested .gitignore that overrides its parent, as git reads them."""
    root = tmp_path / "proj"
    for rel, text in GITIGNORED_TREE.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    names = [rel for rel, _ in project_files(root)]
    assert names == GIT_KEEPS
    import shutil

    if shutil.which("git"):  # and git itself agrees
        import subprocess

        subprocess.run(["git", "init", "-q", str(root)], check=True)
        out = subprocess.run(["git", "-C", str(root), "ls-files", "--others",
                              "--exclude-standard"], capture_output=True, text=True, check=True)
        assert sorted(out.stdout.split()) == GIT_KEEPS


def test_import_den_does_not_import_pathspec() -> None:
    import subprocess
    import sys

    code = ("import sys, den, den.node.caller, den.client.remote; "
            "print('pathspec' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"


def test_zip_paths_are_checked_as_paths_not_string_prefixes(tmp_path: Path) -> None:
    """``/x/code/abc-evil`` starts with the string ``/x/code/abc`` but is not inside it."""
    import zipfile

    from den.node.runtime import _extract_bundle

    dest = tmp_path / "code" / "abc"
    dest.mkdir(parents=True)
    for member in ("../abc-evil/pwned.py", "../abc/../abc-evil/x.py", "/etc/pwned.py"):
        raw = io.BytesIO()
        with zipfile.ZipFile(raw, "w") as zf:
            zf.writestr("ok.py", "")
            zf.writestr(member, "print('escaped')\n")
        with pytest.raises(ValueError, match="unsafe path in bundle"):
            _extract_bundle(raw.getvalue(), dest)
    assert list(dest.iterdir()) == [] and not (tmp_path / "code" / "abc-evil").exists()


def test_a_zip_that_escapes_is_refused_by_the_daemon(node: NodeClient, daemon) -> None:
    import zipfile

    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w") as zf:
        zf.writestr("../../escape.py", "")
    data = raw.getvalue()
    resp = httpx.put(f"{daemon.url}/code/{hashlib.sha256(data).hexdigest()}", content=data)
    assert resp.status_code == 400
    assert "unsafe path in bundle" in resp.json()["error"]["message"]


@pytest.mark.parametrize("field,value", [
    ("address", "/alice/train\n"),
    ("address", "/alice\n/train"),
    ("code", "a" * 64 + "\n"),
])
def test_put_spec_fields_match_whole(field: str, value: str) -> None:
    """A trailing newline must not slip past a `$`-anchored check."""
    from den.node.runtime import RequestError, _parse_put

    spec = {"kind": "function", "env": "base", "pointers": {"module": "m", "qualname": "f"},
            "code": "a" * 64, field: value}
    with pytest.raises(RequestError) as refused:
        _parse_put(spec)
    assert refused.value.extra.get("field") == field
