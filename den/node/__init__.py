"""den node daemon: an HTTP object server that runs on a cluster host.

It holds named **functions** and **modules** (class instances), each inside an
**env** whose worker is its own process, and calls them. No Django, no Celery.
The caller side, :mod:`den.node.caller`, needs only httpx and cloudpickle.

Start it::

    python -m den.node --host 127.0.0.1 --port 32300 --den-url URL \\
        --cluster-token-file - --cluster-address /alice/cpu [--no-den-auth] \\
        [--auth-cache-seconds 10] [--workdir DIR] [--autostop-mins M] \\
        [--heartbeat-seconds 30] [--call-timeout S] [--http-server den|uvicorn] \\
        [--tls-cert-file PEM --tls-key-file PEM] [--keep-token-file]

Every flag but the token's also reads ``DEN_NODE_<FLAG>`` (e.g.
``DEN_NODE_DEN_URL``, ``DEN_NODE_DEN_AUTH=0``). The cluster token comes on
stdin (``-``) or in a 0600 file the daemon deletes once read, never in a flag
or a variable, which ``/proc`` shows to every process of the same user; the
daemon is non-dumpable, so its memory and environment are not readable there
either. Nothing the daemon starts (env workers, ``setup_cmds``, pip) sees a
``DEN_NODE_*`` variable or the token (:func:`den.node.envs.child_env`).

With ``--tls-cert-file``/``--tls-key-file`` it serves HTTPS (den gives a
daemon that listens beyond loopback a certificate made for its cluster, which
callers pin: :mod:`den.node.pinning`); ``--keep-token-file`` leaves the token
file in place for a supervisor (systemd) that restarts the daemon.

The daemon and the client modules it imports run on Python 3.9 and newer
(tests/node/test_py39.py), since a host's system python may be that old.

``DEN_NODE_HTTP_PARSER=httptools|h11`` picks the parser of request heads (default:
httptools when it imports, else h11; see :mod:`den.node.httpserver`).

Modules: :mod:`~den.node.app` (the ASGI app), :mod:`~den.node.httpserver` (the
HTTP/1.1 server it runs on by default; uvicorn is the alternative),
:mod:`~den.node.runtime` (objects, envs, code bundles), :mod:`~den.node.envs` (env
worker processes and the IPC to them), :mod:`~den.node.worker` (the worker side),
:mod:`~den.node.auth` (den token checks), :mod:`~den.node.restore` (putting saved
objects back after a restart), :mod:`~den.node.server` (start-up,
heartbeats, autostop), :mod:`~den.node.protocol` (wire formats),
:mod:`~den.node.caller` and :mod:`~den.node.bundle` (the caller side) and
:mod:`~den.node.errors` (what callers catch).

HTTP API
========

Errors are JSON ``{"error": {"code", "message", ...}}`` with the status of
:data:`den.node.protocol.ERROR_STATUS`. With den auth on (the default) every route but
``/health`` needs ``Authorization: Bearer den_...``; the daemon checks it with den
(``/api/v1/auth/check``) *before reading the body*. Calls need ``read`` on the
object's address (given at put time) or else on the cluster's; every other write
needs ``write`` on the cluster's address; listings need ``read`` on it.

A call's caller without ``write`` on the cluster (a reader, a read-only token, the
cluster's own token) may call public methods only (private ones, ``_x`` and
``__setattr__`` alike, are 403; ``call`` means ``__call__``), and its pickled
arguments are decoded as plain data (:mod:`den.node.safepickle`, plus the object's
``pickle_allow``): anything else is a 400 ``pickle_refused`` naming what it needed.
Writers of the cluster send any pickle. The daemon decides, with den's answer, and
tells the worker in the call's meta.

``GET /health``
    ``{"status": "ok", "version": ...}`` (no auth).

``PUT /objects/<name>`` (JSON body)
    ``{"kind": "function"|"module", "env": "base" | {"name", "reqs", "env_vars",
    "setup_cmds", "python"}, "code": sha256|null, "pointers": {"module",
    "qualname"}|null, "by_value": base64(cloudpickle(obj))|null, "init":
    base64(cloudpickle((args, kwargs)))|null, "init_json": {"args", "kwargs"}|null,
    "address": "/alice/train"|null, "pickle_allow": ["pkg.mod.Class", ...]|null}``. Either ``by_value`` or ``pointers`` (with
    ``code``, the bundle whose root goes first on the worker's ``sys.path``). A
    module given as a class is instantiated with ``init``/``init_json``; one given as
    an instance is kept as is. The body is JSON, not a pickle, so that the daemon
    never unpickles anything: only the env's worker decodes the base64 pickles. An
    env described by name only is used as it is (created bare if new); a changed
    description replaces that env's worker. Answers the object's description plus
    ``"output"`` (what its import or ``__init__`` printed).

``GET /objects``, ``GET /objects/<name>``, ``DELETE /objects/<name>``
    List, describe, delete.

``POST /objects/<name>/call`` (a function) and ``POST /objects/<name>/<method>``
    (a module's method; ``call`` on a module means ``__call__``).
    Body ``application/x-cloudpickle``: ``cloudpickle.dumps((args, kwargs))``, or
    ``application/x-den-pickle``: the same pickled with protocol 5 and out-of-band
    buffers, laid out by :func:`den.node.protocol.pack_oob` (what the caller library
    sends: arrays travel without being copied into the pickle); results come back in
    the request's pickle format, as ``application/x-den-frames`` (below). Any other
    body is JSON
    (``{"args": [...], "kwargs": {...}}`` or a bare list of args), answered with
    ``{"result": ..., "output": [{"stream", "text"}]}`` or, with
    ``Accept: application/x-ndjson``, a stream of JSON lines (``{"stream",
    "text"}``, ``{"yield": ...}``, then ``{"result": ...}`` or ``{"error": ...}``).
    ``X-Den-Timeout: <seconds>`` sets the call's timeout (else the daemon's
    ``--call-timeout``). ``X-Den-Address: /alice/train`` names the saved resource
    the object is: a daemon that does not hold the object (it restarted since it
    was put) asks den, with its cluster token, for den's saved copy, after
    checking the caller's ``read`` on that address, puts it back and runs the
    call (:mod:`den.node.restore`); without a copy in den the 404 says the
    object's state was lost. A body past ``--max-body-mb`` (default 1024) is a 413.
    An error found before the call runs (bad arguments, ``pickle_refused``, no such
    method) is answered with its status and a JSON error body, whatever the format.

``HEAD /code/<sha256>``
    200 if the bundle is on the node, else 404.
``PUT /code/<sha256>`` (body: a .tar.gz or .zip of the project)
    Verifies the hash and unpacks it under ``<workdir>/code/<sha256>``; 201 when
    new, 200 when it was already there.

``POST /run`` ``{"command": "nvidia-smi" | ["ls", "-l"], "timeout"?}``
    Run a shell command on the host (``write`` on the cluster), in the daemon's
    workdir with the env workers' environment; answers JSON lines ``{"stream",
    "text"}`` as output arrives, then ``{"exit_code"}`` (and ``"timed_out"``).

``GET /envs``, ``POST /envs`` (an env description), ``GET /envs/<name>``,
``DELETE /envs/<name>``
    List, create (or replace, if the description changed), describe, stop.

Call response framing (``application/x-den-frames``)
====================================================

A sequence of frames, each a 9-byte header ``struct.pack("!BQ", kind, length)``
then ``length`` bytes. ``O``/``E``/``L``: stdout, stderr and log text, sent while
the call runs; ``G``: the result is a generator, ``Y`` frames (one per item) follow;
``R``: the result (cloudpickle; empty after a generator); ``X``: an error, JSON
``{"code", "message", "type"?, "traceback"?, "pickle"?, "env"?, "exit_code"?}``
(``code`` is ``remote_exception``, ``worker_crashed``, ``timeout``, ...). ``R`` or
``X`` ends the response. When the result is the first frame the response has a
Content-Length; otherwise it is chunked and frames arrive as they are produced.
"""

__version__ = "0.1.0"
