"""``den login``, ``logout``, ``whoami`` and ``den token ...``: who you are to den."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from den.cli.base import (
    EXIT_OK,
    Commands,
    Output,
    UsageError,
    cell,
    session_for,
)
from den.client import api
from den.client.config import config_path, resolve_settings
from den.client.errors import NotFound
from den.client.session import current, run


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
    session = session_for(args)
    data = run(api.me(), session)
    out.json({**data, "url": session.url})
    out.line(f"{data.get('username')} ({data.get('email') or 'no email'}) on {session.url}")
    return EXIT_OK


TOKEN_COLUMNS = [
    ("ID", "id"),
    ("NAME", "name"),
    ("SCOPE", "scope"),
    ("HINT", "hint"),
    ("EXPIRES", "expires_at"),
    ("LAST USED", "last_used_at"),
]


def cmd_token_ls(args: argparse.Namespace, out: Output) -> int:
    """den token ls: your API tokens."""
    session = session_for(args)
    out.table(run(api.token_list(), session), TOKEN_COLUMNS)
    return EXIT_OK


def cmd_token_create(args: argparse.Namespace, out: Output) -> int:
    """den token create: make a token and print it (shown this once)."""
    session = session_for(args)
    data = run(api.token_create(args.name, args.scope, args.expires_in_days), session)
    out.json(data)
    out.line(data.get("token", ""))
    if not out.as_json:
        print(
            f"den: token {data.get('name')!r} ({data.get('scope')}, expires "
            f"{cell(data.get('expires_at'), 'expires_at')}): copy it now, it is not shown again.",
            file=out.stderr,
        )
    return EXIT_OK


def cmd_token_revoke(args: argparse.Namespace, out: Output) -> int:
    """den token revoke: revoke tokens by id or name."""
    session = session_for(args)
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


def register(commands: Commands) -> None:
    """Add login, logout and whoami (``register_tokens`` adds ``den token``)."""
    login = commands.add("login", cmd_login, "sign in and store the server URL and a token")
    login.add_argument("--username", "-u", help="sign in with a username and password")
    login.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    login.add_argument("--token-name", help="name of the token made for this login")
    login.add_argument(
        "--no-verify", action="store_true", help="store the token without checking it"
    )

    commands.add("logout", cmd_logout, "remove the stored token")
    commands.add("whoami", cmd_whoami, "show the signed-in account")


def register_tokens(commands: Commands) -> None:
    """Add ``den token create|ls|revoke``."""
    token = commands.group("token", "manage API tokens")
    create = token.add("create", cmd_token_create, "make a token")
    create.add_argument("name")
    create.add_argument("--scope", choices=["read", "write"], default="write")
    create.add_argument("--expires-in-days", type=int)
    token.add("ls", cmd_token_ls, "list your tokens")
    revoke = token.add("revoke", cmd_token_revoke, "revoke tokens by id or name")
    revoke.add_argument("tokens", nargs="+", metavar="ID_OR_NAME")
