"""Peers for bench_remote_call.py: Ray in a bench-only virtualenv, and a raw socket.

Ray is never a dependency of den. ``--peers ray`` makes (once) a virtualenv under
``~/.cache/den/bench-ray-<hash>`` with Ray and NumPy, keyed by the Ray version and
this interpreter's version, and runs :mod:`bench._ray_peer` in it; the figures come
back as one JSON line on stdout.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

RAY_SPEC = "ray==2.60.0"
HERE = Path(__file__).resolve().parent


def ray_venv() -> Path:
    """The bench-only Ray virtualenv, made on first use."""
    key = hashlib.sha256(f"{RAY_SPEC} {sys.version} numpy cloudpickle".encode()).hexdigest()[:12]
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "den"
    venv = root / f"bench-ray-{key}"
    python = venv / "bin" / "python"
    if (venv / ".complete").exists():
        return python
    root.mkdir(parents=True, exist_ok=True)
    print(f"making the bench-only Ray virtualenv {venv} (once) ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", RAY_SPEC, "numpy"], check=True)
    (venv / ".complete").write_text(RAY_SPEC + "\n")
    return python


def run_ray(seconds: float, latency_calls: int, big_mb: int, callers: int = 8) -> dict:
    """Ray's figures, measured by a subprocess in the Ray virtualenv."""
    python = ray_venv()
    out = subprocess.run(
        [str(python), str(HERE / "_ray_peer.py"), "--seconds", str(seconds),
         "--latency-calls", str(latency_calls), "--big-mb", str(big_mb),
         "--callers", str(callers)],
        check=True, capture_output=True, text=True, timeout=600,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- the raw loopback socket: the physical ceiling for moving bytes ---------------------
def _recv_exact_into(sock: socket.socket, view: memoryview) -> None:
    pos = 0
    while pos < len(view):
        n = sock.recv_into(view[pos:])
        if not n:
            raise ConnectionError("peer closed")
        pos += n


def raw_socket_round_trip(nbytes: int, repeat: int = 3) -> tuple[float, float]:
    """Best seconds to send ``nbytes`` one way and to get them back, over loopback TCP
    between two threads of a plain Python process (``sendall``/``recv_into`` into a
    preallocated buffer): what any HTTP stack over loopback can at best approach."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    def echo_server() -> None:
        conn, _ = srv.accept()
        buf = bytearray(nbytes)
        view = memoryview(buf)
        with conn:
            for _ in range(repeat):
                _recv_exact_into(conn, view)
                conn.sendall(b"k")
                conn.recv(1)
                conn.sendall(view)

    t = threading.Thread(target=echo_server, daemon=True)
    t.start()
    cli = socket.create_connection(("127.0.0.1", port))
    payload = memoryview(bytearray(b"\x01") * nbytes)
    back = memoryview(bytearray(nbytes))
    best_send = best_recv = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        cli.sendall(payload)
        cli.recv(1)
        t1 = time.perf_counter()
        cli.sendall(b"g")
        _recv_exact_into(cli, back)
        t2 = time.perf_counter()
        best_send, best_recv = min(best_send, t1 - t0), min(best_recv, t2 - t1)
    cli.close()
    t.join(10)
    srv.close()
    return best_send, best_recv
