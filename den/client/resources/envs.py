"""Environments: pip requirements, variables, setup commands and a Python version."""

from __future__ import annotations

from typing import Any

from den.client.resources.base import Resource, from_fields
from den.client.session import Session


class Env(Resource):
    """An environment for code to run in: pip ``reqs``, ``env_vars``,
    ``setup_cmds`` (shell commands run once) and a ``python`` version."""

    TYPE = "env"

    def __init__(
        self,
        name: str | None = None,
        *,
        reqs: list[str] | None = None,
        env_vars: dict[str, str] | None = None,
        setup_cmds: list[str] | None = None,
        python: str | None = None,
        data: dict[str, Any] | None = None,
        description: str | None = None,
        visibility: str | None = None,
        session: Session | None = None,
    ) -> None:
        super().__init__(
            name, data=data, description=description, visibility=visibility, session=session
        )
        self.reqs: list[str] = list(reqs or [])
        self.env_vars: dict[str, str] = dict(env_vars or {})
        self.setup_cmds: list[str] = list(setup_cmds or [])
        self.python = python

    def _config_fields(self) -> dict[str, Any]:
        fields = {
            "reqs": list(self.reqs),
            "env_vars": dict(self.env_vars),
            "setup_cmds": list(self.setup_cmds),
            "python": self.python,
        }
        # Empty lists mean the same as absent ones; leave them out.
        return {**self.data, **{key: value for key, value in fields.items() if value}}

    def _set_fields(self, config: dict[str, Any]) -> None:
        self.reqs = list(config.pop("reqs", None) or [])
        self.env_vars = dict(config.pop("env_vars", None) or {})
        self.setup_cmds = list(config.pop("setup_cmds", None) or [])
        self.python = config.pop("python", None)
        self.data = config


def as_env(env: Env | str | list[str] | dict[str, Any] | None) -> Env | str | None:
    if env is None or isinstance(env, (Env, str)):  # tuples, not unions: 3.9 on nodes
        return env
    if isinstance(env, (list, tuple)):
        return Env(reqs=[str(req) for req in env])
    if isinstance(env, dict):
        return from_fields(Env, env)
    raise TypeError(
        f"env must be an Env, an address, a list of requirements or a dict, not {env!r}"
    )


