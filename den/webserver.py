"""den's web worker: gunicorn's tornado worker with Django on threads.

gunicorn's sync workers read a request head on the one thread that serves
the request, so a client that sends half a head and waits holds a worker;
two such sockets stop a two-worker den. Here tornado's event loop reads
request heads and bodies (every connection costs a socket and a little
memory, never a thread), and only a complete request goes to Django, on a
pool of ``threads`` threads. Each thread keeps its own database connection,
as under gunicorn's gthread worker, so Django's persistent connections and
async-unsafe checks work unchanged. Responses that stream (server-sent
events) run on a pool of their own, so open streams never take the threads
that answer other requests.

The README's Decisions section says why this worker and not gevent, gthread
or a reverse proxy, with the measurements.

Used by ``manage.py serve`` and, in docker-compose, as
``gunicorn --worker-class den.webserver.DenWorker``. This module is project
wiring: ``import den`` never imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from io import BytesIO
from typing import Any

from gunicorn.workers.gtornado import TornadoWorker
from tornado import escape, httputil, iostream
from tornado.http1connection import HTTP1Connection
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop, PeriodicCallback

log = logging.getLogger("den.webserver")

#: How long a connection may take to send a whole request head, and how long
#: a kept-alive connection may sit idle between requests (seconds).
HEAD_TIMEOUT = 30.0
#: How long a request body may take to arrive once its head has (seconds).
BODY_TIMEOUT = 60.0
MAX_HEAD_BYTES = 64 * 1024
#: Threads for streaming responses, per worker process, unless the worker
#: class says otherwise (``manage.py serve --stream-threads``).
STREAM_THREADS = 16

_PAYLOAD_FREE = (204, 304)


def _max_body_bytes() -> int:
    """Django's own request-body limit: bodies past it are answered 413
    without being read (DATA_UPLOAD_MAX_MEMORY_SIZE, 3 MiB in den)."""
    from django.conf import settings

    return int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)


class WSGIServer(httputil.HTTPServerConnectionDelegate):
    """A tornado request handler that runs a WSGI application on threads.

    Unlike ``tornado.wsgi.WSGIContainer`` it sends streaming responses as
    they are produced (that container buffers whole responses), answers an
    oversized body with 413 from its head, and calls the application's
    ``close()`` on the thread that served it, where Django's request-finished
    handlers expect to run.
    """

    def __init__(self, application: Callable[..., Iterable[bytes]], *, threads: int,
                 stream_threads: int, max_body_bytes: int,
                 access_log: Callable[..., None] | None = None) -> None:
        self.application = application
        self.executor: Executor = ThreadPoolExecutor(threads, thread_name_prefix="den-web")
        self.stream_executor: Executor = ThreadPoolExecutor(
            stream_threads, thread_name_prefix="den-stream")
        self.max_body_bytes = max_body_bytes
        self.access_log = access_log
        #: Requests being answered, event streams aside: a stopping worker
        #: lets these finish (streams are cut; their clients reconnect).
        self.in_flight = 0

    def start_request(self, server_conn: object,
                      request_conn: httputil.HTTPConnection) -> httputil.HTTPMessageDelegate:
        assert isinstance(request_conn, HTTP1Connection)  # what tornado's HTTPServer makes
        return _Exchange(self, request_conn)

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.stream_executor.shutdown(wait=False, cancel_futures=True)


class _Exchange(httputil.HTTPMessageDelegate):
    """One request on a connection: collect the body, then respond."""

    def __init__(self, server: WSGIServer, connection: HTTP1Connection) -> None:
        self.server = server
        self.connection = connection
        self.request: httputil.HTTPServerRequest | None = None
        self.body = bytearray()
        self.refused = False
        self.closed = False

    def headers_received(self, start_line: Any, headers: httputil.HTTPHeaders) -> Any:
        self.request = httputil.HTTPServerRequest(
            connection=self.connection, start_line=start_line, headers=headers)
        length = headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.server.max_body_bytes:
            return self._refuse_too_large()
        return None

    def data_received(self, chunk: bytes) -> Any:
        if self.refused:
            return None
        self.body += chunk
        if len(self.body) > self.server.max_body_bytes:  # a chunked body that grew too big
            return self._refuse_too_large()
        return None

    def finish(self) -> None:
        if self.refused or self.request is None:
            return
        self.request.body = bytes(self.body)
        self.body = bytearray()
        IOLoop.current().spawn_callback(self._respond, self.request)

    def on_connection_close(self) -> None:
        self.closed = True
        self.body = bytearray()

    async def _refuse_too_large(self) -> None:
        """413 from the head alone, then close: the body is never read."""
        self.refused = True
        self.body = bytearray()
        message = (f"The request body is larger than {self.server.max_body_bytes} bytes, "
                   "the most den accepts; send a smaller one.")
        body = json.dumps({"error": {"code": "too_large", "message": message,
                                     "field": None}}).encode()
        headers = httputil.HTTPHeaders({"Content-Type": "application/json",
                                        "Content-Length": str(len(body)),
                                        "Connection": "close"})
        start = httputil.ResponseStartLine("HTTP/1.1", 413, "Request Entity Too Large")
        with contextlib.suppress(iostream.StreamClosedError):
            await self.connection.write_headers(start, headers, chunk=body)
        self.connection.finish()  # with the body unread, tornado closes the connection

    async def _respond(self, request: httputil.HTTPServerRequest) -> None:
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        environ = _environ(request, multithread=True)
        reply: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]],
                           exc_info: Any = None) -> Callable[[bytes], None]:
            if exc_info is not None and reply.get("sent"):
                raise exc_info[1].with_traceback(exc_info[2])
            reply["status"], reply["headers"] = status, headers
            return _no_write

        result: Any = None
        self.server.in_flight += 1
        counted = True
        try:
            result, body = await loop.run_in_executor(
                self.server.executor, _call, self.server.application, environ, start_response)
            start, headers = _response_head(reply["status"], reply["headers"])
            reply["sent"] = True
            head = request.method == "HEAD"
            if body is None:
                streaming, result = result, None
                self.server.in_flight -= 1
                counted = False
                await self._stream(start, headers, streaming, head)  # closes it
            else:  # the whole body is here already
                if (start.code not in _PAYLOAD_FREE and start.code >= 200
                        and "Content-Length" not in headers):
                    headers["Content-Length"] = str(len(body))
                self.connection.write_headers(start, headers, chunk=b"" if head else body)
                self.connection.finish()
            self._log(request, start.code, started, headers.get("X-Request-ID"))
        except iostream.StreamClosedError:
            pass  # the client went away
        except Exception:
            log.exception("den's web server failed to answer %s %s", request.method, request.path)
            if reply.get("sent"):
                self.connection.close()  # mid-response: all the client can be told
            else:
                self._send_error()
        finally:
            if counted:
                self.server.in_flight -= 1
            if result is not None:  # a stream that never started
                await loop.run_in_executor(self.server.stream_executor, _close_stream, result)

    async def _stream(self, start: httputil.ResponseStartLine, headers: httputil.HTTPHeaders,
                      result: Any, head: bool) -> None:
        """Send each chunk as the application makes it. A file response reads
        on the request threads; anything else (an event stream that waits
        between frames) on the stream threads."""
        loop = asyncio.get_running_loop()
        on_stream_threads = getattr(result, "file_to_stream", None) is None
        pool = self.server.stream_executor if on_stream_threads else self.server.executor
        chunks = iter(result)
        # Notice a client that leaves while the application is between chunks.
        self.connection.set_close_callback(self.on_connection_close)
        try:
            await self.connection.write_headers(start, headers)
            while not self.closed:
                chunk = await loop.run_in_executor(pool, _next_chunk, chunks)
                if chunk is None:
                    break
                if chunk and not head:
                    await self.connection.write(chunk)  # waits while the client is slow
            if not self.closed:
                self.connection.finish()
        except iostream.StreamClosedError:
            pass  # the client went away; closing the response below ends the stream
        except Exception:
            log.exception("A streaming response failed")
            self.connection.close()  # cut short, so the client does not take it as whole
        finally:
            await loop.run_in_executor(pool, _close_stream, result, on_stream_threads)

    def _send_error(self) -> None:
        body = b"Internal Server Error"
        headers = httputil.HTTPHeaders({"Content-Type": "text/plain",
                                        "Content-Length": str(len(body)),
                                        "Connection": "close"})
        start = httputil.ResponseStartLine("HTTP/1.1", 500, "Internal Server Error")
        with contextlib.suppress(Exception):
            self.connection.write_headers(start, headers, chunk=body)
            self.connection.finish()

    def _log(self, request: httputil.HTTPServerRequest, status: int, started: float,
             request_id: str | None = None) -> None:
        if self.server.access_log is not None:
            took = (time.monotonic() - started) * 1000
            # The request line only: headers (and so tokens) never reach a log.
            # Its request id (ops.logs) and fields go along for JSON lines.
            self.server.access_log(
                f'{request.remote_ip} "{request.method} {request.uri} {request.version}" '
                f"{status} {took:.1f}ms",
                extra={"request_id": request_id, "method": request.method, "path": request.path,
                       "status": status, "duration_ms": round(took, 1),
                       "remote": request.remote_ip})


def _response_head(status_line: str, header_list: list[tuple[str, str]]
                   ) -> tuple[httputil.ResponseStartLine, httputil.HTTPHeaders]:
    code, _, reason = status_line.partition(" ")
    headers = httputil.HTTPHeaders()
    for name, value in header_list:
        # Django's Set-Cookie values start with a space; tornado refuses those.
        headers.add(name, value.strip())
    if "Date" not in headers:
        headers["Date"] = httputil.format_timestamp(time.time())
    return httputil.ResponseStartLine("HTTP/1.1", int(code), reason), headers


def _no_write(data: bytes) -> None:
    raise NotImplementedError("den's web server does not support WSGI's write() callable.")


def _call(application: Callable[..., Iterable[bytes]], environ: dict[str, Any],
          start_response: Callable[..., Any]) -> tuple[Any, bytes | None]:
    """Run the application; a response that does not stream is read and
    closed here, on the same thread, in one go."""
    result = application(environ, start_response)
    if getattr(result, "streaming", False):
        return result, None
    try:
        return None, b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()


def _next_chunk(chunks: Iterator[bytes]) -> bytes | None:
    try:
        return next(chunks)
    except StopIteration:
        return None


def _close_stream(result: Any, release_connections: bool = True) -> None:
    """Close a streaming response on the thread that served its chunks; on a
    stream thread, also give back that thread's database connection: stream
    threads are many and mostly idle, and should not each hold one open."""
    try:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    finally:
        if release_connections:
            from django.db import connections

            connections.close_all()


def _environ(request: httputil.HTTPServerRequest, *, multithread: bool) -> dict[str, Any]:
    """The WSGI environ of a tornado request (as ``tornado.wsgi`` builds it)."""
    host, port = request.host, "443" if request.protocol == "https" else "80"
    if request.host.count(":") == 1:
        host, port = request.host.split(":")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": escape.url_unescape(request.path, encoding=None, plus=False).decode("latin-1"),
        "QUERY_STRING": request.query,
        "REMOTE_ADDR": request.remote_ip,
        "SERVER_NAME": host,
        "SERVER_PORT": port,
        "SERVER_PROTOCOL": request.version,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": request.protocol,
        "wsgi.input": BytesIO(request.body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": multithread,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    if request.body and "Content-Length" not in request.headers:  # it came chunked
        environ["CONTENT_LENGTH"] = str(len(request.body))
    for name, value in request.headers.get_all():
        if name == "Content-Type":
            environ["CONTENT_TYPE"] = value
        elif name == "Content-Length":
            environ["CONTENT_LENGTH"] = value
        else:
            key = "HTTP_" + name.replace("-", "_").upper()
            environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


class DenWorker(TornadoWorker):
    """gunicorn's tornado worker, serving a WSGI app through ``WSGIServer``
    with bounded head and body times (gunicorn's ``--threads`` sets the
    request threads; ``stream_threads`` the streaming ones)."""

    stream_threads = int(os.environ.get("DEN_WEB_STREAM_THREADS", STREAM_THREADS))
    _stopping_since: float | None = None

    def heartbeat(self) -> None:
        """gunicorn's tornado heartbeat stops the loop a second after it stops
        accepting; wait first for requests in flight (up to the graceful
        timeout), as a sync worker finishes its request."""
        if not self.alive and not self.server_alive:
            if self._stopping_since is None:
                self._stopping_since = time.monotonic()
                # Kept-alive connections close after the response they are on.
                self.server.conn_params.no_keep_alive = True
            if (self.wsgi_server.in_flight > 0
                    and time.monotonic() - self._stopping_since < self.cfg.graceful_timeout):
                return
        super().heartbeat()

    def run(self) -> None:  # gunicorn's TornadoWorker.run, with den's server
        with contextlib.suppress(ImportError):  # den[node] brings it; a little faster
            import uvloop

            asyncio.set_event_loop(uvloop.new_event_loop())
        self.ioloop = IOLoop.current()
        self.alive = True
        self.server_alive = False
        self.callbacks = [PeriodicCallback(self.watchdog, 1000),
                          PeriodicCallback(self.heartbeat, 1000)]
        for callback in self.callbacks:
            callback.start()
        access = self.log.access_log.info if self.cfg.accesslog else None
        self.wsgi_server = WSGIServer(
            self.wsgi, threads=max(1, self.cfg.threads), stream_threads=self.stream_threads,
            max_body_bytes=_max_body_bytes(), access_log=access)
        worker = self

        class Server(HTTPServer):
            def on_close(self, server_conn: object) -> None:
                worker.handle_request()
                super().on_close(server_conn)

        server = Server(
            self.wsgi_server,
            no_keep_alive=self.cfg.keepalive <= 0,
            idle_connection_timeout=HEAD_TIMEOUT,
            body_timeout=BODY_TIMEOUT,
            max_header_size=MAX_HEAD_BYTES,
            # den refuses big bodies itself (413, from the head); tornado's
            # own limit would answer a bare 400 first.
            max_body_size=2**40,
        )
        self.server = server
        self.server_alive = True
        for sock in self.sockets:
            sock.setblocking(False)
            server.add_socket(sock)
        self.ioloop.start()
        self.wsgi_server.shutdown()
