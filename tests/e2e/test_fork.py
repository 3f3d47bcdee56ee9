"""The client is fork-safe: processes forked after a stub was loaded and called
(a LocalExecutor's tasks, a multiprocessing pool) each call it concurrently with
connections of their own, to den and to the cluster's daemon."""

from __future__ import annotations

import json
import os
import select
import signal
import time

import pytest

import den
from tests.e2e import remote_fns
from tests.e2e.conftest import up_cluster

pytestmark = pytest.mark.e2e

CHILDREN = 4
CALLS = 25


def _child(stub: den.Function, n: int, out: int) -> None:
    """Runs in a forked child: call the stub and den itself, report, and leave."""
    try:
        results = [stub(n, k) for k in range(CALLS)]
        for _ in range(5):
            den.load("/alice/add")  # den's own pool
        report = {"results": results, "pid": os.getpid()}
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        report = {"error": f"{type(exc).__name__}: {exc}"}
    os.write(out, json.dumps(report).encode())
    os._exit(0)


def test_forked_processes_call_one_stub_loaded_before_the_fork(team, cleanup_clusters):
    team.login("alice")
    cpu = up_cluster("cpu", cleanup_clusters)
    den.function(remote_fns.add).to(cpu).save("add")
    stub = den.function(name="/alice/add")
    assert stub(1, 2) == 3  # both pools are warm: den's and the daemon's client
    children: dict[int, tuple[int, int]] = {}
    for n in range(CHILDREN):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            _child(stub, n * 100, write)
        os.close(write)
        children[read] = (pid, n * 100)
    # The parent keeps calling on its own connections meanwhile.
    assert [stub(7, k) for k in range(CALLS)] == [7 + k for k in range(CALLS)]

    reports: dict[int, dict] = {}
    chunks: dict[int, bytes] = {fd: b"" for fd in children}
    deadline = time.monotonic() + 120
    open_fds = set(children)
    while open_fds and time.monotonic() < deadline:
        ready, _, _ = select.select(list(open_fds), [], [], 1.0)
        for fd in ready:
            data = os.read(fd, 65536)
            if data:
                chunks[fd] += data
            else:
                open_fds.discard(fd)
                reports[fd] = json.loads(chunks[fd] or b'{"error": "no report"}')
    for fd, (pid, _) in children.items():
        if fd in open_fds:  # hung: the test fails below, without leaving it behind
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)
    assert not open_fds, f"{len(open_fds)} forked callers hung"
    for fd, (pid, base) in children.items():
        report = reports[fd]
        assert "error" not in report, report["error"]
        assert report["results"] == [base + k for k in range(CALLS)], pid
    assert stub(2, 2) == 4  # and the parent's connections still work
