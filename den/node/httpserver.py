"""A small HTTP/1.1 server for ASGI apps, tuned for the daemon's two hot paths.

Why not only uvicorn: measured here, uvicorn's request-body path takes 0.4-0.8 s to
receive 100 MB (about 150-270 MB/s), and its per-request overhead dominates a no-op
call. This server reads a large request body straight into one buffer
(``asyncio.BufferedProtocol``), hands it to the app as one message, writes a
response's head and first body in one ``write``, and does little else per request.
uvicorn stays available (``--http-server uvicorn``); the app is plain ASGI.

Request heads are parsed by httptools (llhttp, the parser behind Node.js), or by
h11 (pure Python) where httptools is not importable: a host's Python may have no
wheel of it. ``DEN_NODE_HTTP_PARSER=httptools|h11`` picks one (default: httptools
if it imports). Either way den adds the same checks on top, so both refuse the same
heads with 400 and close the connection: anything but HTTP/1.0 and 1.1, a 1.1
request without exactly one ``Host`` (1.0: at most one), obsolete line folding, bare
CR or LF, control characters, a space before a header's colon, more than one
``Content-Length``, a ``Transfer-Encoding`` other than ``chunked`` or beside a
``Content-Length`` (shapes a proxy in front may read differently: request
smuggling). Bodies never go through either parser: a ``Content-Length`` body is
received straight into the buffer the app gets, which grows as the bytes arrive
(never to the declared length up front, which would let a head that declares
gigabytes and sends nothing take that much memory); chunked bodies are decoded
here.

Supported: keep-alive and pipelining (requests on a connection are served in
order), ``Content-Length`` and chunked request bodies, ``Expect: 100-continue``,
chunked or sized responses, ``HEAD``, write flow control, an idle timeout, and the
ASGI lifespan protocol. A request body is only read once the app asks for it
(``receive()``), so a request refused before that (e.g. unauthorised) is answered
without its body being received; the connection is then closed. No HTTP/2, no
WebSocket. TLS is asyncio's own (``ssl_context``): a daemon that listens beyond
loopback serves HTTPS with the certificate den made for its cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import ssl
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import Any
from urllib.parse import unquote

log = logging.getLogger("den.node.http")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
App = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
               Coroutine[Any, Any, None]]

MAX_HEAD = 64 * 1024
#: A Content-Length body's buffer starts this large and doubles as bytes arrive.
BODY_STEP = 1 << 20
_STATUS = {
    100: b"Continue", 200: b"OK", 201: b"Created", 204: b"No Content", 400: b"Bad Request",
    401: b"Unauthorized", 403: b"Forbidden", 404: b"Not Found", 405: b"Method Not Allowed",
    408: b"Request Timeout", 411: b"Length Required", 412: b"Precondition Failed",
    413: b"Content Too Large", 431: b"Request Header Fields Too Large",
    500: b"Internal Server Error", 502: b"Bad Gateway", 503: b"Service Unavailable",
    504: b"Gateway Timeout",
}


def _status_line(status: int) -> bytes:
    return b"HTTP/1.1 %d %s\r\n" % (status, _STATUS.get(status, b"Status"))


# -- request heads ----------------------------------------------------------------

#: (method, target, HTTP version, headers with lower-case names and stripped values)
Head = tuple[bytes, bytes, bytes, list[tuple[bytes, bytes]]]


class BadHead(Exception):
    """A request head den refuses (400, then the connection is closed)."""


# Control characters other than HTAB; CR and LF are checked as line ends.
_CTL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Content-Length header lines (h11 merges repeated equal ones before den sees them).
_CONTENT_LENGTH = re.compile(rb"^content-length:", re.IGNORECASE | re.MULTILINE)


def _check_raw_head(head: bytes) -> None:
    """What both parsers must refuse, whatever their own leniencies (h11 unfolds
    obs-fold lines and takes bare LF; llhttp takes neither)."""
    if head.count(b"\n") != head.count(b"\r\n") or head.count(b"\r") != head.count(b"\r\n"):
        raise BadHead("lines must end with CRLF")
    if b"\r\n " in head or b"\r\n\t" in head:
        raise BadHead("obsolete line folding is not accepted")
    if _CTL.search(head):
        raise BadHead("control character in the request head")
    if len(_CONTENT_LENGTH.findall(head)) > 1:
        raise BadHead("ambiguous or unsupported request body framing")


class _HttptoolsHead:
    """Callbacks of one httptools parse: the head's URL and headers."""

    __slots__ = ("complete", "headers", "url")

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.complete = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value.strip()))

    def on_headers_complete(self) -> None:
        self.complete = True


def parse_head_httptools(head: bytes) -> Head:
    """Parse a complete request head (through its blank line) with llhttp."""
    import httptools

    cb = _HttptoolsHead()
    parser = httptools.HttpRequestParser(cb)
    try:
        parser.feed_data(head)
    except httptools.HttpParserUpgrade:
        pass  # parsed; den serves no upgrades (nor CONNECT), the route answers
    except httptools.HttpParserError as exc:
        raise BadHead(f"malformed request head ({exc})") from None
    if not cb.complete:
        raise BadHead("malformed request head")
    return (parser.get_method(), cb.url, parser.get_http_version().encode(), cb.headers)


def parse_head_h11(head: bytes) -> Head:
    """Parse a complete request head with h11 (pure Python: the fallback)."""
    import h11

    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD + 4)
    try:
        conn.receive_data(head)
        event = conn.next_event()
    except h11.RemoteProtocolError as exc:
        raise BadHead(f"malformed request head ({exc})") from None
    if not isinstance(event, h11.Request):
        raise BadHead("malformed request head")
    headers = [(name, value.strip()) for name, value in event.headers]
    return (event.method, event.target, event.http_version, headers)


def head_parser(name: str | None = None) -> tuple[str, Callable[[bytes], Head]]:
    """The head parser to use: ``name``, else ``DEN_NODE_HTTP_PARSER``, else httptools
    when it imports and h11 otherwise."""
    choice = (name or os.environ.get("DEN_NODE_HTTP_PARSER") or "auto").strip().lower()
    if choice not in ("auto", "httptools", "h11"):
        raise SystemExit(f"DEN_NODE_HTTP_PARSER must be httptools or h11, not {choice!r}")
    if choice in ("auto", "httptools"):
        try:
            import httptools  # noqa: F401
        except ImportError:
            if choice == "httptools":
                raise SystemExit("DEN_NODE_HTTP_PARSER=httptools, but httptools does not "
                                 "import here: install den[node], or use h11") from None
        else:
            return "httptools", parse_head_httptools
    return "h11", parse_head_h11


def _framing(version: bytes, headers: list[tuple[bytes, bytes]]
             ) -> tuple[int, bool, bool, bool]:
    """(Content-Length, chunked, close after, expects 100-continue) of a parsed head,
    refusing what either parser lets through that den does not accept."""
    if version not in (b"1.0", b"1.1"):
        raise BadHead(f"HTTP/{version.decode('latin-1')} is not supported: use HTTP/1.1")
    length = 0
    lengths = 0
    hosts = 0
    encodings: list[bytes] = []
    close = version == b"1.0"
    expect_continue = False
    for name, value in headers:
        if name == b"content-length":
            # Digits only: int() would also take "-5", "+5" and "1_0", which a
            # proxy in front may read differently (request smuggling).
            if not value.isdigit():
                raise BadHead("bad content-length")
            lengths += 1
            length = int(value)
        elif name == b"transfer-encoding":
            encodings.append(value.lower())
        elif name == b"host":
            hosts += 1
        elif name == b"connection":
            v = value.lower()
            if b"close" in v:
                close = True
            elif b"keep-alive" in v:
                close = False
        elif name == b"expect":
            expect_continue = value.lower() == b"100-continue"
    if hosts > 1 or (version == b"1.1" and hosts == 0):
        raise BadHead("an HTTP/1.1 request needs exactly one Host header")
    # Ambiguous framing is refused, never guessed at (RFC 9112, section 6.3).
    chunked = bool(encodings)
    if lengths > 1 or (chunked and (lengths or encodings != [b"chunked"] or version == b"1.0")):
        raise BadHead("ambiguous or unsupported request body framing")
    return length, chunked, close, expect_continue


class _Request:
    """One request's state: its scope, body, and how far its response has got."""

    __slots__ = ("body", "body_ready", "chunked", "close", "delivered", "expect_continue",
                 "head", "head_only", "length", "response_done", "scope", "sent_chunked",
                 "started", "want_body")

    def __init__(self, scope: Scope, length: int, chunked: bool, close: bool,
                 expect_continue: bool) -> None:
        self.scope = scope
        self.length = length
        self.chunked = chunked
        self.close = close
        self.expect_continue = expect_continue
        self.head_only = scope["method"] == "HEAD"
        self.body: bytes | bytearray | None = None
        self.body_ready: asyncio.Future[None] | None = None
        self.want_body = False
        self.delivered = False
        self.head: bytes | None = None
        self.started = False
        self.sent_chunked = False
        self.response_done = False


class HttpProtocol(asyncio.BufferedProtocol):
    """One client connection."""

    def __init__(self, app: App, server: HttpServer) -> None:
        self.app = app
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray(MAX_HEAD)
        self.start = 0
        self.end = 0
        self.req: _Request | None = None
        # A large body is read straight into its own buffer, grown as bytes arrive
        # up to its declared length.
        self.target: bytearray | None = None
        self.target_pos = 0
        self.target_len = 0
        # Chunked request body decoding state.
        self.chunks: list[bytes] | None = None
        self.chunks_size = 0
        self.paused_reading = False
        self.paused_writing = False
        self.drain_waiter: asyncio.Future[None] | None = None
        self.disconnected: asyncio.Future[None] = self.loop.create_future()
        self.idle_timer: asyncio.TimerHandle | None = None
        self.client: tuple[str, int] | None = None
        self.sockname: tuple[str, int] | None = None

    # -- connection -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            import socket

            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        self.client = tuple(peer[:2]) if isinstance(peer, tuple) else None  # type: ignore[assignment]
        local = transport.get_extra_info("sockname")
        self.sockname = tuple(local[:2]) if isinstance(local, tuple) else None  # type: ignore[assignment]
        self.server.connections.add(self)
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        if not self.disconnected.done():
            self.disconnected.set_result(None)
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)
        req = self.req
        if req is not None and req.body_ready is not None and not req.body_ready.done():
            req.body_ready.set_result(None)
        if self.idle_timer is not None:
            self.idle_timer.cancel()

    def _arm_idle(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        self.idle_timer = self.loop.call_later(self.server.keep_alive, self._idle_close)

    def _idle_close(self) -> None:
        if self.req is None and self.transport is not None:
            self.transport.close()

    def _close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    # -- reading ----------------------------------------------------------------
    def get_buffer(self, sizehint: int) -> memoryview:
        if self.target is not None:
            if self.target_pos == len(self.target):
                self._grow_target()
            return memoryview(self.target)[self.target_pos:]
        if self.end == len(self.buf):
            # Move what is left to the front (or into a bigger buffer, for a head or
            # a chunk larger than this one); never resize a buffer that was lent out.
            left = self.end - self.start
            size = len(self.buf) * 2 if left * 2 > len(self.buf) else len(self.buf)
            new = bytearray(size)
            new[:left] = self.buf[self.start:self.end]
            self.buf, self.start, self.end = new, 0, left
        return memoryview(self.buf)[self.end:]

    def _grow_target(self) -> None:
        """Make room for more of the body: double the buffer, up to the declared length.

        Growing in place (realloc) keeps what arrived where it is (on Linux a large
        block is remapped, not copied); the buffer is never lent out here, since
        the view the loop read into is released before it asks for the next one.
        """
        assert self.target is not None
        old = len(self.target)
        new = min(self.target_len, max(old * 2, old + BODY_STEP))
        try:
            self.target.extend(bytes(new - old))
        except BufferError:  # a view of it is still alive somewhere: copy instead
            grown = bytearray(new)
            grown[:old] = self.target
            self.target = grown

    def buffer_updated(self, nbytes: int) -> None:
        if self.target is not None:
            self.target_pos += nbytes
            if self.target_pos == self.target_len:
                body, self.target = self.target, None
                self._body_complete(body)
            return
        self.end += nbytes
        self._process()

    def _pause(self) -> None:
        if not self.paused_reading and self.transport is not None:
            self.paused_reading = True
            self.transport.pause_reading()

    def _resume(self) -> None:
        if self.paused_reading and self.transport is not None:
            self.paused_reading = False
            self.transport.resume_reading()

    def _process(self) -> None:
        """Parse what is buffered: a new request's head, or the current one's body."""
        while True:
            req = self.req
            if req is not None:
                if req.body is None and req.want_body:
                    if not self._read_body(req):
                        return
                    continue
                # Busy with a request: keep further (pipelined) bytes for later.
                if self.end - self.start > MAX_HEAD:
                    self._pause()
                return
            if self.start == self.end:
                self.start = self.end = 0
                return
            if not self._parse_head():
                return

    def _parse_head(self) -> bool:
        buf = self.buf
        # Empty lines before a request line are ignored (RFC 9112, section 2.2).
        while self.end - self.start >= 2 and buf[self.start:self.start + 2] == b"\r\n":
            self.start += 2
        idx = buf.find(b"\r\n\r\n", self.start, self.end)
        if idx < 0:
            if self.end - self.start > MAX_HEAD:
                self._reject(431, "request head too large")
            return False
        if idx - self.start > MAX_HEAD:
            self._reject(431, "request head too large")
            return False
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        raw = bytes(buf[self.start:idx + 4])
        self.start = idx + 4
        try:
            _check_raw_head(raw)
            method, target, version, headers = self.server.parse_head(raw)
            length, chunked, close, expect_continue = _framing(version, headers)
        except BadHead as exc:
            self._reject(400, str(exc))
            return False
        if length > self.server.max_body:
            self._reject(413, f"the request body is larger than this daemon accepts "
                              f"({self.server.max_body >> 20} MB: see --max-body-mb and "
                              "--max-code-mb)")
            return False
        path_b, _, query = target.partition(b"?")
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": version.decode(),
            "method": method.decode("ascii", "replace"),
            "scheme": self.server.scheme,
            "path": unquote(path_b.decode("latin-1")),
            "raw_path": path_b,
            "query_string": query,
            "root_path": "",
            "headers": headers,
            "client": self.client,
            "server": self.sockname,
        }
        req = _Request(scope, length, chunked, close, expect_continue)
        if chunked:
            req.length = -1
        elif length == 0:
            req.body = b""
        elif self.end - self.start >= length:
            req.body = bytes(buf[self.start:self.start + length])
            self.start += length
        self.req = req
        task = self.loop.create_task(self._run(req))
        self.server.tasks.add(task)
        task.add_done_callback(self.server.tasks.discard)
        return True

    def _read_body(self, req: _Request) -> bool:
        """Progress the body of ``req`` from the buffer; True once it is complete."""
        if req.chunked:
            return self._read_chunked(req)
        have = self.end - self.start
        if have >= req.length:
            body = bytes(self.buf[self.start:self.start + req.length])
            self.start += req.length
            self._body_complete(body)
            return True
        # Not the declared length at once: only what arrived, and room for more.
        target = bytearray(min(req.length, have + BODY_STEP))
        target[:have] = self.buf[self.start:self.end]
        self.start = self.end = 0
        self.target, self.target_pos, self.target_len = target, have, req.length
        return False

    def _read_chunked(self, req: _Request) -> bool:
        if self.chunks is None:
            self.chunks = []
            self.chunks_size = 0
        buf = self.buf
        while True:
            idx = buf.find(b"\r\n", self.start, self.end)
            if idx < 0:
                if self.end - self.start > MAX_HEAD:
                    self._reject(400, "bad chunk size")
                return False
            size_text = bytes(buf[self.start:idx]).split(b";", 1)[0].strip()
            # Hex digits only: int(..., 16) would also take "-3", "0x5" and "1_0".
            if not 0 < len(size_text) <= 16 or size_text.strip(b"0123456789abcdefABCDEF"):
                self._reject(400, "bad chunk size")
                return False
            size = int(size_text, 16)
            if self.chunks_size + size > self.server.max_body:
                # Refused before the chunk is buffered, not after.
                self._reject(413, f"the request body is larger than this daemon accepts "
                                  f"({self.server.max_body >> 20} MB)")
                return False
            if size == 0:
                # The last chunk: skip any trailers up to the blank line.
                end = buf.find(b"\r\n\r\n", idx, self.end)
                if end < 0:
                    if self.end - idx > MAX_HEAD:
                        self._reject(431, "request trailers too large")
                    return False
                self.start = end + 4
                body = b"".join(self.chunks)
                self.chunks = None
                self._body_complete(body)
                return True
            data_start = idx + 2
            if self.end - data_start < size + 2:
                return False
            if buf[data_start + size:data_start + size + 2] != b"\r\n":
                self._reject(400, "chunk data not followed by CRLF")
                return False
            self.chunks.append(bytes(buf[data_start:data_start + size]))
            self.chunks_size += size
            self.start = data_start + size + 2

    def _body_complete(self, body: bytes | bytearray) -> None:
        req = self.req
        if req is None:
            return
        req.body = body
        if req.body_ready is not None and not req.body_ready.done():
            req.body_ready.set_result(None)

    def _reject(self, status: int, message: str) -> None:
        """Answer a request we cannot parse and close the connection."""
        if self.transport is not None and not self.transport.is_closing():
            code = "too_large" if status == 413 else "bad_request"
            body = json.dumps({"error": {"code": code, "message": message}}).encode()
            self.transport.write(
                _status_line(status)
                + b"content-type: application/json\r\ncontent-length: %d\r\n"
                b"connection: close\r\n\r\n" % len(body)
                + body
            )
        self._close()

    # -- the ASGI cycle ---------------------------------------------------------
    async def _run(self, req: _Request) -> None:
        async def receive() -> Message:
            if not req.delivered:
                if req.body is None and not self.disconnected.done():
                    if req.expect_continue and self.transport is not None:
                        req.expect_continue = False
                        self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    req.want_body = True
                    req.body_ready = self.loop.create_future()
                    self._resume()
                    self._process()
                    if req.body is None:
                        await req.body_ready
                if req.body is not None:
                    req.delivered = True
                    return {"type": "http.request", "body": req.body, "more_body": False}
            await self.disconnected
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            await self._send(req, message)

        try:
            await self.app(req.scope, receive, send)
        except Exception:
            log.exception("the app failed on %s %s", req.scope["method"], req.scope["path"])
            if not req.started and self.transport is not None:
                await self._send(req, {"type": "http.response.start", "status": 500,
                                       "headers": [(b"content-type", b"text/plain")]})
                await self._send(req, {"type": "http.response.body",
                                       "body": b"internal server error"})
            else:
                req.close = True
        if not req.response_done:
            req.close = True
        self._finish(req)

    def _finish(self, req: _Request) -> None:
        self.req = None
        if req.close or req.body is None or self.transport is None or \
                self.transport.is_closing():
            # An unread body is still on the wire: the connection cannot be reused.
            self._close()
            return
        self._arm_idle()
        self._resume()
        self._process()

    async def _send(self, req: _Request, message: Message) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        mtype = message["type"]
        if mtype == "http.response.start":
            req.started = True
            status = message["status"]
            headers = message.get("headers", [])
            has_length = False
            parts = [_status_line(status)]
            for name, value in headers:
                if name.lower() == b"content-length":
                    has_length = True
                parts.append(b"%s: %s\r\n" % (name, value))
            if not has_length and not req.head_only and status not in (204, 304):
                req.sent_chunked = True
                parts.append(b"transfer-encoding: chunked\r\n")
            if req.close or req.body is None:
                parts.append(b"connection: close\r\n")
                req.close = True
            parts.append(b"\r\n")
            req.head = b"".join(parts)
            return
        if mtype != "http.response.body":
            return
        body = message.get("body", b"")
        more = message.get("more_body", False)
        head, req.head = req.head, None
        if req.head_only:
            body = b""
        if req.sent_chunked:
            out = []
            if body:
                out.append(b"%x\r\n" % len(body))
                out.append(body)
                out.append(b"\r\n")
            if not more:
                out.append(b"0\r\n\r\n")
            data = b"".join(out)
            transport.write(head + data if head is not None else data)
        elif head is not None and len(body) < 1 << 16:
            transport.write(head + body)
        else:
            if head is not None:
                transport.write(head)
            if body:
                transport.write(body)
        if not more:
            req.response_done = True
        if self.paused_writing:
            await self._drain()

    # -- write flow control -----------------------------------------------------
    def pause_writing(self) -> None:
        self.paused_writing = True

    def resume_writing(self) -> None:
        self.paused_writing = False
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    async def _drain(self) -> None:
        while self.paused_writing and not self.disconnected.done():
            self.drain_waiter = self.loop.create_future()
            await self.drain_waiter


class HttpServer:
    """Serves an ASGI app until stopped; runs its lifespan around that."""

    def __init__(self, app: App, host: str, port: int, *, max_body: int = 1 << 30,
                 keep_alive: float = 75.0, parser: str | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.app = app
        #: With a context, connections are TLS (asyncio's own TLS transport)
        #: and requests' scheme is https.
        self.ssl_context = ssl_context
        self.scheme = "https" if ssl_context is not None else "http"
        self.host = host
        self.port = port
        self.max_body = max_body
        self.parser_name, self.parse_head = head_parser(parser)
        self.keep_alive = keep_alive
        self.connections: set[HttpProtocol] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.should_exit = asyncio.Event()

    def request_stop(self) -> None:
        self.should_exit.set()

    async def _lifespan(self) -> tuple[Callable[[], Awaitable[None]], asyncio.Task[None]]:
        inbox: asyncio.Queue[Message] = asyncio.Queue()
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        stopped: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def receive() -> Message:
            return await inbox.get()

        async def send(message: Message) -> None:
            kind = message["type"]
            if kind == "lifespan.startup.complete":
                started.set_result(None)
            elif kind == "lifespan.startup.failed":
                started.set_exception(RuntimeError(message.get("message", "start-up failed")))
            elif kind.startswith("lifespan.shutdown") and not stopped.done():
                stopped.set_result(None)

        task = asyncio.get_running_loop().create_task(
            self.app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
        )
        await inbox.put({"type": "lifespan.startup"})
        await started

        async def shutdown() -> None:
            await inbox.put({"type": "lifespan.shutdown"})
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stopped, 30)

        return shutdown, task

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        shutdown, lifespan_task = await self._lifespan()
        server = await loop.create_server(lambda: HttpProtocol(self.app, self), self.host,
                                          self.port, reuse_address=True, backlog=2048,
                                          ssl=self.ssl_context)
        log.info("listening on %s://%s:%s (HTTP parser: %s)", self.scheme, self.host,
                 self.port, self.parser_name)
        try:
            await self.should_exit.wait()
        finally:
            server.close()
            for conn in list(self.connections):
                if conn.req is None:
                    conn._close()
            if self.tasks:
                await asyncio.wait(list(self.tasks), timeout=10)
            for conn in list(self.connections):
                conn._close()
            await shutdown()
            lifespan_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await lifespan_task
