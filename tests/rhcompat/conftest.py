"""Fixtures for the Runhouse-compatible API: a live den, and runhouse users who
drive it with the real runhouse 0.0.42 client, each in processes of their own
(own HOME, own working directory, an environment built from nothing)."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.factories import UserFactory, make_token

STEPS = Path(__file__).with_name("runhouse_steps.py")
RUNHOUSE_PYTHON = os.environ.get("DEN_RUNHOUSE_PYTHON", "")
#: Runhouse's requests have no timeouts: only this bounds a client process.
STEP_TIMEOUT = 180

MY_FNS = '''
def summer(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


class Counter:
    """Counts."""

    def __init__(self):
        self.count = 0

    def incr(self, by: int = 1) -> int:
        self.count += by
        return self.count
'''


class RunhouseUser:
    """A person with the runhouse client: ``run(step, ...)`` runs the steps in
    one fresh client process and returns each step's result."""

    def __init__(self, root: Path, name: str, token: str, den_url: str) -> None:
        self.name = name
        self.token = token
        self.home = root / name / "home"
        self.work = root / name / "work"
        (self.home / ".ssh").mkdir(parents=True)
        self.work.mkdir(parents=True)
        (self.work / "my_fns.py").write_text(textwrap.dedent(MY_FNS))
        key = self.home / ".ssh" / "compat"
        key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot a real key\n"
                       "-----END OPENSSH PRIVATE KEY-----\n")
        key.chmod(0o600)
        (self.home / ".ssh" / "compat.pub").write_text("ssh-ed25519 AAAAnotreal compat\n")
        self.api_server_url = f"{den_url}/rh"

    def env(self) -> dict[str, str]:
        # Built from nothing: runhouse reads RH_<KEY> and <KEY> for every setting,
        # so a stray TOKEN or USERNAME in the test's environment would leak in.
        return {
            "HOME": str(self.home),
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "API_SERVER_URL": self.api_server_url,
            "PYTHONPATH": str(self.work),
            "PYTHONWARNINGS": "ignore",
            "LANG": "C.UTF-8",
        }

    def run(self, *steps: dict[str, Any]) -> list[dict[str, Any]]:
        completed = subprocess.run(
            [RUNHOUSE_PYTHON, str(STEPS), json.dumps(list(steps))],
            cwd=self.work, env=self.env(), capture_output=True, text=True,
            timeout=STEP_TIMEOUT, stdin=subprocess.DEVNULL,
        )
        results = [json.loads(line[len("RH_RESULT "):]) for line in completed.stdout.splitlines()
                   if line.startswith("RH_RESULT ")]
        assert len(results) == len(steps), (
            f"runhouse exited {completed.returncode}:\n{completed.stdout[-3000:]}\n"
            f"{completed.stderr[-5000:]}")
        return results

    def ok(self, *steps: dict[str, Any]) -> list[Any]:
        """Run the steps and require each to succeed; their values."""
        results = self.run(*steps)
        for step, result in zip(steps, results, strict=True):
            assert result["ok"], (step["op"], result.get("message"), result.get("traceback"))
        return [result["value"] for result in results]

    def login(self) -> dict[str, Any]:
        return self.ok({"op": "login", "token": self.token})[0]


@pytest.fixture
def rh_den(live_server, settings, transactional_db) -> str:
    """A live den whose public URL is the live server's."""
    if not RUNHOUSE_PYTHON or not Path(RUNHOUSE_PYTHON).exists():
        pytest.fail("DEN_RUNHOUSE_PYTHON is not set to the runhouse client's python: "
                    "run the tests with scripts/test, which installs it.")
    settings.DEN_PUBLIC_URL = live_server.url
    return str(live_server.url)


@pytest.fixture
def rh_team(rh_den, tmp_path) -> dict[str, RunhouseUser]:
    """alice (owns things), bob (a teammate), dave (a stranger), each with a
    den token and the runhouse client, logged in."""
    team = {}
    for name in ("alice", "bob", "dave"):
        user = UserFactory(username=name)
        team[name] = RunhouseUser(tmp_path, name, make_token(user), rh_den)
    return team
