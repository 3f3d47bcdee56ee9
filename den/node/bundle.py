"""Content-addressed code bundles: the caller's project directory as a .tar.gz.

The tarball is deterministic (sorted entries, zeroed times and owners), so the same
tree always hashes the same and an unchanged project is never uploaded twice.
Files ignored by ``.gitignore`` files are left out, matched by the ``pathspec``
library with git's rules (``[...]`` classes as in ``*.py[cod]``, ``**``, anchoring
``/``, trailing ``/`` for directories, ``!`` negation, escapes); a ``.gitignore``
applies to its own directory and below, and a deeper one overrides a shallower one.
As in git, nothing inside an ignored directory comes back by negation. ``.git``,
``__pycache__``, ``.venv`` and ``*.pyc`` are always left out.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path
from typing import Any

from den.node.errors import BundleTooLarge

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
ALWAYS_SKIP_DIRS = frozenset(
    {".git", "__pycache__", ".venv", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
)
ALWAYS_SKIP_SUFFIXES = (".pyc", ".pyo")


def _ignored(specs: list[tuple[str, Any]], rel: str, is_dir: bool) -> bool:
    """Whether ``rel`` is ignored: every .gitignore from the root down to its
    directory is asked in turn, and the last one with a matching pattern decides
    (a deeper file overrides a shallower one, as in git)."""
    path = rel + "/" if is_dir else rel
    result = False
    for base, spec in specs:
        if base:
            if not rel.startswith(base + "/"):
                continue
            sub = path[len(base) + 1:]
        else:
            sub = path
        hit = spec.check_file(sub).include
        if hit is not None:
            result = hit
    return result


def project_files(root: str | os.PathLike[str]) -> list[tuple[str, Path]]:
    """(relative path, path) of every file a bundle of ``root`` holds, sorted."""
    from pathspec import GitIgnoreSpec  # only bundling needs it: not imported by `import den`

    root_path = Path(root).resolve()
    # (directory relative to the root, its .gitignore), parents before children
    specs: list[tuple[str, Any]] = []
    files: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root_path):
        rel_dir = os.path.relpath(dirpath, root_path)
        rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
        if ".gitignore" in filenames:
            try:
                text = (Path(dirpath) / ".gitignore").read_text(errors="replace")
            except OSError:
                text = ""
            specs.append((rel_dir, GitIgnoreSpec.from_lines(text.splitlines())))
        keep = []
        for d in sorted(dirnames):
            rel = f"{rel_dir}/{d}" if rel_dir else d
            if d in ALWAYS_SKIP_DIRS or os.path.islink(os.path.join(dirpath, d)):
                continue
            if not _ignored(specs, rel, True):
                keep.append(d)
        dirnames[:] = keep
        for f in sorted(filenames):
            if f.endswith(ALWAYS_SKIP_SUFFIXES):
                continue
            rel = f"{rel_dir}/{f}" if rel_dir else f
            if _ignored(specs, rel, False):
                continue
            path = Path(dirpath) / f
            if path.is_file():  # follows a symlink to a file; drops dangling ones
                files.append((rel, path))
    files.sort()
    return files


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def bundle_project(path: str | os.PathLike[str],
                   max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[str, bytes]:
    """Tar and gzip a project directory; return ``(sha256 hex, bytes)``.

    Raises BundleTooLarge, naming the biggest files, when the files add up to more
    than ``max_bytes`` (before compression).
    """
    files = project_files(path)
    sizes = [(_size(p), rel) for rel, p in files]
    total = sum(s for s, _ in sizes)
    if total > max_bytes:
        biggest = sorted(sizes, reverse=True)[:5]
        listing = ", ".join(f"{rel} ({s / 1e6:.1f} MB)" for s, rel in biggest)
        raise BundleTooLarge(
            f"{path} holds {total / 1e6:.1f} MB of files, over the {max_bytes / 1e6:.0f} MB "
            f"code bundle limit; biggest: {listing}. Add what the code does not need to "
            ".gitignore, or raise the limit"
        )
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=6) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel, file_path in files:
            # Read each file once, so one written or deleted while we bundle
            # (an editor's temp file, a test's scratch file) cannot tear the tar.
            try:
                st = file_path.stat()
                content = file_path.read_bytes()
            except FileNotFoundError:
                continue
            info = tarfile.TarInfo(rel)
            info.size = len(content)
            info.mode = 0o755 if st.st_mode & stat.S_IXUSR else 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(content))
    data = raw.getvalue()
    return hashlib.sha256(data).hexdigest(), data
