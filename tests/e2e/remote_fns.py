"""Code the end-to-end tests send to clusters. No Django here: env workers on the
node import this module from the uploaded code bundle."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import os
import pathlib
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any


def add(a: int, b: int = 1) -> int:
    """Add two numbers on the cluster."""
    return a + b


def fail(message: str) -> None:
    raise ValueError(message)


def crash() -> None:
    """Kill the worker process running this call."""
    os.kill(os.getpid(), signal.SIGKILL)


def chatty(release: str) -> str:
    """Print, then wait until the file ``release`` exists."""
    print("working on it", flush=True)
    deadline = time.monotonic() + 30
    while not pathlib.Path(release).exists():
        if time.monotonic() > deadline:
            return "timed out"
        time.sleep(0.05)
    print("done", flush=True)
    return "released"


def countdown(n: int) -> Iterator[int]:
    yield from range(n, 0, -1)


async def slow_double(x: int) -> int:
    await asyncio.sleep(0.01)
    return 2 * x


def what_env() -> dict[str, object]:
    """What the env this runs in looks like."""
    return {
        "which": os.environ.get("WHICH"),
        "has_tabulate": importlib.util.find_spec("tabulate") is not None,
        "prefix": sys.prefix,
    }


def pid() -> int:
    return os.getpid()


class Counter:
    """A counter that lives on the cluster."""

    def __init__(self, start: int = 0) -> None:
        self.value = start

    def add(self, n: int = 1) -> int:
        """Add n and return the new value."""
        self.value += n
        return self.value

    def get(self) -> int:
        return self.value


@dataclasses.dataclass
class Point:
    """A type a function's owner lets readers send (its pickle_allow)."""

    x: int
    y: int


def norm1(p: Point) -> int:
    return abs(p.x) + abs(p.y)


class TouchOnUnpickle:
    """Unpickling this creates a file: proof of whether anything was unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


def where_am_i() -> str:
    """The IPv4 address of the host this runs on (not loopback)."""
    import subprocess

    out = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        address = line.split()[3].split("/")[0]
        if not address.startswith("127."):
            return address
    return "?"


def make_array(n: int) -> Any:
    """An array made on the cluster (kept there as a ref by make_array.remote(n))."""
    import array

    return array.array("d", range(n))


def total(values: Any) -> float:
    """The sum of an array: given a ref, the worker hands over the array itself."""
    import array

    assert isinstance(values, array.array), type(values)
    return float(sum(values))
