"""Benchmark: remote calls through the den node daemon, beside its peers, in one run.

On loopback, every figure printed beside its peers' and as ratios to them:

* **ceiling**: a raw ASGI app on uvicorn (one process, uvloop + httptools) that does
  the same cloudpickle round trip as a call (unpickle args, call a no-op, pickle
  the result), driven by a plain httpx client;
* **den/den** and **den/uvicorn**: ``python -m den.node`` with ``--http-server den``
  (its own HTTP/1.1 server) and with ``--http-server uvicorn``, side by side, each
  with one env worker process, driven by ``den.node.caller.NodeClient``;
* **ray** (``--peers ray``): a Ray actor's no-op and echo, Ray installed once into a
  bench-only virtualenv (bench/_peers.py, bench/_ray_peer.py);
* **raw socket**: the same bytes over a plain loopback TCP socket (a no-op call's
  request and answer ping-ponged; a 100 MB buffer each way): the physical ceiling.

Figures: no-op call p50/p99, calls/s with 1 and 8 caller threads and 8 caller
processes, a 100 MB NumPy array to the worker, from it and round trip, and where a
no-op call's time goes (client encode, HTTP, worker pickling, dispatch + hop).

    .venv/bin/python bench/bench_remote_call.py [--peers ray] [--seconds 3] [--big-mb 100]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import pickle
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cloudpickle
import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._peers import raw_socket_round_trip, run_ray  # noqa: E402
from den.node.caller import NodeClient, _content, _read_sized  # noqa: E402


# -- the ceiling: a bare ASGI endpoint ------------------------------------------------
def noop(*args, **kwargs):
    return None


def echo(x):
    return x


async def ceiling_app(scope, receive, send):
    if scope["type"] != "http":
        return
    chunks = []
    more = True
    while more:
        msg = await receive()
        chunks.append(msg.get("body", b""))
        more = msg.get("more_body", False)
    body = b"".join(chunks)
    if not body:  # the health probe
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    args, kwargs = cloudpickle.loads(body)
    fn = echo if scope["path"].endswith("/echo") else noop
    out = cloudpickle.dumps(fn(*args, **kwargs), protocol=5)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})


def serve_ceiling(port: int) -> None:
    import uvicorn

    uvicorn.run(ceiling_app, host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                log_level="warning", access_log=False)


# -- helpers ----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


class CeilingClient:
    """Calls the ceiling the way an httpx user would."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, limits=httpx.Limits(max_keepalive_connections=64))

    def call(self, name: str, args: tuple = ()) -> object:
        body = cloudpickle.dumps((args, {}), protocol=5)
        resp = self.http.post(f"/{name}", content=body,
                              headers={"content-type": "application/x-cloudpickle"})
        return cloudpickle.loads(resp.content)

    def call_big(self, args: tuple) -> object:
        # Same client-side care as den's caller, so that the figure is the server's.
        body = cloudpickle.dumps((args, {}), protocol=5)
        req = self.http.build_request("POST", "/echo", content=_content([body], len(body)),
                                      headers={"content-length": str(len(body))})
        resp = self.http.send(req, stream=True)
        try:
            data = _read_sized(resp.iter_raw(), int(resp.headers["content-length"]))
        finally:
            resp.close()
        return cloudpickle.loads(data)


def latency(call: Callable[[], object], n: int) -> tuple[float, float]:
    for _ in range(200):
        call()
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t)
    samples.sort()
    return statistics.median(samples) * 1e3, samples[int(len(samples) * 0.99)] * 1e3


def rate_threads(call: Callable[[], object], callers: int, seconds: float) -> float:
    stop = time.monotonic() + seconds
    counts = [0] * callers

    def loop(i: int) -> None:
        while time.monotonic() < stop:
            call()
            counts[i] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - started)


def _proc_caller(kind: str, url: str, seconds: float, start_at: float, out: mp.Queue) -> None:
    client = NodeClient(url, stream=None) if kind == "den" else CeilingClient(url)
    for _ in range(50):
        client.call("noop")
    while time.time() < start_at:
        time.sleep(0.001)
    stop = time.monotonic() + seconds
    n = 0
    while time.monotonic() < stop:
        client.call("noop")
        n += 1
    out.put(n)


def rate_processes(kind: str, url: str, callers: int, seconds: float) -> float:
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()
    start_at = time.time() + 3
    procs = [ctx.Process(target=_proc_caller, args=(kind, url, seconds, start_at, out))
             for _ in range(callers)]
    for proc in procs:
        proc.start()
    total = sum(out.get(timeout=60) for _ in procs)
    for proc in procs:
        proc.join()
    return total / seconds


def big_round_trip(call: Callable[[object], object], mb: int, repeat: int = 3) -> float:
    import numpy as np

    a = np.ones(mb * 1024 * 1024 // 8)
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        b = call(a)
        best = min(best, time.perf_counter() - t)
        assert b.shape == a.shape  # type: ignore[attr-defined]
    return best


# -- where a no-op call's time goes ----------------------------------------------------
def _p50(fn: Callable[[], object], n: int) -> float:
    for _ in range(min(200, n)):
        fn()
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1e3


class RawHTTP:
    """Sends fixed request bytes over one keep-alive socket and reads a sized answer:
    the daemon's side of a request without any client library's cost."""

    def __init__(self, url: str) -> None:
        host, port = url.rsplit("/", 1)[-1].split(":")
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def request(self, data: bytes) -> bytes:
        self.sock.sendall(data)
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += self.sock.recv(65536)
        head, _, body = buf.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        while len(body) < length:
            body += self.sock.recv(65536)
        return body

    def close(self) -> None:
        self.sock.close()


def breakdown(dc: NodeClient, url: str, n: int) -> list[tuple[str, float]]:
    """p50 of each piece of a no-op call, in ms.

    Measured: the client's encode + decode (in this process); the daemon's HTTP
    (``GET /health`` from a bare socket: loopback, parse, route, answer); the
    daemon's whole no-op call from a bare socket (the same bytes den's client
    sends); the worker's unpickle + call + pickle (in this process); the whole
    call through ``NodeClient``. Derived: the HTTP client library's share (whole
    call less the bare-socket call and the encoding) and dispatch + the hop to the
    env worker and back (the bare-socket call less ``/health`` and the pickling).
    """
    from den.node.caller import _call_headers, _dumps_call, _loads

    def encode() -> None:
        parts, _size = _dumps_call((), None)
        b"".join(parts)  # type: ignore[arg-type]

    res_parts, _ = _dumps_call((None,), None)  # an answer of about the same size
    answer = b"".join(res_parts)  # type: ignore[arg-type]
    args_blob = cloudpickle.dumps(((), {}), protocol=5)

    def decode() -> None:
        _loads(answer)

    def worker_pickling() -> None:
        args, kwargs = pickle.loads(args_blob)
        cloudpickle.dumps(noop(*args, **kwargs), protocol=5)

    parts, size = _dumps_call((), None)
    body = b"".join(parts)  # type: ignore[arg-type]
    host = url.rsplit("/", 1)[-1]
    head = "".join(f"{k}: {v}\r\n" for k, v in _call_headers(None, size).items())
    call_req = (f"POST /objects/noop/call HTTP/1.1\r\nhost: {host}\r\n{head}\r\n").encode() + body
    health_req = f"GET /health HTTP/1.1\r\nhost: {host}\r\n\r\n".encode()
    raw = RawHTTP(url)
    enc = _p50(encode, n) + _p50(decode, n)
    health = _p50(lambda: raw.request(health_req), n)
    raw_call = _p50(lambda: raw.request(call_req), n)
    pick = _p50(worker_pickling, n)
    whole = _p50(lambda: dc.call("noop"), n)
    raw.close()
    return [("client encode + decode", enc),
            ("HTTP client library (derived)", max(0.0, whole - raw_call - enc)),
            ("daemon HTTP: loopback, parse, route, answer", health),
            ("dispatch + hop to env worker and back (derived)",
             max(0.0, raw_call - health - pick)),
            ("worker unpickle + call + pickle", pick),
            ("whole no-op call", whole)]


class Holder:
    """A module on the daemon holding an array, so that each direction of a large
    transfer is measured alone: ``put`` receives one, ``get`` returns one."""

    def __init__(self, mb: int) -> None:
        import numpy as np

        self.a = np.ones(mb * 1024 * 1024 // 8)

    def put(self, a: object) -> None:
        return None

    def get(self) -> object:
        return self.a


def one_way(call: Callable[[], object], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = call()
        best = min(best, time.perf_counter() - t)
        del out
    return best


def start_daemon(port: int, http_server: str, env: dict[str, str]) -> subprocess.Popen:
    workdir = tempfile.mkdtemp(prefix="den-bench-")
    return subprocess.Popen(
        [sys.executable, "-m", "den.node", "--no-den-auth", "--port", str(port),
         "--workdir", workdir, "--log-level", "warning", "--http-server", http_server],
        env=env, cwd=str(REPO),
    )


def raw_small_p50(request: bytes, answer: bytes, n: int) -> float:
    """p50 of a ping-pong of a no-op call's bytes over a plain loopback socket."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def serve() -> None:
        conn, _ = srv.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            while True:
                got = 0
                while got < len(request):
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    got += len(chunk)
                conn.sendall(answer)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    cli = socket.create_connection(srv.getsockname())
    cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def ping() -> None:
        cli.sendall(request)
        got = 0
        while got < len(answer):
            got += len(cli.recv(65536))

    out = _p50(ping, n)
    cli.close()
    t.join(5)
    srv.close()
    return out


# -- main ---------------------------------------------------------------------------------
Row = tuple[str, dict[str, float], str]


def print_table(title: str, cols: list[str], rows: list[Row], base: str) -> None:
    ratios = [c for c in cols if c != base]
    heads = [f"{c}/{base}" for c in ratios]
    widths = [max(10, len(c)) + 2 for c in cols]
    rwidths = [len(h) + 2 for h in heads]
    print()
    print(title)
    print(f"{'metric':42}" + "".join(f"{c:>{w}}" for c, w in zip(cols, widths))
          + "".join(f"{h:>{w}}" for h, w in zip(heads, rwidths)) + "  goal")
    for name, vals, goal in rows:
        b = vals.get(base)
        line = f"{name:42}" + "".join(
            f"{vals[c]:{w}.3f}" if c in vals else f"{'-':>{w}}" for c, w in zip(cols, widths))
        for c, w in zip(ratios, rwidths):
            line += f"{vals[c] / b:{w}.2f}" if c in vals and b else f"{'-':>{w}}"
        print(line + "  " + goal)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--latency-calls", type=int, default=3000)
    ap.add_argument("--big-mb", type=int, default=100)
    ap.add_argument("--peers", default="", help="comma-separated: ray (made once into a "
                    "bench-only virtualenv under ~/.cache/den)")
    ap.add_argument("--servers", default="den,uvicorn",
                    help="the daemon's --http-server values to measure, side by side")
    ap.add_argument("--no-processes", action="store_true",
                    help="skip the 8 caller processes rows")
    ap.add_argument("--serve-ceiling", type=int, help=argparse.SUPPRESS)
    ns = ap.parse_args()
    if ns.serve_ceiling:
        serve_ceiling(ns.serve_ceiling)
        return
    peers = {x for x in ns.peers.split(",") if x}
    servers = [x for x in ns.servers.split(",") if x]

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cport = free_port()
    curl = f"http://127.0.0.1:{cport}"
    procs = [subprocess.Popen([sys.executable, __file__, "--serve-ceiling", str(cport)], env=env)]
    urls: dict[str, str] = {}
    for server in servers:
        port = free_port()
        procs.append(start_daemon(port, server, env))
        urls[f"den/{server}"] = f"http://127.0.0.1:{port}"
    mb = ns.big_mb
    lat: list[Row] = []
    big: list[Row] = []
    parts: list[tuple[str, float]] = []
    ray: dict[str, float] | None = None
    try:
        if "ray" in peers:
            # First, alone on the machine, so that Ray's processes are gone after.
            ray = run_ray(ns.seconds, ns.latency_calls, mb)
        wait_up(curl + "/health")
        clients: dict[str, NodeClient] = {}
        for name, url in urls.items():
            wait_up(url + "/health")
            dc = NodeClient(url, stream=None)
            dc.put_function("noop", noop)
            dc.put_function("echo", echo)
            dc.put_module("holder", Holder, init_args=(mb,))
            clients[name] = dc
        cc = CeilingClient(curl)
        calls: dict[str, Callable[[], object]] = {"ceiling": lambda: cc.call("noop")}
        for name, dc in clients.items():
            calls[name] = (lambda d: lambda: d.call("noop"))(dc)

        # The same bytes as den's no-op call, over a bare socket.
        req = (b"POST /objects/noop/call HTTP/1.1\r\nhost: 127.0.0.1\r\n"
               b"content-type: application/x-den-pickle\r\ncontent-length: 30\r\n\r\n"
               + b"x" * 30)
        ans = (b"HTTP/1.1 200 OK\r\ncontent-type: application/x-den-frames\r\n"
               b"content-length: 30\r\n\r\n" + b"x" * 30)
        p50s: dict[str, float] = {"raw socket": raw_small_p50(req, ans, ns.latency_calls)}
        p99s: dict[str, float] = {}
        for name, call in calls.items():
            p50s[name], p99s[name] = latency(call, ns.latency_calls)
        if ray:
            p50s["ray"], p99s["ray"] = ray["p50_ms"], ray["p99_ms"]
        lat.append(("no-op call p50 (ms)", p50s, "den <= 0.5x ray, <= 1.2x ceiling"))
        lat.append(("no-op call p99 (ms)", p99s, ""))
        for callers in (1, 8):
            rates = {name: rate_threads(call, callers, ns.seconds) for name, call in calls.items()}
            if ray:
                rates["ray"] = ray[f"rate_{callers}"]
            lat.append((f"calls/s, {callers} caller thread(s)", rates,
                        "den >= 1.5x ray" if callers == 8 else ""))
        if not ns.no_processes:
            rates = {"ceiling": rate_processes("ceiling", curl, 8, ns.seconds)}
            for name, url in urls.items():
                rates[name] = rate_processes("den", url, 8, ns.seconds)
            lat.append(("calls/s, 8 caller processes", rates, ""))
        first = next(iter(clients.values()), None)
        if first is not None:
            parts = breakdown(first, next(iter(urls.values())), ns.latency_calls)

        import numpy as np

        a = np.ones(mb * 1024 * 1024 // 8)
        send_s, recv_s = raw_socket_round_trip(a.nbytes)
        up: dict[str, float] = {"raw socket": mb / send_s}
        down: dict[str, float] = {"raw socket": mb / recv_s}
        both: dict[str, float] = {"raw socket": 2 * mb / (send_s + recv_s),
                                  "ceiling": 2 * mb / one_way(lambda: cc.call_big((a,)))}
        for name, dc in clients.items():
            up[name] = mb / one_way(lambda d=dc: d.call("holder", "put", args=(a,)))
            down[name] = mb / one_way(lambda d=dc: d.call("holder", "get"))
            both[name] = 2 * mb / one_way(lambda d=dc: d.call("echo", args=(a,)))
        if ray:
            both["ray"] = 2 * mb / ray["big_round_trip_s"]
        big.append((f"{mb} MB array to the worker (MB/s)", up, "den >= 0.6x raw socket"))
        big.append((f"{mb} MB array from the worker (MB/s)", down, "den >= 0.6x raw socket"))
        big.append((f"{mb} MB array round trip (MB/s moved)", both, ""))
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()

    cols = ["ceiling", *urls, *(["ray"] if ray else []), "raw socket"]
    print_table(f"no-op remote calls, loopback, {os.cpu_count()} cores "
                f"(ceiling: bare ASGI on uvicorn doing the same pickling; "
                f"raw socket: the same bytes ping-ponged"
                f"{'; ray ' + str(ray.get('version')) + ' actor' if ray else ''})",
                cols, lat, "ceiling")
    if ray:
        print_table("the same, as ratios to Ray", cols, lat, "ray")
    print_table("large arrays", ["raw socket", "ceiling", *urls, *(["ray"] if ray else [])],
                big, "raw socket")
    if parts:
        whole = parts[-1][1]
        print()
        print(f"where a no-op call's time goes ({next(iter(urls))}, p50 of each piece)")
        for name, ms in parts:
            print(f"  {name:48} {ms:8.3f} ms  {ms / whole:6.0%}")


if __name__ == "__main__":
    main()
