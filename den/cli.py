"""The ``den`` command: sign in, and list, show, share and manage resources from the shell.

Every command prints a readable table, or JSON with ``--json`` (for scripts).
The server and token come from ``--url``/``--token``, then ``DEN_URL``/``DEN_TOKEN``,
then ``~/.den/config.yaml`` (written by ``den login``).

Exit codes (also in ``den --help``):

====  =============================================================
0     success
1     any other error (including a declined confirmation)
2     usage: bad arguments, or input the server refused as invalid (400/413)
3     not found: no such resource, or no access to it (404)
4     permission denied: you may read it but not do this (403)
5     conflict: the address exists, or the resource changed meanwhile (409/412)
6     authentication: not logged in, or the token is bad, expired or revoked (401)
7     network or server: den could not be reached, or failed (5xx)
130   interrupted (Ctrl-C)
141   output closed early (``den show ... | head``): stops quietly
====  =============================================================
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from den.client import api
from den.client.config import config_path, resolve_settings
from den.client.errors import (
    AuthenticationError,
    BadRequest,
    Conflict,
    DenError,
    NetworkError,
    NotFound,
    PermissionDenied,
    ServerError,
    Throttled,
)
from den.client.session import Op, Session, current, run

__all__ = ["EXIT_CODES", "build_parser", "exit_code_for", "main"]

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
        cells += [[_cell(row.get(key), key, 50) for _, key in columns] for row in rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
        for row in cells:
            text = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            print(text.rstrip(), file=self.stdout)


def _cell(value: Any, key: str, limit: int | None = None) -> str:
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


# -- commands -------------------------------------------------------------------------


def _session(args: argparse.Namespace) -> Session:
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


def _address(session: Session, text: str) -> str:
    return run(api.resolve(session, text), session)


def cmd_login(args: argparse.Namespace, out: Output) -> int:
    """den login: store a server URL and token in the config file."""
    from den.client.account import login

    settings = resolve_settings()
    url = getattr(args, "url", None) or settings.url
    if not url:
        if not sys.stdin.isatty():
            raise UsageError("give the server with --url (or set DEN_URL)")
        url = input("den server URL: ").strip()
    token = getattr(args, "token", None)
    username = args.username
    password: str | None = None
    if token is None:
        if args.password_stdin:
            if username is None:
                raise UsageError("--password-stdin needs --username")
            password = sys.stdin.readline().rstrip("\n")
        else:
            if not sys.stdin.isatty():
                raise UsageError("give --token, or --username with --password-stdin")
            import getpass

            username = username or input("Username: ").strip()
            password = getpass.getpass("Password: ")
    me = login(
        url,
        token,
        username=username,
        password=password,
        token_name=args.token_name,
        verify=not args.no_verify,
    )
    path = str(config_path())
    server = current().url or url.rstrip("/")  # the server's root, found from the URL given
    out.json({"url": server, "username": me.get("username"), "config": path})
    who = f" as {me['username']}" if me.get("username") else ""
    out.line(f"Logged in to {server}{who}. Token saved in {path}.")
    if os.environ.get("DEN_TOKEN") or os.environ.get("DEN_URL"):
        print(
            "den: note: DEN_URL/DEN_TOKEN are set and override the config file.",
            file=out.stderr,
        )
    return EXIT_OK


def cmd_logout(args: argparse.Namespace, out: Output) -> int:
    """den logout: revoke the stored token on its server, then remove it from
    the config file (even when the server cannot be reached)."""
    from den.client.account import logout

    results = logout()
    out.json({"logged_out": True, "tokens": results})
    if not results:
        out.line(f"Not logged in: no token in {config_path()}.")
    for result in results:
        if result["revoked"]:
            out.line(f"Revoked the token on {result['url']}.")
        elif result["reason"] == "unreachable":
            print(f"den: could not reach {result['url']} to revoke the token: it stays valid "
                  "until it expires. Revoke it later in the web UI (Settings > API tokens) or "
                  "with `den token revoke`.", file=out.stderr)
        elif result["reason"] == "invalid":
            out.line(f"The token was no longer valid on {result['url']}.")
        else:
            print(f"den: {result['url']} did not revoke the token: {result['reason']}",
                  file=out.stderr)
    if results:
        out.line(f"Logged out: token removed from {config_path()}.")
    if os.environ.get("DEN_TOKEN"):
        print("den: note: DEN_TOKEN is set in the environment; it still signs you in.",
              file=out.stderr)
    return EXIT_OK


def cmd_whoami(args: argparse.Namespace, out: Output) -> int:
    """den whoami: the account the token belongs to."""
    session = _session(args)
    data = run(api.me(), session)
    out.json({**data, "url": session.url})
    out.line(f"{data.get('username')} ({data.get('email') or 'no email'}) on {session.url}")
    return EXIT_OK


_LIST_COLUMNS = [
    ("ADDRESS", "address"),
    ("TYPE", "type"),
    ("VISIBILITY", "visibility"),
    ("VERSION", "version"),
    ("UPDATED", "updated_at"),
    ("DESCRIPTION", "description"),
]


def cmd_ls(args: argparse.Namespace, out: Output) -> int:
    """den ls: resources you can see."""
    from den.client.resources.loading import list_op

    session = _session(args)
    op = list_op(
        session,
        type=args.type,
        owner=args.owner,
        query=args.query,
        shared=args.shared,
        visibility=args.visibility,
        limit=args.limit,
    )
    out.table(run(op, session), _LIST_COLUMNS)
    return EXIT_OK


def _show_op(session: Session, name: str, version: int | None) -> Op[dict[str, Any]]:
    address = yield from api.resolve(session, name)
    resource = yield from api.resource_get(address)
    versions = yield from api.version_list(address, limit=20)
    shown = None
    if version is not None:
        shown = yield from api.version_get(address, version)
    return {"resource": resource, "versions": versions, "shown_version": shown}


def cmd_show(args: argparse.Namespace, out: Output) -> int:
    """den show: a resource's details, config and recent versions."""
    session = _session(args)
    data = run(_show_op(session, args.address, args.version), session)
    out.json(data)
    res = data["resource"]
    out.line(f"{res.get('address')}  ({res.get('type')}, version {res.get('version')})")
    for label, key in [
        ("url", "url"),
        ("owner", "owner"),
        ("visibility", "visibility"),
        ("your access", "access_level"),
        ("description", "description"),
        ("created", "created_at"),
        ("updated", "updated_at"),
    ]:
        out.line(f"  {label + ':':<13}{_cell(res.get(key), key)}")
    shown = data["shown_version"]
    config = shown.get("config") if shown else res.get("config")
    out.line()
    title = f"config of version {shown['version']}" if shown else "config"
    out.line(f"{title}:")
    for text in json.dumps(config, indent=2, sort_keys=True).splitlines():
        out.line(f"  {text}")
    out.line()
    out.line("versions (newest first):")
    if not out.as_json:
        out.table(data["versions"], _VERSION_COLUMNS)
    return EXIT_OK


_VERSION_COLUMNS = [
    ("VERSION", "version"),
    ("TYPE", "type"),
    ("AUTHOR", "author"),
    ("CREATED", "created_at"),
]


def cmd_history(args: argparse.Namespace, out: Output) -> int:
    """den history: all versions of a resource."""
    session = _session(args)
    address = _address(session, args.address)
    out.table(run(api.version_list(address, limit=args.limit), session), _VERSION_COLUMNS)
    return EXIT_OK


def cmd_share(args: argparse.Namespace, out: Output) -> int:
    """den share: give users read or write access."""
    session = _session(args)
    address = _address(session, args.address)
    result = run(api.access_grant(address, args.users, args.access), session)
    out.json(result)
    for user in result.get("granted") or []:
        out.line(f"{_user_label(user)} can now {args.access} {address}")
    for user in result.get("invited") or []:
        out.line(f"{_user_label(user)} has no account yet: invited with {args.access} access")
    return EXIT_OK


def _user_label(user: Any) -> str:
    if isinstance(user, dict):
        return str(user.get("username") or user.get("email") or user)
    return str(user)


def cmd_revoke(args: argparse.Namespace, out: Output) -> int:
    """den revoke: take access away from users."""
    session = _session(args)
    address = _address(session, args.address)
    for user in args.users:
        run(api.access_revoke(address, user), session)
        out.line(f"{user} no longer has access to {address}")
    out.json({"address": address, "revoked": args.users})
    return EXIT_OK


_ACCESS_COLUMNS = [
    ("USER", "user"),
    ("LEVEL", "level"),
    ("GRANTED BY", "by"),
    ("SINCE", "created_at"),
]


def cmd_access(args: argparse.Namespace, out: Output) -> int:
    """den access: who may use a resource."""
    session = _session(args)
    address = _address(session, args.address)
    data = run(api.access_get(address), session)
    if out.as_json:
        out.json(data)
        return EXIT_OK
    out.line(f"{address}: owner {data.get('owner')}, {data.get('visibility')}")
    rows = [
        {**grant, "user": grant.get("username"), "by": grant.get("granted_by")}
        for grant in data.get("grants") or []
    ]
    rows += [
        {**invite, "user": f"{invite.get('email')} (invited)", "by": invite.get("invited_by")}
        for invite in data.get("pending") or []
    ]
    out.table(rows, _ACCESS_COLUMNS)
    return EXIT_OK


def cmd_visibility(args: argparse.Namespace, out: Output) -> int:
    """den visibility: make a resource private, unlisted or public."""
    session = _session(args)
    address = _address(session, args.address)
    data = run(api.resource_patch(address, visibility=args.visibility), session)
    out.json(data)
    out.line(f"{address} is now {data.get('visibility', args.visibility)}")
    return EXIT_OK


def _confirm(question: str, out: Output) -> None:
    out.stderr.write(f"{question} [y/N] ")
    out.stderr.flush()
    answer = sys.stdin.readline()
    if answer.strip().lower() not in {"y", "yes"}:
        raise Aborted("not confirmed; nothing was deleted (use --yes to skip the question)")


def cmd_rm(args: argparse.Namespace, out: Output) -> int:
    """den rm: delete resources (asks first unless --yes)."""
    session = _session(args)
    addresses = [_address(session, text) for text in args.addresses]
    if not args.yes:
        listed = ", ".join(addresses)
        _confirm(f"Delete {listed} with all versions and access? This cannot be undone.", out)
    for address in addresses:
        run(api.resource_delete(address), session)
        out.line(f"deleted {address}")
    out.json({"deleted": addresses})
    return EXIT_OK


def cmd_restore(args: argparse.Namespace, out: Output) -> int:
    """den restore: make a new version with an old version's config."""
    session = _session(args)
    address = _address(session, args.address)
    data = run(api.resource_restore(address, args.version), session)
    out.json(data)
    out.line(
        f"{address}: version {data.get('version')} now has the config of version {args.version}"
    )
    return EXIT_OK


_TOKEN_COLUMNS = [
    ("ID", "id"),
    ("NAME", "name"),
    ("SCOPE", "scope"),
    ("HINT", "hint"),
    ("EXPIRES", "expires_at"),
    ("LAST USED", "last_used_at"),
]


def cmd_token_ls(args: argparse.Namespace, out: Output) -> int:
    """den token ls: your API tokens."""
    session = _session(args)
    out.table(run(api.token_list(), session), _TOKEN_COLUMNS)
    return EXIT_OK


def cmd_token_create(args: argparse.Namespace, out: Output) -> int:
    """den token create: make a token and print it (shown this once)."""
    session = _session(args)
    data = run(api.token_create(args.name, args.scope, args.expires_in_days), session)
    out.json(data)
    out.line(data.get("token", ""))
    if not out.as_json:
        print(
            f"den: token {data.get('name')!r} ({data.get('scope')}, expires "
            f"{_cell(data.get('expires_at'), 'expires_at')}): copy it now, it is not shown again.",
            file=out.stderr,
        )
    return EXIT_OK


def cmd_token_revoke(args: argparse.Namespace, out: Output) -> int:
    """den token revoke: revoke tokens by id or name."""
    session = _session(args)
    wanted = list(args.tokens)
    ids: list[str] = []
    names = [text for text in wanted if not text.isdigit()]
    by_name: dict[str, Any] = {}
    if names:
        by_name = {str(token["name"]): token["id"] for token in run(api.token_list(), session)}
    for text in wanted:
        if text.isdigit():
            ids.append(text)
        elif text in by_name:
            ids.append(str(by_name[text]))
        else:
            raise NotFound(f"You have no token named {text!r}; see `den token ls`.")
    for token_id in ids:
        run(api.token_revoke(token_id), session)
        out.line(f"revoked token {token_id}")
    out.json({"revoked": ids})
    return EXIT_OK


# -- parser ------------------------------------------------------------------------------


def _common() -> argparse.ArgumentParser:
    # Defaults are SUPPRESSed so the options work before or after the command.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS, help="den server URL (or DEN_URL)")
    common.add_argument("--token", default=argparse.SUPPRESS, help="API token (or DEN_TOKEN)")
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON for scripts"
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``den`` command."""
    common = _common()
    codes = "\n".join(f"  {code:<4} {text}" for code, text in EXIT_CODES.items())
    parser = argparse.ArgumentParser(
        prog="den",
        description="Save, share and find den resources from the shell.",
        epilog=f"exit codes:\n{codes}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    from den import __version__

    parser.add_argument("--version", action="version", version=f"den {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def add(name: str, handler: Callable[..., int], help_text: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text, description=help_text, parents=[common])
        command.set_defaults(handler=handler)
        return command

    login = add("login", cmd_login, "sign in and store the server URL and a token")
    login.add_argument("--username", "-u", help="sign in with a username and password")
    login.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    login.add_argument("--token-name", help="name of the token made for this login")
    login.add_argument(
        "--no-verify", action="store_true", help="store the token without checking it"
    )

    add("logout", cmd_logout, "remove the stored token")
    add("whoami", cmd_whoami, "show the signed-in account")

    ls = add("ls", cmd_ls, "list resources you can see")
    ls.add_argument(
        "--type", choices=["cluster", "function", "module", "env", "secret", "resource"]
    )
    ls.add_argument("--owner", help="only this owner's resources ('~' for yours)")
    ls.add_argument("-q", "--query", help="search text")
    ls.add_argument("--shared", action="store_true", help="only resources shared with you")
    ls.add_argument("--visibility", choices=["private", "unlisted", "public"])
    ls.add_argument("--limit", type=int, help="at most this many")

    show = add("show", cmd_show, "show a resource's details, config and versions")
    show.add_argument("address", help="address (/alice/train, ~/train) or page URL")
    show.add_argument("--version", type=int, help="show this version's config")

    history = add("history", cmd_history, "list a resource's versions")
    history.add_argument("address")
    history.add_argument("--limit", type=int)

    share = add("share", cmd_share, "give users (usernames or emails) access")
    share.add_argument("address")
    share.add_argument("users", nargs="+", metavar="USER")
    share.add_argument("--access", choices=["read", "write"], default="read")

    revoke = add("revoke", cmd_revoke, "take access away from users")
    revoke.add_argument("address")
    revoke.add_argument("users", nargs="+", metavar="USER")

    access = add("access", cmd_access, "show who may use a resource")
    access.add_argument("address")

    visibility = add("visibility", cmd_visibility, "make a resource private, unlisted or public")
    visibility.add_argument("address")
    visibility.add_argument("visibility", choices=["private", "unlisted", "public"])

    rm = add("rm", cmd_rm, "delete resources")
    rm.add_argument("addresses", nargs="+", metavar="ADDRESS")
    rm.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")

    restore = add("restore", cmd_restore, "make a new version with an old version's config")
    restore.add_argument("address")
    restore.add_argument("version", type=int)

    token = add("token", _no_handler, "manage API tokens")
    token_sub = token.add_subparsers(dest="token_command", metavar="ACTION")
    token_sub.required = True
    create = token_sub.add_parser("create", help="make a token", parents=[common])
    create.set_defaults(handler=cmd_token_create)
    create.add_argument("name")
    create.add_argument("--scope", choices=["read", "write"], default="write")
    create.add_argument("--expires-in-days", type=int)
    token_ls = token_sub.add_parser("ls", help="list your tokens", parents=[common])
    token_ls.set_defaults(handler=cmd_token_ls)
    token_revoke = token_sub.add_parser(
        "revoke", help="revoke tokens by id or name", parents=[common]
    )
    token_revoke.set_defaults(handler=cmd_token_revoke)
    token_revoke.add_argument("tokens", nargs="+", metavar="ID_OR_NAME")
    return parser


def _no_handler(args: argparse.Namespace, out: Output) -> int:
    raise UsageError("missing action")


def _output_closed(stdout: TextIO) -> int:
    """The reader of our output went away (``den show ... | head``): stop
    quietly, as tools killed by SIGPIPE do, instead of a traceback. What is
    still buffered goes to /dev/null, so that Python's own flush at exit
    cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # not a file (a StringIO in tests): nothing buffered at the OS level
    return EXIT_PIPE


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the ``den`` command with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    out = Output(bool(getattr(args, "json", False)), stdout, stderr)
    try:
        code: int = args.handler(args, out)
        stdout.flush()  # here, where a closed pipe can still be caught
        return code
    except BrokenPipeError:
        return _output_closed(stdout)
    except (DenError, UsageError, Aborted) as exc:
        print(f"den: error: {exc}", file=stderr)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        print("den: interrupted", file=stderr)
        return EXIT_INTERRUPTED
    except EOFError:
        print("den: error: no input", file=stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
