"""Loaded by every python started with this folder on PYTHONPATH (tests/ops/
test_skypilot_absent.py): records, in the file DEN_TEST_SKY_GUARD names, each
process that starts (forked ones too) and every attempt to import SkyPilot."""

import os
import sys

_LOG = os.environ.get("DEN_TEST_SKY_GUARD")


def _argv() -> str:
    return " ".join(sys.argv).replace("\n", " ")[:200]


def _write(line: str) -> None:
    with open(_LOG, "a") as out:  # type: ignore[arg-type]
        out.write(line + "\n")


class _SkyGuard:
    def find_spec(self, name, path=None, target=None):
        if name == "sky" or name.startswith("sky."):
            _write(f"import {os.getpid()} {name} {_argv()}")
        return None


if _LOG:
    sys.meta_path.insert(0, _SkyGuard())
    _write(f"process {os.getpid()} {_argv()}")
    os.register_at_fork(after_in_child=lambda: _write(f"process {os.getpid()} forked"))
