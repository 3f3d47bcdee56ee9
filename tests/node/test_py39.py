"""The node daemon, and the client modules it imports, run on Python 3.9: a
cluster's system ``python3`` may be that old, while den itself needs 3.11.

There is no 3.9 interpreter here, so three checks stand in for one, over
exactly the files a node runtime ships: vermin (which knows the first version
of every module, function and syntax it sees), Python's own parser with the 3.9
grammar, and a search for ``X | Y`` of types evaluated at run time (a
``TypeError`` before 3.10, which vermin cannot tell from a bitwise or).
Annotations are not evaluated (every module starts with ``from __future__
import annotations``), so they may use newer forms.
"""

from __future__ import annotations

import ast
import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from compute.backends import node_runtime
from compute.backends.node_runtime import MIN_PYTHON, den_source_files
from den.node.runtime import _extract_bundle

FILES = sorted(path for _, path in den_source_files())
TARGET = "{}.{}".format(*MIN_PYTHON)
_BUILTIN_TYPES = {"bool", "bytearray", "bytes", "complex", "dict", "float", "frozenset", "int",
                  "list", "memoryview", "object", "set", "str", "tuple", "type"}


def test_the_runtime_ships_the_node_and_the_client_only() -> None:
    names = {rel for rel, _ in den_source_files()}
    assert {"den/__init__.py", "den/node/server.py", "den/node/worker.py",
            "den/client/session.py"} <= names
    assert not any(name.startswith(("den/settings", "den/celery", "den/urls", "den/wsgi"))
                   for name in names)


@pytest.fixture(scope="module")
def scripts(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The scripts den runs with a host's own python (to describe it, to install a runtime)."""
    folder = tmp_path_factory.mktemp("scripts")
    made = []
    for name in ("PROBE_SOURCE", "INSTALL_SOURCE"):
        path = folder / f"{name.lower()}.py"
        path.write_text(getattr(node_runtime, name))
        made.append(path)
    return made


def test_vermin_finds_nothing_newer_than_3_9(scripts: list[Path]) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "vermin"), f"--target={TARGET}-", "--violations", "--no-tips",
         "--backport", "typing", "--backport", "dataclasses", "--backport", "asyncio",
         "--backport", "argparse", "--backport", "contextvars", "--backport", "importlib",
         *map(str, FILES), *map(str, scripts)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_parses_with_the_3_9_grammar(path: Path) -> None:
    ast.parse(path.read_text(), filename=str(path), feature_version=MIN_PYTHON)


def test_the_host_scripts_parse_with_the_3_9_grammar(scripts: list[Path]) -> None:
    for path in scripts:
        ast.parse(path.read_text(), filename=str(path), feature_version=MIN_PYTHON)


def _type_like(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return node.value is None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _type_like(node.left) or _type_like(node.right)
    if isinstance(node, ast.Subscript):
        return True  # list[int], Mapping[str, Any]
    name = node.id if isinstance(node, ast.Name) else (
        node.attr if isinstance(node, ast.Attribute) else "")
    return name in _BUILTIN_TYPES or (len(name) > 1 and name[0].isupper() and name[1].islower())


def _unions_evaluated_at_run_time(tree: ast.AST) -> list[int]:
    annotations: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
            parts = [a.annotation for a in every if a is not None] + [node.returns]
        elif isinstance(node, ast.AnnAssign):
            parts = [node.annotation]
        elif isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            parts = list(node.body)  # imports and aliases for the type checker only
        else:
            continue
        for part in parts:
            if part is not None:
                annotations.update(id(sub) for sub in ast.walk(part))
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr)
            and id(node) not in annotations and _type_like(node.left) and _type_like(node.right)]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_no_union_of_types_is_evaluated_at_run_time(path: Path) -> None:
    lines = _unions_evaluated_at_run_time(ast.parse(path.read_text()))
    assert not lines, f"{path}: `X | Y` of types at lines {lines} fails on Python 3.9"


def test_the_union_search_finds_what_it_looks_for() -> None:
    """The check above can fail: it finds run-time unions and ignores annotations."""
    source = ("from typing import TYPE_CHECKING\n"
              "Frame = tuple[int, bytes | bytearray]\n"
              "def f(x: int | None) -> str | None:\n"
              "    return isinstance(x, int | str)\n"
              "flags = os.O_RDWR | os.O_CREAT\n"
              "if TYPE_CHECKING:\n"
              "    Alias = int | None\n")
    assert _unions_evaluated_at_run_time(ast.parse(source)) == [2, 4]


# Code bundles unpack safely where tarfile has no extraction filters (before
# Python 3.9.17, 3.10.12 and 3.11.4; Debian 12's python3 is 3.11.2).


def _tar(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    return out.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "",
            mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, mode
    return info


@pytest.fixture(params=["with filters", "without filters"])
def filters(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "without filters":
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    return str(request.param)


def test_a_plain_bundle_unpacks(filters: str, tmp_path: Path) -> None:
    data = _tar((_member("pkg", tarfile.DIRTYPE, mode=0o777), b""),
                (_member("pkg/mod.py", mode=0o4777), b"X = 1\n"),
                (_member("pkg/alias.py", tarfile.SYMTYPE, link="mod.py"), b""))
    _extract_bundle(data, tmp_path)
    assert (tmp_path / "pkg" / "mod.py").read_text() == "X = 1\n"
    assert (tmp_path / "pkg" / "alias.py").read_text() == "X = 1\n"
    mode = (tmp_path / "pkg" / "mod.py").stat().st_mode & 0o7777
    assert not mode & 0o4022  # no setuid, no write for others


def test_an_absolute_name_lands_inside(filters: str, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    _extract_bundle(_tar((_member(str(tmp_path / "absolute.py")), b"x")), dest)
    assert not (tmp_path / "absolute.py").exists()
    assert (dest / str(tmp_path).lstrip("/") / "absolute.py").read_text() == "x"


@pytest.mark.parametrize("member", [
    _member("../escape.py"),
    _member("pkg/out", tarfile.SYMTYPE, link="../../outside"),
    _member("pkg/abs", tarfile.SYMTYPE, link="/etc/passwd"),
    _member("hard", tarfile.LNKTYPE, link="../outside"),
    _member("dev", tarfile.CHRTYPE),
], ids=["dotdot", "symlink-out", "symlink-absolute", "hardlink-out", "device"])
def test_an_unsafe_bundle_is_refused(member: tarfile.TarInfo, filters: str,
                                     tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises((ValueError, tarfile.TarError)):
        _extract_bundle(_tar((member, b"" if member.type != tarfile.REGTYPE else b"x")), dest)
    assert not (tmp_path / "escape.py").exists()
    assert list(dest.iterdir()) in ([], [dest / "pkg"])  # nothing but maybe its folder


def test_a_zip_bundle_cannot_reach_a_folder_whose_name_starts_like_its_own(
        tmp_path: Path) -> None:
    import zipfile

    dest = tmp_path / ".tmp-abc"
    dest.mkdir()
    (tmp_path / ".tmp-abcd").mkdir()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("../.tmp-abcd/evil.py", "x")
    with pytest.raises(ValueError, match="unsafe path"):
        _extract_bundle(out.getvalue(), dest)
    assert not (tmp_path / ".tmp-abcd" / "evil.py").exists()
