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
(``build_runtime``). :data:`INSTALL_SOURCE`, run by the target python itself
(here by :func:`install_runtime`; on a host, after copying the archive there,
by :func:`install_command`), unpacks one into a folder and makes a virtualenv
whose site-packages points at ``site/`` through a ``.pth`` file, so that the
daemon's env virtualenvs layer on it as on any interpreter. Nothing here needs
Django.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import platform
import re
import subprocess
import sys
import tarfile
import threading
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
        # Unique per thread too: one worker may build for several hosts at once.
        partial = cache_dir / f".{archive.name}.{os.getpid()}.{threading.get_ident()}.partial"
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

#: Installs an archive; run by the *target* python (standard library only, 3.9+),
#: here for a local cluster and over SSH on a host, as
#: ``python3 -I -c INSTALL_SOURCE <archive> <sha256> <root>``. It unpacks the
#: archive once per contents and interpreter under ``<root>/<key>/``, makes a
#: virtualenv whose ``.pth`` points at ``site/``, compiles the byte code (the
#: daemon may not be able to write it there), opens it for reading to all and
#: writing to its owner only, and prints JSON ``{"python", "fresh"}``.
INSTALL_SOURCE = r"""
import fcntl, hashlib, json, os, shutil, subprocess, sys, tarfile
archive, sha, root = sys.argv[1], sys.argv[2], sys.argv[3]
key = sha[:16] + "-" + hashlib.sha256(sys.executable.encode()).hexdigest()[:8]
dest = os.path.join(root, key)
python = os.path.join(dest, "venv", "bin", "python")
ready = os.path.join(dest, ".den-ready")
os.umask(0o022)

def answer(fresh):
    print(json.dumps({"python": python, "fresh": fresh}))
    sys.exit(0)

if os.path.exists(ready):
    answer(False)
os.makedirs(root, exist_ok=True)
os.chmod(root, 0o755)
lock = os.open(os.path.join(root, "." + key + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(lock, fcntl.LOCK_EX)
if os.path.exists(ready):
    answer(False)
shutil.rmtree(dest, ignore_errors=True)
os.mkdir(dest)
with tarfile.open(archive) as tar:  # den's own archive: files and folders only
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, filter="data")
    else:
        tar.extractall(dest)
subprocess.run([sys.executable, "-m", "venv", "--without-pip", os.path.join(dest, "venv")],
               check=True, stdin=subprocess.DEVNULL)
lib = os.path.join(dest, "venv", "lib")
for name in os.listdir(lib):
    site = os.path.join(lib, name, "site-packages")
    if os.path.isdir(site):
        with open(os.path.join(site, "den-runtime.pth"), "w") as handle:
            handle.write(os.path.join(dest, "site") + "\n")
# pip's own modules compile when pip first runs: skipping them saves seconds.
subprocess.run([python, "-m", "compileall", "-q", "-x", "/site/pip/",
                os.path.join(dest, "site")], check=True, stdin=subprocess.DEVNULL)
for folder, dirs, names in os.walk(dest):
    os.chmod(folder, 0o755)
    for name in names:
        path = os.path.join(folder, name)
        if not os.path.islink(path):
            os.chmod(path, 0o755 if os.stat(path).st_mode & 0o100 else 0o644)
    dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
with open(ready, "w") as handle:
    handle.write(sha + "\n")
answer(True)
"""


def install_command(python: str, archive: str, sha256: str, root: str) -> list[str]:
    """The command that installs a runtime archive with ``python`` (on this
    machine, or on a host the archive was copied to)."""
    return [python, "-I", "-c", INSTALL_SOURCE, archive, sha256, root]


@dataclass(frozen=True)
class InstalledRuntime:
    """An unpacked runtime: ``python`` runs it; ``fresh`` if this call unpacked it."""

    python: Path
    fresh: bool


def install_runtime(archive: RuntimeArchive, target: Interpreter,
                    root: Path) -> InstalledRuntime:
    """Install ``archive`` under ``root`` on this machine with the target python.

    The folder stays owned by whoever installs it (root, for a local cluster's
    daemons): it is readable by everyone and writable by nobody else, so code
    running on one cluster cannot change the node code that the next daemon
    loads.
    """
    if not target.has_venv:
        raise BackendError(
            f"The cluster's python ({target.version_text}) has no venv module; install "
            "it (on Debian: apt-get install python3-venv).", python=target.path)
    done = subprocess.run(install_command(target.path, str(archive.path), archive.sha256,
                                          str(root)),
                          capture_output=True, text=True, check=False,
                          stdin=subprocess.DEVNULL, timeout=600, env={"PATH": "/usr/bin:/bin"})
    try:
        answer = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        answer = None
    if done.returncode != 0 or not isinstance(answer, dict):
        raise BackendError(
            f"Could not install the node runtime with Python {target.version_text} (exit "
            f"code {done.returncode}); its output is in this event's details.",
            python=target.path, output=(done.stdout + done.stderr)[-3000:])
    return InstalledRuntime(python=Path(answer["python"]), fresh=bool(answer["fresh"]))


def describe(archive: RuntimeArchive) -> dict[str, Any]:
    """What an event may say about a runtime (no paths)."""
    return {"sha256": archive.sha256, "packages": archive.packages,
            "left_out": archive.left_out}
