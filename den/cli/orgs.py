"""``den org ...``, ``den team ...`` and ``den sa ...``: organisations, their
teams and their service accounts (issue 12)."""

from __future__ import annotations

import argparse
from typing import Any

from den.cli.base import EXIT_OK, Commands, Output, UsageError, cell, session_for
from den.client import api
from den.client.session import run

ORG_COLUMNS = [("NAME", "name"), ("ROLE", "role"), ("DESCRIPTION", "description")]
MEMBER_COLUMNS = [("USER", "user"), ("ROLE", "role"), ("ADDED BY", "by"), ("SINCE", "created_at")]
TEAM_COLUMNS = [("TEAM", "name"), ("DESCRIPTION", "description")]
SA_COLUMNS = [("NAME", "name"), ("CALLER", "username"), ("ROLE", "role"),
              ("CREATED", "created_at")]


def _call(args: argparse.Namespace, method: str, org: str | None, *rest: str,
          body: Any = None) -> Any:
    session = session_for(args)
    return run(api.org_call(method, org, *rest, json=body), session)


def _team(text: str) -> tuple[str, str]:
    org, _, team = text.strip("/").partition("/")
    if not org or not team or "/" in team:
        raise UsageError(f"name a team as org/team, not {text!r}")
    return org, team


# -- den org -------------------------------------------------------------------------


def cmd_org_create(args: argparse.Namespace, out: Output) -> int:
    """den org create: make an organisation; you become its admin."""
    body = {"name": args.name, **({"description": args.description} if args.description else {})}
    data = _call(args, "POST", None, body=body)
    out.json(data)
    out.line(f"created the organisation {data.get('name')}; you are its admin ({data.get('url')})")
    return EXIT_OK


def cmd_org_ls(args: argparse.Namespace, out: Output) -> int:
    """den org ls: the organisations you belong to."""
    out.table(_call(args, "GET", None), ORG_COLUMNS)
    return EXIT_OK


def cmd_org_members(args: argparse.Namespace, out: Output) -> int:
    """den org members: an organisation's members and invitations."""
    data = _call(args, "GET", args.org, "members")
    if out.as_json:
        out.json(data)
        return EXIT_OK
    rows = [{**m, "user": m.get("username"), "by": m.get("added_by")}
            for m in data.get("members") or []]
    rows += [{**p, "user": f"{p.get('email')} (invited)", "by": p.get("invited_by")}
             for p in data.get("pending") or []]
    out.table(rows, MEMBER_COLUMNS)
    return EXIT_OK


def cmd_org_add(args: argparse.Namespace, out: Output) -> int:
    """den org add: add people (usernames or emails) or change their role."""
    data = _call(args, "PUT", args.org, "members", body={"users": args.users, "role": args.role})
    out.json(data)
    for name in data.get("added") or []:
        out.line(f"{name} is now a {args.role} of {args.org}")
    for email in data.get("invited") or []:
        out.line(f"{email} has no account yet: invited to {args.org} as a {args.role}")
    return EXIT_OK


def cmd_org_remove(args: argparse.Namespace, out: Output) -> int:
    """den org remove: take people (or invitations, by email) out of an organisation."""
    for who in args.users:
        _call(args, "DELETE", args.org, "members", who)
        out.line(f"{who} is no longer in {args.org}")
    out.json({"org": args.org, "removed": args.users})
    return EXIT_OK


def cmd_org_transfer(args: argparse.Namespace, out: Output) -> int:
    """den org transfer: move a resource you own into an organisation you admin."""
    from den.cli.base import address_of

    session = session_for(args)
    address = address_of(session, args.address)
    data = run(api.resource_transfer(address, args.org), session)
    out.json(data)
    out.line(f"{address} is now {data.get('address')}")
    return EXIT_OK


# -- den team ------------------------------------------------------------------------


def cmd_team_create(args: argparse.Namespace, out: Output) -> int:
    """den team create: make a team in an organisation."""
    org, team = _team(args.team)
    data = _call(args, "POST", org, "teams", body={"name": team})
    out.json(data)
    out.line(f"created the team {data.get('name')}")
    return EXIT_OK


def cmd_team_ls(args: argparse.Namespace, out: Output) -> int:
    """den team ls: an organisation's teams."""
    out.table(_call(args, "GET", args.org, "teams"), TEAM_COLUMNS)
    return EXIT_OK


def cmd_team_show(args: argparse.Namespace, out: Output) -> int:
    """den team show: a team and its members."""
    org, team = _team(args.team)
    data = _call(args, "GET", org, "teams", team)
    out.json(data)
    out.line(f"{data.get('name')}: {cell(data.get('members'), 'members')}")
    return EXIT_OK


def cmd_team_add(args: argparse.Namespace, out: Output) -> int:
    """den team add: put members of the organisation into a team."""
    org, team = _team(args.team)
    data = _call(args, "PUT", org, "teams", team, "members", body={"users": args.users})
    out.json(data)
    out.line(f"{data.get('name')}: {cell(data.get('members'), 'members')}")
    return EXIT_OK


def cmd_team_remove(args: argparse.Namespace, out: Output) -> int:
    """den team remove: take people out of a team."""
    org, team = _team(args.team)
    for user in args.users:
        _call(args, "DELETE", org, "teams", team, "members", user)
        out.line(f"{user} is no longer in {org}/{team}")
    out.json({"team": f"{org}/{team}", "removed": args.users})
    return EXIT_OK


def cmd_team_rm(args: argparse.Namespace, out: Output) -> int:
    """den team rm: delete a team with its grants."""
    org, team = _team(args.team)
    _call(args, "DELETE", org, "teams", team)
    out.line(f"deleted the team {org}/{team}")
    out.json({"deleted": f"{org}/{team}"})
    return EXIT_OK


# -- den sa ----------------------------------------------------------------------------


def cmd_sa_create(args: argparse.Namespace, out: Output) -> int:
    """den sa create: make a service account acting with an org role."""
    data = _call(args, "POST", args.org, "service-accounts",
                 body={"name": args.name, "role": args.role})
    out.json(data)
    out.line(f"created {data.get('username')} ({data.get('role')}); make it a token with "
             f"`den sa token create {args.org} {args.name} NAME`")
    return EXIT_OK


def cmd_sa_ls(args: argparse.Namespace, out: Output) -> int:
    """den sa ls: an organisation's service accounts."""
    out.table(_call(args, "GET", args.org, "service-accounts"), SA_COLUMNS)
    return EXIT_OK


def cmd_sa_rm(args: argparse.Namespace, out: Output) -> int:
    """den sa rm: delete a service account; its tokens stop working at once."""
    _call(args, "DELETE", args.org, "service-accounts", args.name)
    out.line(f"deleted the service account {args.org}:{args.name}; its tokens no longer work")
    out.json({"deleted": f"{args.org}:{args.name}"})
    return EXIT_OK


def cmd_sa_token_create(args: argparse.Namespace, out: Output) -> int:
    """den sa token create: a token for a service account (shown this once)."""
    body: dict[str, Any] = {"name": args.token_name, "scope": args.scope}
    if args.expires_in_days is not None:
        body["expires_in_days"] = args.expires_in_days
    data = _call(args, "POST", args.org, "service-accounts", args.name, "tokens", body=body)
    out.json(data)
    out.line(data.get("token", ""))
    if not out.as_json:
        print(f"den: token {data.get('name')!r} of {args.org}:{args.name} ({data.get('scope')}): "
              "copy it now, it is not shown again.", file=out.stderr)
    return EXIT_OK


def cmd_sa_token_ls(args: argparse.Namespace, out: Output) -> int:
    """den sa token ls: a service account's tokens."""
    from den.cli.account import TOKEN_COLUMNS

    out.table(_call(args, "GET", args.org, "service-accounts", args.name, "tokens"),
              TOKEN_COLUMNS)
    return EXIT_OK


def cmd_sa_token_revoke(args: argparse.Namespace, out: Output) -> int:
    """den sa token revoke: revoke a service account's tokens by id."""
    for token_id in args.ids:
        _call(args, "DELETE", args.org, "service-accounts", args.name, "tokens", str(token_id))
        out.line(f"revoked token {token_id}")
    out.json({"revoked": args.ids})
    return EXIT_OK


def register(commands: Commands) -> None:
    """Add ``den org``, ``den team`` and ``den sa``."""
    org = commands.group("org", "organisations: create, list, members, transfer")
    create = org.add("create", cmd_org_create, "make an organisation (you become its admin)")
    create.add_argument("name")
    create.add_argument("--description")
    org.add("ls", cmd_org_ls, "list the organisations you belong to")
    members = org.add("members", cmd_org_members, "list an organisation's members")
    members.add_argument("org")
    add = org.add("add", cmd_org_add, "add people (usernames or emails) or change their role")
    add.add_argument("org")
    add.add_argument("users", nargs="+", metavar="USER")
    add.add_argument("--role", choices=["member", "admin"], default="member")
    remove = org.add("remove", cmd_org_remove, "remove people from an organisation")
    remove.add_argument("org")
    remove.add_argument("users", nargs="+", metavar="USER")
    transfer = org.add("transfer", cmd_org_transfer,
                       "move a resource you own into an organisation you admin")
    transfer.add_argument("address")
    transfer.add_argument("org")

    team = commands.group("team", "an organisation's teams (named org/team)")
    team_create = team.add("create", cmd_team_create, "make a team")
    team_create.add_argument("team", metavar="ORG/TEAM")
    team_ls = team.add("ls", cmd_team_ls, "list an organisation's teams")
    team_ls.add_argument("org")
    team_show = team.add("show", cmd_team_show, "show a team's members")
    team_show.add_argument("team", metavar="ORG/TEAM")
    team_add = team.add("add", cmd_team_add, "put org members into a team")
    team_add.add_argument("team", metavar="ORG/TEAM")
    team_add.add_argument("users", nargs="+", metavar="USER")
    team_remove = team.add("remove", cmd_team_remove, "take people out of a team")
    team_remove.add_argument("team", metavar="ORG/TEAM")
    team_remove.add_argument("users", nargs="+", metavar="USER")
    team_rm = team.add("rm", cmd_team_rm, "delete a team and its grants")
    team_rm.add_argument("team", metavar="ORG/TEAM")

    sa = commands.group("sa", "an organisation's service accounts and their tokens")
    sa_create = sa.add("create", cmd_sa_create, "make a service account")
    sa_create.add_argument("org")
    sa_create.add_argument("name")
    sa_create.add_argument("--role", choices=["member", "admin"], default="member")
    sa_ls = sa.add("ls", cmd_sa_ls, "list service accounts")
    sa_ls.add_argument("org")
    sa_rm = sa.add("rm", cmd_sa_rm, "delete a service account and its tokens")
    sa_rm.add_argument("org")
    sa_rm.add_argument("name")
    token = sa.group("token", "a service account's tokens")
    token_create = token.add("create", cmd_sa_token_create, "make a token (shown once)")
    token_create.add_argument("org")
    token_create.add_argument("name", help="the service account")
    token_create.add_argument("token_name", metavar="TOKEN_NAME")
    token_create.add_argument("--scope", choices=["read", "write"], default="write")
    token_create.add_argument("--expires-in-days", type=int)
    token_ls = token.add("ls", cmd_sa_token_ls, "list a service account's tokens")
    token_ls.add_argument("org")
    token_ls.add_argument("name")
    token_revoke = token.add("revoke", cmd_sa_token_revoke, "revoke tokens by id")
    token_revoke.add_argument("org")
    token_revoke.add_argument("name")
    token_revoke.add_argument("ids", nargs="+", type=int, metavar="ID")
