"""The node runtime: what a node daemon needs, packed for a host's own ``python3``.

A daemon needs den's client and node packages, httpx and the pure-Python
packages it depends on, and cloudpickle; pip lets its envs install their
``reqs``, and uvloop and httptools speed it up. Hosts that cannot run den's own
interpreter get these as one archive built here from den's own environment,
with nothing downloaded: a local cluster's unprivileged user (who cannot read
a Python installed under ``/root``), or an SSH host without internet.

The archive is built for one *target* interpreter, described by
:func:`probe_command`'s answer: its version decides which conditional
dependencies apply (``exceptiongroup`` below 3.11, ...) and which packages fit
(their ``Requires-Python``), and a compiled package (uvloop) goes in only when
its extension modules match the target's ABI and machine. Required packages
that do not fit fail the build with a message saying which and why; optional
ones are left out. Layout::

    site/                 importable packages: den (client and node only), httpx, ...
    den-runtime.json      what is inside, and for which python

It is named by the SHA-256 of its contents and cached in a folder of den's
(``build_runtime``). :func:`install_runtime` unpacks one into a folder and makes
a virtualenv with the target python whose site-packages points at ``site/``
through a ``.pth`` file, so that the daemon's env virtualenvs layer on it as on
any interpreter. Nothing here needs Django.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name

from compute.backends.base import BackendError

#: The oldest Python den's node code runs on (tests/node/test_py39.py keeps it so).
MIN_PYTHON = (3, 9)
#: What every daemon needs (their dependencies come along).
REQUIRED = ("httpx", "cloudpickle")
#: What a daemon is better with, left out when it does not fit the target:
#: pip installs envs' ``reqs``; uvloop and httptools are compiled speed-ups.
OPTIONAL = ("pip", "uvloop", "httptools")
#: The parts of den a node needs; the rest of den/ is the Django project.
_DEN_PARTS = ("__init__.py", "client", "node")
_FORMAT = 1

#: Run by the target interpreter (standard library only, Python 3 of any age):
#: prints what the build needs to know about it as JSON.
PROBE_SOURCE = r"""
import importlib.machinery, json, os, platform, sys
try:
    import venv  # noqa: F401
    has_venv = True
except ImportError:
    has_venv = False
impl = sys.implementation
iver = "{0.major}.{0.minor}.{0.micro}".format(impl.version)
if impl.version.releaselevel != "final":
    iver += impl.version.releaselevel[0] + str(impl.version.serial)
markers = {
    "implementation_name": impl.name,
    "implementation_version": iver,
    "os_name": os.name,
    "platform_machine": platform.machine(),
    "platform_release": platform.release(),
    "platform_system": platform.system(),
    "platform_version": platform.version(),
    "python_full_version": platform.python_version(),
    "platform_python_implementation": platform.python_implementation(),
    "python_version": ".".join(platform.python_version_tuple()[:2]),
    "sys_platform": sys.platform,
}
reach = [p for p in sys.argv[1:] if not os.access(p, os.X_OK)]
print(json.dumps({
    "executable": sys.executable,
    "version": list(sys.version_info[:3]),
    "markers": markers,
    "ext_suffixes": importlib.machinery.EXTENSION_SUFFIXES,
    "venv": has_venv,
    "cannot_reach": reach,
}))
"""

_TAGGED_EXT = re.compile(r"(\.(?:cpython-[^.]+|abi3|pypy[^.]*))\.(?:so|pyd)$")


@dataclass(frozen=True)
class Interpreter:
    """A target python, as :data:`PROBE_SOURCE` described it."""

    path: str
    version: tuple[int, int, int]
    markers: dict[str, str]
    ext_suffixes: tuple[str, ...]
    has_venv: bool = True
    cannot_reach: tuple[str, ...] = ()

    @property
    def version_text(self) -> str:
        return ".".join(str(n) for n in self.version)

    @classmethod
    def from_probe(cls, path: str, output: str) -> Interpreter:
        """Parse the probe's JSON answer; ValueError if it is not one."""
        data = json.loads(output.strip().splitlines()[-1])
        return cls(
            path=path,
            version=(int(data["version"][0]), int(data["version"][1]), int(data["version"][2])),
            markers={str(k): str(v) for k, v in data["markers"].items()},
            ext_suffixes=tuple(str(s) for s in data["ext_suffixes"]),
            has_venv=bool(data.get("venv", True)),
            cannot_reach=tuple(str(p) for p in data.get("cannot_reach", ())),
        )


def probe_command(python: str, *reach: str) -> list[str]:
    """The command that describes ``python``; each of ``reach`` is a folder
    whose path the answer says the running user cannot traverse."""
    return [python, "-I", "-c", PROBE_SOURCE, *reach]


@dataclass(frozen=True)
class RuntimeArchive:
    """A built runtime: ``path`` is a .tar.gz named by ``sha256`` of its contents."""

    sha256: str
    path: Path
    packages: dict[str, str] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)


class _Unfit(Exception):
    """A package that cannot go into a runtime for this target (the reason)."""


# -- choosing packages ------------------------------------------------------------


def _fits_binary(dist: metadata.Distribution, target: Interpreter) -> None:
    """Raise _Unfit if ``dist`` has extension modules the target cannot load."""
    names = [f.name for f in dist.files or () if f.name.endswith((".so", ".pyd"))]
    if not names:
        return
    here = {"platform_machine": platform.machine(), "sys_platform": sys.platform}
    for key, value in here.items():
        if target.markers.get(key) != value:
            raise _Unfit(f"it is compiled for {value}, and the target is "
                         f"{target.markers.get(key)}")
    for name in names:
        tagged = _TAGGED_EXT.search(name)
        if tagged:
            if name[tagged.start():] not in target.ext_suffixes:
                raise _Unfit(f"its compiled module {name} does not load on Python "
                             f"{target.version_text}")
        elif target.version[:2] != sys.version_info[:2]:
            raise _Unfit(f"its compiled module {name} was built for Python "
                         f"{sys.version_info[0]}.{sys.version_info[1]}")


def _closure(root: str, target: Interpreter) -> dict[str, metadata.Distribution]:
    """``root`` and every distribution it needs on ``target``; _Unfit if any is
    missing from den's environment or does not fit the target."""
    env = {**target.markers, "extra": ""}
    chosen: dict[str, metadata.Distribution] = {}
    todo = [(root, "")]
    while todo:
        name, needed_by = todo.pop()
        key = canonicalize_name(name)
        if key in chosen:
            continue
        why = f" (needed by {needed_by})" if needed_by else ""
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise _Unfit(f"{name}{why} is not installed in den's environment") from None
        requires_python = (dist.metadata.get_all("Requires-Python") or [None])[0]
        if requires_python:
            try:
                fits = SpecifierSet(requires_python).contains(
                    target.markers.get("python_full_version", target.version_text),
                    prereleases=True)
            except InvalidSpecifier:
                fits = True
            if not fits:
                raise _Unfit(f"{name} {dist.version}{why} needs Python {requires_python}")
        try:
            _fits_binary(dist, target)
        except _Unfit as exc:
            raise _Unfit(f"{name} {dist.version}{why}: {exc}") from None
        if dist.files is None:
            raise _Unfit(f"{name}{why} was installed without a file list (RECORD)")
        chosen[key] = dist
        for text in dist.requires or ():
            try:
                requirement = Requirement(text)
            except InvalidRequirement:
                continue
            if requirement.marker is None or requirement.marker.evaluate(env):
                todo.append((requirement.name, name))
    return chosen


def choose_packages(target: Interpreter) -> tuple[dict[str, metadata.Distribution],
                                                  dict[str, str]]:
    """The distributions a runtime for ``target`` holds, and the optional ones
    left out (name -> why). BackendError names a required one that does not fit."""
    chosen: dict[str, metadata.Distribution] = {}
    for root in REQUIRED:
        try:
            chosen.update(_closure(root, target))
        except _Unfit as exc:
            raise BackendError(
                f"The node runtime cannot be built for Python {target.version_text}: {exc}; "
                "install a version that fits into den's own environment, or give the "
                "cluster a newer python3 (DEN_CLUSTER_PYTHON).", python=target.path) from None
    left_out: dict[str, str] = {}
    for root in OPTIONAL:
        try:
            chosen.update(_closure(root, target))
        except _Unfit as exc:
            left_out[root] = str(exc)
    return chosen, left_out


# -- files ------------------------------------------------------------------------


def den_source_files() -> Iterator[tuple[str, Path]]:
    """The parts of den a runtime ships: (path in the runtime, file here)."""
    import den

    base = Path(den.__file__).resolve().parent
    for part in _DEN_PARTS:
        top = base / part
        paths = [top] if top.is_file() else sorted(top.rglob("*.py"))
        for path in paths:
            if "__pycache__" not in path.parts:
                yield f"den/{path.relative_to(base).as_posix()}", path


def _dist_files(dist: metadata.Distribution) -> Iterator[tuple[str, Path]]:
    for entry in dist.files or ():
        if entry.parts[0] == ".." or "__pycache__" in entry.parts or entry.suffix == ".pyc":
            continue  # console scripts and byte code for den's own interpreter
        path = Path(str(dist.locate_file(entry)))
        if path.is_file():
            yield entry.as_posix(), path


def _runtime_files(dists: dict[str, metadata.Distribution]) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for rel, path in den_source_files():
        files[f"site/{rel}"] = path
    for _, dist in sorted(dists.items()):
        for rel, path in _dist_files(dist):
            if rel.split("/", 1)[0] == "den":
                continue  # an installed den (not editable) must not shadow the source
            files.setdefault(f"site/{rel}", path)
    return files


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- building ---------------------------------------------------------------------


def build_runtime(target: Interpreter, cache_dir: Path) -> RuntimeArchive:
    """The runtime archive for ``target``, built into ``cache_dir`` unless a
    runtime with the same contents is there already."""
    if target.version[:2] < MIN_PYTHON:
        raise BackendError(
            f"The cluster's python is {target.version_text}; den's node needs Python "
            f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer.", python=target.path)
    dists, left_out = choose_packages(target)
    files = _runtime_files(dists)
    packages = {dist.metadata["Name"]: dist.version for dist in dists.values()}
    manifest = json.dumps({
        "format": _FORMAT,
        "python": ".".join(str(n) for n in target.version[:2]),
        "packages": dict(sorted(packages.items())),
    }, indent=1, sort_keys=True).encode()
    digest = hashlib.sha256(manifest)
    hashes = {rel: _sha256_file(path) for rel, path in sorted(files.items())}
    for rel, file_hash in hashes.items():
        digest.update(f"\0{rel}\0{file_hash}".encode())
    sha = digest.hexdigest()
    archive = cache_dir / f"den-node-runtime-{sha}.tar.gz"
    if not archive.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        partial = cache_dir / f".{archive.name}.{os.getpid()}.partial"
        try:
            _write_archive(partial, files, manifest)
            os.replace(partial, archive)
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
    return RuntimeArchive(sha256=sha, path=archive, packages=packages, left_out=left_out)


def _write_archive(path: Path, files: dict[str, Path], manifest: bytes) -> None:
    """A reproducible .tar.gz: sorted members, no owners, times or stray modes."""

    def info(name: str, size: int = 0, *, directory: bool = False) -> tarfile.TarInfo:
        member = tarfile.TarInfo(name)
        member.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
        member.mode = 0o755 if directory else 0o644
        member.size = size
        member.mtime = 0
        return member

    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=6) as packed, \
            tarfile.open(fileobj=packed, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info("den-runtime.json", len(manifest)), io.BytesIO(manifest))
        made: set[str] = set()
        for rel in sorted(files):
            parts = rel.split("/")[:-1]
            for depth in range(1, len(parts) + 1):
                folder = "/".join(parts[:depth])
                if folder not in made:
                    made.add(folder)
                    tar.addfile(info(folder, directory=True))
            with open(files[rel], "rb") as handle:
                tar.addfile(info(rel, os.fstat(handle.fileno()).st_size), handle)


# -- installing -------------------------------------------------------------------


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (made if missing), across processes."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False,
                          stdin=subprocess.DEVNULL, umask=0o022, timeout=600)
    if done.returncode != 0:
        raise BackendError(f"Could not {what} for the node runtime (exit code "
                           f"{done.returncode}).", output=(done.stdout + done.stderr)[-3000:])


def _open_to_all(top: Path) -> None:
    """Folders 0755 and files 0644 (executables 0755): readable by the daemon's
    user, writable by none but their owner."""
    for folder, dirs, names in os.walk(top):
        os.chmod(folder, 0o755)  # noqa: S103 - the daemon's user reads the runtime
        for name in names:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                continue
            mode = os.stat(path).st_mode
            os.chmod(path, 0o755 if mode & 0o100 else 0o644)
        dirs[:] = [name for name in dirs if not os.path.islink(os.path.join(folder, name))]


@dataclass(frozen=True)
class InstalledRuntime:
    """An unpacked runtime: ``python`` runs it; ``fresh`` if this call unpacked it."""

    python: Path
    fresh: bool


def install_runtime(archive: RuntimeArchive, target: Interpreter,
                    root: Path) -> InstalledRuntime:
    """Unpack ``archive`` under ``root`` (once per archive and interpreter); its
    python is a virtualenv of ``target`` that sees the runtime's packages.

    The folder stays owned by whoever installs it (root, for a local cluster's
    daemons): it is readable by everyone and writable by nobody else, so code
    running on one cluster cannot change the node code that the next daemon
    loads. Byte code is compiled here, since the daemon cannot write it there.
    """
    if not target.has_venv:
        raise BackendError(
            f"The cluster's python ({target.version_text}) has no venv module; install "
            "it (on Debian: apt-get install python3-venv).", python=target.path)
    key = f"{archive.sha256[:16]}-{hashlib.sha256(target.path.encode()).hexdigest()[:8]}"
    dest = root / key
    python = dest / "venv" / "bin" / "python"
    ready = dest / ".den-ready"
    if ready.exists():
        return InstalledRuntime(python, fresh=False)
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)  # noqa: S103 - the daemon's user reads the runtime
    with _locked(root / f".{key}.lock"):
        if ready.exists():
            return InstalledRuntime(python, fresh=False)
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir()
        with tarfile.open(archive.path) as tar:
            tar.extractall(dest, filter="data")
        _run([target.path, "-m", "venv", "--without-pip", str(dest / "venv")],
             "make a virtualenv")
        for site in (dest / "venv").glob("lib/python*/site-packages"):
            (site / "den-runtime.pth").write_text(f"{dest / 'site'}\n")
        # pip's own modules compile when pip first runs; skipping them saves seconds.
        _run([str(python), "-m", "compileall", "-q", "-x", r"/site/pip/", str(dest / "site")],
             "compile the byte code")
        _open_to_all(dest)
        ready.write_text(archive.sha256 + "\n")
        os.chmod(ready, 0o644)
    return InstalledRuntime(python, fresh=True)


def describe(archive: RuntimeArchive) -> dict[str, Any]:
    """What an event may say about a runtime (no paths)."""
    return {"sha256": archive.sha256, "packages": archive.packages,
            "left_out": archive.left_out}
