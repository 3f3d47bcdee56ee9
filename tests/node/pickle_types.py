"""A type a function's owner may add to its ``pickle_allow``. No Django: the
daemon's env workers import this module to unpickle it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Point:
    x: int
    y: int
