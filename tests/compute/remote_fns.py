"""Functions that tests run on node daemons. No Django here: the daemon's
env workers import this module by name to unpickle them."""

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
