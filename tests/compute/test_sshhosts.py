"""The test hosts themselves: reachable over SSH with their key, isolated, removed cleanly."""

from __future__ import annotations

import asyncio
import subprocess

import asyncssh
import pytest

from tests.sshhosts import hosts_available, make_hosts

pytestmark = pytest.mark.skipif(hosts_available() is not None, reason=str(hosts_available()))


async def _run(host, command: str) -> str:
    async with asyncssh.connect(
        host.ip, port=host.port, username=host.user,
        client_keys=[asyncssh.import_private_key(host.private_key_pem)],
        known_hosts=asyncssh.import_known_hosts(f"{host.ip} {host.host_key}\n"),
    ) as conn:
        return (await conn.run(command, check=True)).stdout


def test_hosts_answer_ssh_have_python_and_are_removed():
    site = make_hosts(2)
    try:
        first, second = site.hosts
        assert first.ip != second.ip and first.user == second.user
        out = asyncio.run(_run(first, "id -un; python3 -c 'import venv, sys; "
                                      "print(sys.version_info >= (3, 9))'; ip -o -4 addr; "
                                      "echo one > ~/mark"))
        assert out.splitlines()[:2] == [first.user, "True"]
        assert first.ip in out and second.ip not in out
        # Each host has a disk of its own.
        assert (first.home / "mark").read_text() == "one\n"
        assert not (second.home / "mark").exists()
        assert asyncio.run(_run(second, "cat ~/mark 2>/dev/null || echo none")) == "none\n"
        # No route out of the site: only its own subnet and loopback.
        routes = subprocess.run(["ip", "-n", first.netns, "route"], capture_output=True,
                                text=True, check=True).stdout
        assert "default" not in routes
    finally:
        site.close()
    assert first.netns not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                             text=True).stdout
    assert not first.home.exists() and not first.processes()
