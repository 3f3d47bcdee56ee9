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
import os
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from den.cli import account, cluster, orgs, resources
from den.cli.base import (
    EXIT_AUTH,
    EXIT_CODES,
    EXIT_CONFLICT,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_NETWORK,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_PERMISSION,
    EXIT_PIPE,
    EXIT_USAGE,
    Aborted,
    Commands,
    Output,
    UsageError,
    common_options,
    exit_code_for,
)
from den.cli.base import session_for as _session  # noqa: F401  (tests, old callers)
from den.client.errors import DenError

__all__ = [
    "COMMAND_MODULES",
    "EXIT_AUTH",
    "EXIT_CODES",
    "EXIT_CONFLICT",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_NETWORK",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_PERMISSION",
    "EXIT_PIPE",
    "EXIT_USAGE",
    "Aborted",
    "Output",
    "UsageError",
    "build_parser",
    "exit_code_for",
    "main",
]

#: What adds the commands, in the order ``den --help`` lists them. A new module
#: of commands (``den/cli/cluster.py``) defines ``register(commands)`` and is
#: added here.
COMMAND_MODULES: tuple[Callable[[Commands], None], ...] = (
    account.register,
    resources.register,
    cluster.register,
    account.register_tokens,
    orgs.register,
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``den`` command."""
    common = common_options()
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
    commands = Commands(sub, common)
    for register in COMMAND_MODULES:
        register(commands)
    return parser


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

