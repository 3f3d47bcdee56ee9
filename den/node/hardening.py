"""Process hardening shared by den's own processes and the node daemon.

No Django and nothing outside the standard library: the daemon imports this on
hosts that have only the node runtime, on Python 3.9 and newer.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger("den.node")

_PR_SET_DUMPABLE = 4
_PR_GET_DUMPABLE = 3


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def set_non_dumpable() -> bool:
    """Mark this process non-dumpable (Linux ``prctl(PR_SET_DUMPABLE, 0)``).

    Other processes of the same OS user then cannot read its
    ``/proc/<pid>/environ``, ``mem``, ``fd`` or ``maps``, nor ptrace it, and
    it leaves no core dump: code that shares a uid with den (or with a node
    daemon) cannot lift the keys and tokens these processes hold. The flag is
    kept across ``fork`` (gunicorn and Celery pool workers) and reset by
    ``exec``. False where there is no such call (not Linux).
    """
    libc = _libc()
    if libc is None:
        return False
    if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        log.warning("could not mark the process non-dumpable (errno %d)", ctypes.get_errno())
        return False
    return True


def is_dumpable() -> bool | None:
    """This process's dumpable flag, or None where it cannot be read."""
    libc = _libc()
    if libc is None:
        return None
    return bool(libc.prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0))
