"""Functions that tests run on node daemons. No Django here. They travel by
value (tests/compute/conftest.py registers this module with cloudpickle), so
that a daemon that cannot import this repository still runs them."""

from __future__ import annotations

import pathlib
import time


def add(a, b):
    return a + b


def nap(seconds):
    time.sleep(seconds)
    return seconds


class Counter:
    def __init__(self, n):
        self.n = n

    def get(self):
        return self.n


class TouchOnUnpickle:
    """Unpickling this creates a file: proof of whether anything was unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


def what_i_can_reach(den_home: str, paths: list[str]) -> dict:
    """Who this code runs as, where, and which of ``paths`` it can read."""
    import os

    def read(path: str) -> str:
        try:
            with open(path, "rb") as handle:
                handle.read(1)
        except OSError as exc:
            return type(exc).__name__
        return "readable"

    try:
        os.listdir(den_home)
        listed = True
    except OSError:
        listed = False
    return {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(),
            "groups": os.getgroups(), "cwd": os.getcwd(), "home": os.environ.get("HOME"),
            "reads": {path: read(path) for path in paths}, "lists_den_home": listed}


def find_tokens(roots: list[str], max_files: int = 20000, max_seconds: float = 8.0) -> dict:
    """Every den-token-shaped string this code can read: in its daemon's (its
    parent's) environment and command line, its own environment, and the
    files under ``roots`` (bounded in count and time)."""
    import os
    import re

    pattern = re.compile(rb"(?<![0-9A-Za-z])den_[0-9A-Za-z]{36}(?![0-9A-Za-z])")
    found: dict[str, list[str]] = {}

    def scan(where: str, data: bytes) -> None:
        for match in pattern.findall(data):
            found.setdefault(match.decode(), []).append(where)

    daemon = os.getppid()
    proc = {}
    for path in (f"/proc/{daemon}/environ", f"/proc/{daemon}/cmdline", "/proc/self/environ"):
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            proc[path] = type(exc).__name__
            continue
        proc[path] = "readable"
        scan(path, data)
    scan("os.environ", "\n".join(f"{k}={v}" for k, v in os.environ.items()).encode())
    files, deadline = 0, time.monotonic() + max_seconds
    for root in roots:
        for folder, _, names in os.walk(root):
            if files >= max_files or time.monotonic() > deadline:
                break
            for name in names:
                path = os.path.join(folder, name)
                try:
                    if os.path.islink(path) or os.path.getsize(path) > 2 << 20:
                        continue
                    with open(path, "rb") as handle:
                        data = handle.read()
                except OSError:
                    continue
                files += 1
                scan(path, data)
    return {"found": found, "proc": proc, "files": files, "daemon_pid": daemon}
