"""The daemon's own HTTP/1.1 server, spoken to over raw sockets like odd clients do."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import httpx

from den.node.caller import NodeClient


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
