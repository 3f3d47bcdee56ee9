"""``den ls``, ``show``, ``history``, ``share``, ``revoke``, ``access``,
``visibility``, ``rm`` and ``restore``: the resources you save and share."""

from __future__ import annotations

import argparse
import json
from typing import Any

from den.cli.base import (
    EXIT_OK,
    Commands,
    Output,
    UsageError,
    address_of,
    cell,
    confirm,
    session_for,
    user_label,
)
from den.client import api
from den.client.session import Op, Session, run

LIST_COLUMNS = [
    ("ADDRESS", "address"),
    ("TYPE", "type"),
    ("VISIBILITY", "visibility"),
    ("VERSION", "version"),
    ("UPDATED", "updated_at"),
    ("DESCRIPTION", "description"),
]

VERSION_COLUMNS = [
    ("VERSION", "version"),
    ("TYPE", "type"),
    ("AUTHOR", "author"),
    ("CREATED", "created_at"),
]

ACCESS_COLUMNS = [
    ("USER", "user"),
    ("LEVEL", "level"),
    ("GRANTED BY", "by"),
    ("SINCE", "created_at"),
]


def cmd_ls(args: argparse.Namespace, out: Output) -> int:
    """den ls: resources you can see."""
    from den.client.resources.loading import list_op

    session = session_for(args)
    op = list_op(
        session,
        type=args.type,
        owner=args.owner,
        query=args.query,
        shared=args.shared,
        visibility=args.visibility,
        limit=args.limit,
    )
    out.table(run(op, session), LIST_COLUMNS)
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
    session = session_for(args)
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
        out.line(f"  {label + ':':<13}{cell(res.get(key), key)}")
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
        out.table(data["versions"], VERSION_COLUMNS)
    return EXIT_OK


def cmd_history(args: argparse.Namespace, out: Output) -> int:
    """den history: all versions of a resource."""
    session = session_for(args)
    address = address_of(session, args.address)
    out.table(run(api.version_list(address, limit=args.limit), session), VERSION_COLUMNS)
    return EXIT_OK


def cmd_share(args: argparse.Namespace, out: Output) -> int:
    """den share: give users read or write access."""
    session = session_for(args)
    address = address_of(session, args.address)
    if not args.users and not args.team:
        raise UsageError("name users to share with, or teams with --team org/team")
    result = run(api.access_grant(address, args.users, args.access, args.team or []), session)
    out.json(result)
    for user in result.get("granted") or []:
        out.line(f"{user_label(user)} can now {args.access} {address}")
    for team in result.get("teams") or []:
        out.line(f"the team {team} can now {args.access} {address}")
    for user in result.get("invited") or []:
        out.line(f"{user_label(user)} has no account yet: invited with {args.access} access")
    return EXIT_OK


def cmd_revoke(args: argparse.Namespace, out: Output) -> int:
    """den revoke: take access away from users and teams."""
    if not args.users and not args.team:
        raise UsageError("name users to revoke, or teams with --team org/team")
    session = session_for(args)
    address = address_of(session, args.address)
    for user in args.users:
        run(api.access_revoke(address, user), session)
        out.line(f"{user} no longer has access to {address}")
    for team in args.team or []:
        run(api.access_revoke_team(address, team), session)
        out.line(f"the team {team} no longer has access to {address}")
    out.json({"address": address, "revoked": args.users, "teams": args.team or []})
    return EXIT_OK


def cmd_access(args: argparse.Namespace, out: Output) -> int:
    """den access: who may use a resource."""
    session = session_for(args)
    address = address_of(session, args.address)
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
    rows += [
        {**grant, "user": f"{grant.get('team')} (team)", "by": grant.get("granted_by")}
        for grant in data.get("teams") or []
    ]
    out.table(rows, ACCESS_COLUMNS)
    return EXIT_OK


def cmd_visibility(args: argparse.Namespace, out: Output) -> int:
    """den visibility: make a resource private, unlisted or public."""
    session = session_for(args)
    address = address_of(session, args.address)
    data = run(api.resource_patch(address, visibility=args.visibility), session)
    out.json(data)
    out.line(f"{address} is now {data.get('visibility', args.visibility)}")
    return EXIT_OK


def cmd_rm(args: argparse.Namespace, out: Output) -> int:
    """den rm: delete resources (asks first unless --yes)."""
    session = session_for(args)
    addresses = [address_of(session, text) for text in args.addresses]
    if not args.yes:
        listed = ", ".join(addresses)
        confirm(f"Delete {listed} with all versions and access? This cannot be undone.", out)
    for address in addresses:
        run(api.resource_delete(address), session)
        out.line(f"deleted {address}")
    out.json({"deleted": addresses})
    return EXIT_OK


def cmd_restore(args: argparse.Namespace, out: Output) -> int:
    """den restore: make a new version with an old version's config."""
    session = session_for(args)
    address = address_of(session, args.address)
    data = run(api.resource_restore(address, args.version), session)
    out.json(data)
    out.line(
        f"{address}: version {data.get('version')} now has the config of version {args.version}"
    )
    return EXIT_OK


def register(commands: Commands) -> None:
    """Add the resource commands."""
    ls = commands.add("ls", cmd_ls, "list resources you can see")
    ls.add_argument(
        "--type", choices=["cluster", "function", "module", "env", "secret", "resource"]
    )
    ls.add_argument("--owner", help="only this owner's resources ('~' for yours)")
    ls.add_argument("-q", "--query", help="search text")
    ls.add_argument("--shared", action="store_true", help="only resources shared with you")
    ls.add_argument("--visibility", choices=["private", "unlisted", "public"])
    ls.add_argument("--limit", type=int, help="at most this many")

    show = commands.add("show", cmd_show, "show a resource's details, config and versions")
    show.add_argument("address", help="address (/alice/train, ~/train) or page URL")
    show.add_argument("--version", type=int, help="show this version's config")

    history = commands.add("history", cmd_history, "list a resource's versions")
    history.add_argument("address")
    history.add_argument("--limit", type=int)

    share = commands.add("share", cmd_share,
                         "give users (usernames or emails) or teams (--team org/team) access")
    share.add_argument("address")
    share.add_argument("users", nargs="*", metavar="USER")
    share.add_argument("--team", action="append", metavar="ORG/TEAM", help="share with a team")
    share.add_argument("--access", choices=["read", "write"], default="read")

    revoke = commands.add("revoke", cmd_revoke, "take access away from users or teams")
    revoke.add_argument("address")
    revoke.add_argument("users", nargs="*", metavar="USER")
    revoke.add_argument("--team", action="append", metavar="ORG/TEAM", help="revoke a team")

    access = commands.add("access", cmd_access, "show who may use a resource")
    access.add_argument("address")

    visibility = commands.add(
        "visibility", cmd_visibility, "make a resource private, unlisted or public"
    )
    visibility.add_argument("address")
    visibility.add_argument("visibility", choices=["private", "unlisted", "public"])

    rm = commands.add("rm", cmd_rm, "delete resources")
    rm.add_argument("addresses", nargs="+", metavar="ADDRESS")
    rm.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")

    restore = commands.add(
        "restore", cmd_restore, "make a new version with an old version's config"
    )
    restore.add_argument("address")
    restore.add_argument("version", type=int)
