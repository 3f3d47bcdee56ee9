"""The daemon's settings: command-line flags, each with a ``DEN_NODE_*`` env var default.

The cluster token is the exception: it is never a flag or a variable, since
both can be read from ``/proc/<pid>/cmdline`` and ``/proc/<pid>/environ``.
``--cluster-token-file`` names a file (mode 0600) that the daemon reads and
deletes, or ``-`` for one line on standard input.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PORT = 32300


@dataclass(frozen=True)
class NodeConfig:
    """Everything the daemon is told at start."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    den_url: str | None = None
    cluster_token: str | None = field(default=None, repr=False)
    cluster_address: str | None = None
    den_auth: bool = True
    auth_cache_seconds: float = 10.0
    workdir: Path = Path.home() / ".den" / "node"
    autostop_mins: float = -1
    heartbeat_seconds: float = 30.0
    call_timeout: float | None = None
    max_body_mb: int = 1024
    max_code_mb: int = 512
    log_level: str = "info"
    http_server: str = "den"
    #: PEM files: serve HTTPS with this certificate and key (den makes one per
    #: cluster for daemons that listen beyond loopback).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None

    def check(self) -> None:
        """Refuse settings that cannot work, with what to pass instead."""
        if self.den_auth and not self.den_url:
            raise SystemExit("den auth is on: pass --den-url (or --no-den-auth for local use)")
        if self.den_auth and not self.cluster_address:
            raise SystemExit("den auth is on: pass --cluster-address /owner/cluster")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise SystemExit("pass both --tls-cert-file and --tls-key-file, or neither")


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"DEN_NODE_{name}", default)


def _env_bool(name: str, default: bool) -> bool:
    value = _env(name)
    if value is None:
        return default
    return value.strip().lower() not in ("0", "false", "no", "off", "")


def read_token(source: str, *, keep: bool = False) -> str | None:
    """The cluster token from ``source``: ``-`` reads one line of stdin (and
    leaves stdin on /dev/null, so that no child inherits the pipe), anything
    else is a file that is deleted once read (unless ``keep``: a supervisor
    such as systemd starts the daemon again from the same 0600 file)."""
    if source == "-":
        line = sys.stdin.readline()
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.close(devnull)
        return line.strip() or None
    path = Path(source).expanduser()
    try:
        text = path.read_text()
    except OSError as exc:
        raise SystemExit(f"cannot read the cluster token file {path}: {exc.strerror}") from None
    if keep:
        return text.strip() or None
    try:
        path.unlink()
    except OSError as exc:
        raise SystemExit(f"cannot delete the cluster token file {path} after reading it "
                         f"({exc.strerror}); give the daemon a file it may delete") from None
    return text.strip() or None


def parse_args(argv: list[str] | None = None) -> NodeConfig:
    """Read flags; any flag not given falls back to its ``DEN_NODE_*`` variable."""
    ap = argparse.ArgumentParser(prog="python -m den.node", description="den node daemon")
    ap.add_argument("--host", default=_env("HOST", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(_env("PORT", str(DEFAULT_PORT)) or 0))
    ap.add_argument("--den-url", default=_env("DEN_URL"))
    ap.add_argument("--cluster-token-file", default=None, metavar="PATH",
                    help="read the cluster's own den token (for heartbeats; never a user's) "
                         "from PATH, which is deleted once read, or from stdin with '-'")
    ap.add_argument("--keep-token-file", action="store_true",
                    help="do not delete the token file once read (a supervisor restarts the "
                         "daemon from it); it must be mode 0600")
    ap.add_argument("--tls-cert-file", default=_env("TLS_CERT_FILE"), metavar="PEM",
                    help="serve HTTPS with this certificate (and --tls-key-file)")
    ap.add_argument("--tls-key-file", default=_env("TLS_KEY_FILE"), metavar="PEM")
    ap.add_argument("--cluster-address", default=_env("CLUSTER_ADDRESS"),
                    help="the cluster's den address, e.g. /alice/cpu")
    ap.add_argument("--no-den-auth", dest="den_auth", action="store_false",
                    default=_env_bool("DEN_AUTH", True),
                    help="serve without checking tokens (local development only)")
    ap.add_argument("--auth-cache-seconds", type=float,
                    default=float(_env("AUTH_CACHE_SECONDS", "10") or 10))
    ap.add_argument("--workdir", default=_env("WORKDIR", "~/.den/node"))
    ap.add_argument("--autostop-mins", type=float, default=float(_env("AUTOSTOP_MINS", "-1") or -1),
                    help="stop when idle this long and den is unreachable (<= 0: never)")
    ap.add_argument("--heartbeat-seconds", type=float,
                    default=float(_env("HEARTBEAT_SECONDS", "30") or 30))
    ap.add_argument("--call-timeout", type=float, default=float(_env("CALL_TIMEOUT", "0") or 0),
                    help="default per-call timeout in seconds (0: none); callers may set theirs")
    ap.add_argument("--max-body-mb", type=int, default=int(_env("MAX_BODY_MB", "1024") or 1024),
                    help="largest call or put body accepted (413 past it)")
    ap.add_argument("--max-code-mb", type=int, default=int(_env("MAX_CODE_MB", "512") or 512))
    ap.add_argument("--log-level", default=_env("LOG_LEVEL", "info"))
    ap.add_argument("--http-server", choices=("den", "uvicorn"),
                    default=_env("HTTP_SERVER", "den"),
                    help="den's own HTTP/1.1 server (faster) or uvicorn")
    ns = ap.parse_args(argv)
    return NodeConfig(
        host=ns.host,
        port=ns.port,
        den_url=ns.den_url.rstrip("/") if ns.den_url else None,
        cluster_token=(read_token(ns.cluster_token_file, keep=ns.keep_token_file)
                       if ns.cluster_token_file else None),
        cluster_address=ns.cluster_address,
        den_auth=ns.den_auth,
        auth_cache_seconds=ns.auth_cache_seconds,
        workdir=Path(ns.workdir).expanduser().resolve(),
        autostop_mins=ns.autostop_mins,
        heartbeat_seconds=ns.heartbeat_seconds,
        call_timeout=ns.call_timeout or None,
        max_body_mb=ns.max_body_mb,
        max_code_mb=ns.max_code_mb,
        log_level=ns.log_level,
        http_server=ns.http_server,
        tls_cert_file=Path(ns.tls_cert_file).expanduser() if ns.tls_cert_file else None,
        tls_key_file=Path(ns.tls_key_file).expanduser() if ns.tls_key_file else None,
    )
