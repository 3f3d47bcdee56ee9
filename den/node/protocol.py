"""Wire formats shared by the daemon, its env workers and the caller library.

Two framings, both length-prefixed so that large payloads are never scanned or
escaped:

* **HTTP call responses** (``application/x-den-frames``): a sequence of frames, each
  ``struct "!BQ"`` (kind byte, payload length) followed by the payload.
* **Daemon <-> worker IPC** over a Unix socket pair: ``struct "!BIIQ"`` (kind byte,
  call id, meta length, body length), then ``meta`` (small JSON) and ``body`` (raw
  bytes, e.g. the caller's pickled arguments, passed through untouched).

Frame kinds (one ASCII byte; the same letters on both framings):

====  =================================================================
``O``  stdout text (UTF-8) produced while the call runs
``E``  stderr text
``L``  a formatted ``logging`` record (one or more lines)
``G``  the call returned a generator: ``Y`` frames follow, then ``R``
``Y``  one yielded item, encoded like a result
``R``  the result (for a generator: empty, marks the end of the stream)
``X``  an error: JSON ``{"code", "message", ...}`` (see :func:`error_payload`)
====  =================================================================

IPC-only kinds, daemon to worker: ``C`` call, ``P`` put an object, ``D`` delete an
object, ``K`` cancel a call; worker to daemon: ``H`` hello (the worker is ready).

This module imports nothing heavy: the thin client imports it.
"""

from __future__ import annotations

import json
import struct
from typing import Any

#: Content type of pickled call arguments and results.
CLOUDPICKLE = "application/x-cloudpickle"
#: Pickle protocol 5 with out-of-band buffers (see :func:`pack_oob`): what the caller
#: library sends, so large arrays cross without being copied into a pickle.
OOB_PICKLE = "application/x-den-pickle"
#: Content type of the framed call response stream.
FRAMES = "application/x-den-frames"
#: Content type of a newline-delimited JSON call response stream (curl users).
NDJSON = "application/x-ndjson"
JSON = "application/json"

#: Request header carrying the caller's per-call timeout in seconds.
TIMEOUT_HEADER = "x-den-timeout"
#: Request header naming the saved resource (``/alice/train``) a call's object is,
#: so that a daemon that restarted can put it back from den (den.node.restore).
ADDRESS_HEADER = "x-den-address"
#: Request header asking to keep a call's result on the cluster as a ref (den.Ref)
#: for that many seconds; the result frame then describes the ref.
KEEP_HEADER = "x-den-keep"
#: Request header listing (comma-separated) the keys of the refs in a call's
#: arguments, which the daemon checks before the worker hands their objects over.
REFS_HEADER = "x-den-refs"

HTTP_HEADER = struct.Struct("!BQ")
IPC_HEADER = struct.Struct("!BIIQ")

STDOUT = ord("O")
STDERR = ord("E")
LOG = ord("L")
GENERATOR = ord("G")
YIELD = ord("Y")
RESULT = ord("R")
ERROR = ord("X")

CALL = ord("C")
PUT = ord("P")
DELETE = ord("D")
CANCEL = ord("K")
HELLO = ord("H")

#: Output kinds and the stream names the caller's callback receives.
OUTPUT_KINDS = {STDOUT: "stdout", STDERR: "stderr", LOG: "log"}

#: Error codes (the ``code`` field of ``X`` frames and of JSON error bodies) and the
#: HTTP status the daemon answers with when it can still choose one.
ERROR_STATUS = {
    "bad_request": 400,
    "pickle_refused": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "ref_not_found": 404,
    "ref_gone": 404,
    "ref_expired": 410,
    "ref_elsewhere": 400,
    "method_not_allowed": 405,
    "too_large": 413,
    "remote_exception": 500,
    "env_failed": 500,
    "internal": 500,
    "worker_crashed": 502,
    "den_unavailable": 503,
    "cluster_stopping": 503,
    "timeout": 504,
}


_OOB_ALIGN = 64


def pack_oob(pickled: bytes, buffers: list[memoryview]) -> list[bytes | memoryview]:
    """Lay out a protocol-5 pickle and its out-of-band buffers as one payload.

    Layout: ``!I`` buffer count n, ``!Q`` x (n + 1) lengths (the pickle's, then each
    buffer's), the pickle, then each buffer at a 64-byte aligned offset (so arrays
    rebuilt on the receiving buffer are aligned). The buffers are not copied: the
    parts are written to the socket one after another.
    """
    n = len(buffers)
    lengths = [len(pickled), *(b.nbytes for b in buffers)]
    parts: list[bytes | memoryview] = [struct.pack(f"!I{n + 1}Q", n, *lengths), pickled]
    pos = 4 + 8 * (n + 1) + len(pickled)
    for buf in buffers:
        pad = -pos % _OOB_ALIGN
        if pad:
            parts.append(bytes(pad))
            pos += pad
        parts.append(buf)
        pos += buf.nbytes
    return parts


def unpack_oob(data: bytes | bytearray | memoryview) -> tuple[memoryview, list[memoryview]]:
    """Split a :func:`pack_oob` payload into the pickle and views of its buffers."""
    view = memoryview(data)
    (n,) = struct.unpack_from("!I", view, 0)
    lengths = struct.unpack_from(f"!{n + 1}Q", view, 4)
    pos = 4 + 8 * (n + 1)
    pickled = view[pos:pos + lengths[0]]
    pos += lengths[0]
    buffers = []
    for length in lengths[1:]:
        pos += -pos % _OOB_ALIGN
        buffers.append(view[pos:pos + length])
        pos += length
    return pickled, buffers


def http_frame_header(kind: int, length: int) -> bytes:
    """Header of one frame of an HTTP call response."""
    return HTTP_HEADER.pack(kind, length)


def error_payload(code: str, message: str, **extra: Any) -> bytes:
    """Encode an ``X`` frame's payload: JSON with at least ``code`` and ``message``."""
    return json.dumps({"code": code, "message": message, **extra}).encode()


def error_body(code: str, message: str, **extra: Any) -> bytes:
    """A JSON error body in den's REST shape: ``{"error": {"code", "message", ...}}``."""
    return json.dumps({"error": {"code": code, "message": message, **extra}}).encode()
