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


class TouchOnUnpickle:
    """Unpickling this creates a file: proof of whether anything was unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.path),))
