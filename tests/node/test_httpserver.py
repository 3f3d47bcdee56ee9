"""The daemon's own HTTP/1.1 server, spoken to over raw sockets like odd clients do.

Every test here runs twice: with heads parsed by httptools, and by h11 on a daemon
where httptools does not import (as on a host without a wheel of it), so the two
must be equally strict.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from den.node.caller import NodeClient

from .conftest import Daemon


@pytest.fixture(scope="module", params=["httptools", "h11"])
def daemon(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A daemon (auth off) whose HTTP server parses heads with the given parser."""
    env: dict[str, str] = {}
    if request.param == "h11":
        shim = tmp_path_factory.mktemp("no-httptools")
        (shim / "httptools").mkdir()
        (shim / "httptools" / "__init__.py").write_text(
            "raise ImportError('no httptools wheel for this Python')\n")
        env["PYTHONPATH"] = str(shim)
    else:
        env["DEN_NODE_HTTP_PARSER"] = "httptools"
    d = Daemon(tmp_path_factory.mktemp(f"http-{request.param}"), "--no-den-auth",
               "--log-level", "info", env=env)
    assert f"(HTTP parser: {request.param})" in d.log()
    yield d
    d.stop()


def add(a, b):
    return a + b


class Conn:
    """A raw connection that reads responses one at a time (sized or chunked)."""

    def __init__(self, daemon) -> None:
        self.sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
        self.buf = b""

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self, n: int) -> bytes:
        if self.buf:
            data, self.buf = self.buf, b""
            return data
        return self.sock.recv(n)

    def _fill(self, predicate) -> None:
        while not predicate(self.buf):
            chunk = self.sock.recv(65536)
            assert chunk, "connection closed early"
            self.buf += chunk

    def _take(self, n: int) -> bytes:
        self._fill(lambda b: len(b) >= n)
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def _line(self) -> bytes:
        self._fill(lambda b: b"\r\n" in b)
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def response(self) -> tuple[int, dict[str, str], bytes]:
        self._fill(lambda b: b"\r\n\r\n" in b)
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
        if "content-length" in headers:
            return status, headers, self._take(int(headers["content-length"]))
        body = b""
        while True:
            size = int(self._line(), 16)
            body += self._take(size)
            self._take(2)
            if size == 0:
                return status, headers, body

    def close(self) -> None:
        self.sock.close()


def connect(daemon) -> Conn:
    return Conn(daemon)


def read_response(s: Conn) -> tuple[int, dict[str, str], bytes]:
    return s.response()


def test_keep_alive_and_pipelining(node: NodeClient, daemon) -> None:
    node.put_function("add", add)
    s = connect(daemon)
    req = (b"POST /objects/add/call HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: 14\r\n\r\n{\"args\":[1,2]}")
    s.sendall(req * 3)  # three requests in one write
    for _ in range(3):
        status, _, body = read_response(s)
        assert status == 200
        assert json.loads(body)["result"] == 3
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(s)[0] == 200
    s.close()


def test_chunked_request_body(node: NodeClient, daemon) -> None:
    node.put_function("add", add)
    s = connect(daemon)
    s.sendall(b"POST /objects/add/call HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"5\r\n{\"arg\r\n9\r\ns\":[2,3]}\r\n0\r\n\r\n")
    status, _, body = read_response(s)
    assert status == 200 and json.loads(body)["result"] == 5
    s.close()


def test_expect_100_continue(node: NodeClient, daemon) -> None:
    node.put_function("add", add)
    s = connect(daemon)
    s.sendall(b"POST /objects/add/call HTTP/1.1\r\nHost: x\r\nContent-Length: 14\r\n"
              b"Expect: 100-continue\r\n\r\n")
    interim = s.recv(1024)
    assert interim.startswith(b"HTTP/1.1 100 Continue")
    s.sendall(b"{\"args\":[4,5]}")
    status, _, body = read_response(s)
    assert status == 200 and json.loads(body)["result"] == 9
    s.close()


def test_curl_json_call(node: NodeClient, daemon) -> None:
    node.put_function("add", add)
    try:
        out = subprocess.run(
            ["curl", "-s", "-X", "POST", f"{daemon.url}/objects/add/call", "-d",
             '{"args":[1,2]}'], capture_output=True, timeout=10, check=True,
        ).stdout
    except FileNotFoundError:
        import pytest

        pytest.skip("curl is not installed")
    assert json.loads(out)["result"] == 3


def test_head_unknown_route_and_bad_requests(daemon) -> None:
    resp = httpx.head(f"{daemon.url}/code/{'a' * 64}")
    assert resp.status_code == 404 and resp.content == b""
    assert httpx.get(f"{daemon.url}/nowhere").status_code == 404
    assert httpx.post(f"{daemon.url}/health").status_code == 405
    assert httpx.patch(f"{daemon.url}/objects/x").status_code == 405
    s = connect(daemon)
    s.sendall(b"garbage\r\n\r\n")
    assert read_response(s)[0] == 400
    s.close()


def test_caller_does_not_import_the_server_stack() -> None:
    code = ("import sys, den.node.caller; "
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('starlette', 'uvicorn', 'django', 'celery') or m == 'den.node.httpserver']; "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def _closed_after(s: Conn) -> bool:
    """True once the server has closed the connection (nothing more to read)."""
    s.sock.settimeout(5)
    try:
        while True:
            chunk = s.sock.recv(65536)
            if not chunk:
                return True
            s.buf += chunk
    except OSError:
        return True


def test_request_framing_that_could_smuggle_is_refused(daemon) -> None:
    """Lengths a front proxy might read differently are refused with 400 and the
    connection closed, instead of being guessed at (request smuggling)."""
    heads = [
        b"Content-Length: -5\r\n",
        b"Content-Length: +5\r\n",
        b"Content-Length: 1_0\r\n",
        b"Content-Length: 5\r\nContent-Length: 6\r\n",
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: chunkedx\r\n",
        b"Transfer-Encoding: gzip, chunked\r\n",
    ]
    for head in heads:
        s = connect(daemon)
        s.sendall(b"POST /health HTTP/1.1\r\nHost: x\r\n" + head + b"\r\nhello")
        status, _, body = read_response(s)
        assert status == 400, (head, status, body)
        assert _closed_after(s), head
        s.close()


def test_negative_content_length_does_not_replay_the_request(daemon) -> None:
    # Content-Length: -len(head) once moved the parser back onto the same head,
    # so the server answered the one request again and again.
    head = b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: -%d\r\n\r\n"
    size = len(head % 10)
    s = connect(daemon)
    s.sendall(head % size)
    assert read_response(s)[0] == 400
    assert _closed_after(s)
    assert b"HTTP/1.1 200" not in s.buf
    s.close()


def test_bad_chunk_framing_is_refused(node: NodeClient, daemon) -> None:
    node.put_function("add", add)
    bodies = [
        b"-3\r\nabc\r\n0\r\n\r\n",          # negative size
        b"0x5\r\n{\"arg\r\n0\r\n\r\n",       # not plain hex
        b"5\r\n{\"argXY9\r\ns\":[2,3]}\r\n0\r\n\r\n",  # data not followed by CRLF
    ]
    for chunked in bodies:
        s = connect(daemon)
        s.sendall(b"POST /objects/add/call HTTP/1.1\r\nHost: x\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n" + chunked)
        status, _, body = read_response(s)
        assert status == 400, (chunked, status, body)
        s.close()


def test_chunk_larger_than_the_body_limit_is_refused_before_it_arrives(tmp_path) -> None:
    from tests.node.conftest import Daemon

    d = Daemon(tmp_path, "--no-den-auth", "--max-body-mb", "1", "--max-code-mb", "1")
    try:
        s = connect(d)
        s.sendall(b"PUT /objects/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"%x\r\n" % (64 << 20))
        status, _, _ = read_response(s)  # answered without the 64 MB being sent
        assert status == 413
        s.close()
    finally:
        d.stop()


def test_a_call_whose_body_never_arrives_does_not_run(node: NodeClient, daemon, tmp_path) -> None:
    marker = tmp_path / "ran"

    def record(path=str(marker)):
        open(path, "w").close()  # noqa: SIM115
        return "ran"

    node.put_function("record", record)
    s = connect(daemon)
    s.sendall(b"POST /objects/record/call HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"ar")
    import time

    time.sleep(0.3)
    s.close()  # the client gives up mid-body
    time.sleep(1.0)
    assert not marker.exists(), "the call ran with no arguments after its body was cut short"
    assert node.call("record") == "ran"  # the daemon still serves
    assert marker.exists()


def _refused_with_400_and_closed(daemon, request: bytes) -> None:
    s = connect(daemon)
    s.sendall(request)
    status, _, body = read_response(s)
    assert status == 400, (request, status, body)
    assert json.loads(body)["error"]["code"] == "bad_request"
    assert _closed_after(s), request
    assert b"HTTP/1.1" not in s.buf, "a second response followed the refusal"
    s.close()


# Each of these may be read differently by a proxy in front (request smuggling), or
# is not HTTP/1.x at all. The hand-written parser before httptools took the first four.
SMUGGLING_HEADS = {
    "obs-fold": b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\r\n Y: b\r\n\r\n",
    # A proxy that unfolds reads one X-A header; the old parser read a Content-Length.
    "obs-fold content-length": b"POST /health HTTP/1.1\r\nHost: x\r\nX-A: a\r\n"
                               b" Content-Length: 5\r\n\r\nhello",
    "obs-fold with a tab": b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tY: b\r\n\r\n",
    "space before colon": b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length : 39\r\n\r\n"
                          b"GET /objects HTTP/1.1\r\nHost: x\r\n\r\n",
    "HTTP/9.9": b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n",
    "HTTP/1.1 without Host": b"GET /health HTTP/1.1\r\nX: y\r\n\r\n",
    "two Hosts": b"GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "HTTP/2.0": b"GET /health HTTP/2.0\r\nHost: x\r\n\r\n",
    "HTTP/0.9": b"GET /health HTTP/0.9\r\nHost: x\r\n\r\n",
    "bare LF": b"GET /health HTTP/1.1\r\nHost: x\nX: y\r\n\r\n",
    "control character": b"GET /health HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n",
    "tab before colon": b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length\t: 5\r\n\r\nhello",
    "two equal lengths": b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                         b"Content-Length: 5\r\n\r\nhello",
    "chunked in HTTP/1.0": b"POST /health HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "space in the target": b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
}


@pytest.mark.parametrize("name", SMUGGLING_HEADS)
def test_heads_a_proxy_may_read_differently_are_refused(daemon, name: str) -> None:
    _refused_with_400_and_closed(daemon, SMUGGLING_HEADS[name])


def test_plain_heads_still_work(daemon) -> None:
    s = connect(daemon)
    s.sendall(b"GET /health HTTP/1.0\r\n\r\n")  # HTTP/1.0 needs no Host
    assert read_response(s)[0] == 200
    s.close()
    s = connect(daemon)
    # Empty lines before a request line are ignored; case and spacing are free.
    s.sendall(b"\r\nGET /health?x=1 HTTP/1.1\r\nhOsT:x  \r\nX-Y:\t z\r\n\r\n")
    assert read_response(s)[0] == 200
    s.close()


def _echo_sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_body_arriving_in_pieces_is_received_whole(node: NodeClient, daemon) -> None:
    """The body buffer grows as data arrives (it starts at 1 MiB and doubles): bytes
    sent in small pieces across several growths arrive exactly."""
    node.put_function("sha", _echo_sha)
    data = os.urandom(5 << 20)
    body = pickle.dumps(((data,), {}), protocol=5)
    s = connect(daemon)
    s.sendall(b"POST /objects/sha/call HTTP/1.1\r\nHost: x\r\n"
              b"Content-Type: application/x-cloudpickle\r\nContent-Length: %d\r\n\r\n"
              % len(body))
    view = memoryview(body)
    for i in range(0, len(body), 256 << 10):
        s.sendall(view[i:i + (256 << 10)])
    status, _, frames = read_response(s)
    assert status == 200
    from den.node.caller import _frames_of

    (kind, payload), = list(_frames_of(frames))
    assert pickle.loads(payload) == hashlib.sha256(data).hexdigest()
    s.close()


def test_a_declared_body_takes_no_memory_before_it_arrives(tmp_path) -> None:
    """A head that declares 900 MB and sends one byte must not make the daemon
    allocate 900 MB (it once allocated, and zeroed, the declared length at once)."""
    d = Daemon(tmp_path, "--no-den-auth")
    try:
        with NodeClient(d.url, stream=None) as client:
            client.put_function("add", add)
        before = d.rss_bytes()
        s = connect(d)
        s.sendall(b"POST /objects/add/call HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n{" % (900 << 20))
        peak = before
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            peak = max(peak, d.rss_bytes())
            time.sleep(0.05)
        assert peak - before < 100 << 20, f"RSS grew by {(peak - before) >> 20} MB"
        s.close()
        with NodeClient(d.url, stream=None) as client:
            assert client.call("add", args=(1, 2)) == 3
    finally:
        d.stop()


def test_bodies_past_the_limits_are_refused_before_they_arrive(daemon) -> None:
    # Past the largest body the daemon takes at all (--max-body-mb, 1024 by default).
    s = connect(daemon)
    s.sendall(b"POST /objects/add/call HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
              % ((1024 << 20) + 1))
    status, _, body = read_response(s)
    error = json.loads(body)["error"]
    assert status == 413 and error["code"] == "too_large"
    assert "1024 MB" in error["message"] and "--max-body-mb" in error["message"]
    s.close()
    # A code bundle past --max-code-mb (512 by default), though under the daemon's
    # largest body: the route refuses it from its Content-Length, no body sent.
    s = connect(daemon)
    s.sendall(b"PUT /code/%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
              % (b"a" * 64, 600 << 20))
    status, _, body = read_response(s)
    error = json.loads(body)["error"]
    assert status == 413 and "--max-code-mb" in error["message"], error
    s.close()
