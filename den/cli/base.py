"""What every ``den`` command shares: exit codes, errors, output, the session
a command talks through, and :class:`Commands`, the way a command module adds
its commands to the parser.

A module of commands (``den/cli/account.py``, ``den/cli/resources.py``, ...)
defines ``register(commands: Commands) -> None`` and is listed in
``den.cli.COMMAND_MODULES``; the order there is the order of ``den --help``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from den.client import api
from den.client.config import resolve_settings
from den.client.errors import (
    AuthenticationError,
    BadRequest,
    Conflict,
    NetworkError,
    NotFound,
    PermissionDenied,
    ServerError,
    Throttled,
)
from den.client.session import Session, current, run

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_PERMISSION = 4
EXIT_CONFLICT = 5
EXIT_AUTH = 6
EXIT_NETWORK = 7
EXIT_INTERRUPTED = 130
EXIT_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a tool whose reader left

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_ERROR: "any other error (including a declined confirmation)",
    EXIT_USAGE: "usage: bad arguments, or input the server refused as invalid (400/413)",
    EXIT_NOT_FOUND: "not found: no such resource, or no access to it (404)",
    EXIT_PERMISSION: "permission denied: you may read it but not do this (403)",
    EXIT_CONFLICT: "conflict: the address exists, or the resource changed meanwhile (409/412)",
    EXIT_AUTH: "authentication: not logged in, or a bad, expired or revoked token (401)",
    EXIT_NETWORK: "network or server: den could not be reached, or failed (5xx, 429)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
    EXIT_PIPE: "output closed early (e.g. piped into head); nothing more is printed",
}

Handler = Callable[[argparse.Namespace, "Output"], int]


class UsageError(Exception):
    """A command was given arguments that make no sense together (exit code 2)."""


class Aborted(Exception):
    """The user declined a confirmation (exit code 1)."""


def exit_code_for(exc: BaseException) -> int:
    """The exit code that says what kind of failure ``exc`` is."""
    if isinstance(exc, UsageError | BadRequest):
        return EXIT_USAGE
    if isinstance(exc, NotFound):
        return EXIT_NOT_FOUND
    if isinstance(exc, PermissionDenied):
        return EXIT_PERMISSION
    if isinstance(exc, Conflict):
        return EXIT_CONFLICT
    if isinstance(exc, AuthenticationError):
        return EXIT_AUTH
    if isinstance(exc, NetworkError | ServerError | Throttled):
        return EXIT_NETWORK
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_ERROR


# -- output ----------------------------------------------------------------------------


class Output:
    """Where a command writes: a table for people, JSON for scripts."""

    def __init__(self, as_json: bool, stdout: TextIO, stderr: TextIO) -> None:
        self.as_json = as_json
        self.stdout = stdout
        self.stderr = stderr

    def line(self, text: str = "") -> None:
        """Print a line for people (suppressed with --json)."""
        if not self.as_json:
            print(text, file=self.stdout)

    def json(self, data: Any) -> None:
        """Print JSON (only with --json)."""
        if self.as_json:
            print(json.dumps(data, indent=2, sort_keys=True, default=str), file=self.stdout)

    def table(self, rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> None:
        """Print rows as JSON, or as an aligned table with the given (header, key) columns."""
        if self.as_json:
            self.json(list(rows))
            return
        if not rows:
            print("(none)", file=self.stdout)
            return
        cells = [[header for header, _ in columns]]
        cells += [[cell(row.get(key), key, 50) for _, key in columns] for row in rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
        for row in cells:
            text = "  ".join(c.ljust(width) for c, width in zip(row, widths, strict=True))
            print(text.rstrip(), file=self.stdout)


def cell(value: Any, key: str, limit: int | None = None) -> str:
    """``value`` as one table cell: ``-`` for nothing, yes/no, times to the minute."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str) and key.endswith("_at") and "T" in value:
        return value[:16].replace("T", " ")
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    text = " ".join(str(value).split())
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


# -- what commands talk through ---------------------------------------------------------


def session_for(args: argparse.Namespace) -> Session:
    """The session of ``args``' ``--url``/``--token``, else the configured one."""
    url = getattr(args, "url", None)
    token = getattr(args, "token", None)
    if url is None and token is None:
        return current()
    settings = resolve_settings()
    if url is not None and url.rstrip("/") != settings.url:
        # Never send a token stored for one server to another one.
        settings.token = os.environ.get("DEN_TOKEN") or None
        settings.username = None
    if token is not None:
        settings.username = None
    return Session(url or settings.url, token or settings.token, username=settings.username)


def address_of(session: Session, text: str) -> str:
    """The full address of what ``text`` names (``~/train``, ``/alice/train``, a page URL)."""
    return run(api.resolve(session, text), session)


def confirm(question: str, out: Output) -> None:
    """Ask ``question`` on stderr; raise :class:`Aborted` unless the answer is yes."""
    out.stderr.write(f"{question} [y/N] ")
    out.stderr.flush()
    answer = sys.stdin.readline()
    if answer.strip().lower() not in {"y", "yes"}:
        raise Aborted("not confirmed; nothing was deleted (use --yes to skip the question)")


def user_label(user: Any) -> str:
    """A user as the server described it (a dict, or a bare name), for people."""
    if isinstance(user, dict):
        return str(user.get("username") or user.get("email") or user)
    return str(user)


# -- the parser ----------------------------------------------------------------------------


def common_options() -> argparse.ArgumentParser:
    """The options every command takes (``--url``, ``--token``, ``--json``)."""
    # Defaults are SUPPRESSed so the options work before or after the command.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS, help="den server URL (or DEN_URL)")
    common.add_argument("--token", default=argparse.SUPPRESS, help="API token (or DEN_TOKEN)")
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON for scripts"
    )
    return common


def no_handler(args: argparse.Namespace, out: Output) -> int:
    """The handler of a group (``den token``) given no action."""
    raise UsageError("missing action")


class Commands:
    """Adds commands to one level of the parser (``den X`` or ``den group X``)."""

    def __init__(
        self, sub: argparse._SubParsersAction[argparse.ArgumentParser],
        common: argparse.ArgumentParser,
    ) -> None:
        self._sub = sub
        self._common = common

    def add(self, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        """A command ``name`` run by ``handler``; returns its parser for its arguments."""
        command = self._sub.add_parser(
            name, help=help_text, description=help_text, parents=[self._common]
        )
        command.set_defaults(handler=handler)
        return command

    def group(self, name: str, help_text: str, *, metavar: str = "ACTION") -> Commands:
        """A command with actions of its own (``den token create``): add them to the result."""
        command = self.add(name, no_handler, help_text)
        sub = command.add_subparsers(dest=f"{name.replace('-', '_')}_command", metavar=metavar)
        sub.required = True
        return Commands(sub, self._common)
