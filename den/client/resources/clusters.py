"""Clusters: where functions and modules run (local, SSH hosts, clouds)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from den.client import api
from den.client.resources.base import Resource, from_fields, prune
from den.client.resources.secrets import Secret
from den.client.session import Op, Session, arun, run

if TYPE_CHECKING:
    from typing import Self  # novm: Python 3.11; the node imports this module on 3.9 too


_CLUSTER_FIELDS = (
    "provider",
    "ips",
    "ssh_user",
    "ssh_port",
    "instance_type",
    "num_nodes",
    "region",
    "use_spot",
    "autostop_mins",
    "server_port",
    "den_auth",
)


#: Inline SSH keys this process has said it saved (said once per secret).
_SAID_SAVED: set[str] = set()


class Cluster(Resource):
    """Compute to run functions and modules on: a local process (``provider="local"``),
    existing hosts over SSH (``ips`` and ``creds``) or a cloud or Kubernetes
    through SkyPilot (``instance_type``, ``provider="aws"``, ...)."""

    TYPE = "cluster"

    def __init__(
        self,
        name: str | None = None,
        *,
        provider: str | None = None,
        ips: list[str] | None = None,
        ssh_user: str | None = None,
        ssh_port: int | None = None,
        creds: Secret | str | None = None,
        instance_type: str | None = None,
        num_nodes: int | None = None,
        region: str | None = None,
        use_spot: bool | None = None,
        autostop_mins: int | None = None,
        server_port: int | None = None,
        den_auth: bool | None = None,
        data: dict[str, Any] | None = None,
        description: str | None = None,
        visibility: str | None = None,
        session: Session | None = None,
    ) -> None:
        super().__init__(
            name, data=data, description=description, visibility=visibility, session=session
        )
        self.provider = provider
        self.ips = list(ips) if ips is not None else None
        self.ssh_user = ssh_user
        self.ssh_port = ssh_port
        self.creds: Secret | str | None = creds
        self.instance_type = instance_type
        self.num_nodes = num_nodes
        self.region = region
        self.use_spot = use_spot
        self.autostop_mins = autostop_mins
        self.server_port = server_port
        self.den_auth = den_auth

    def _creds_ref(self) -> Any:
        creds = self.creds
        if isinstance(creds, Secret):
            return creds.address or creds._name or creds._config_fields()
        return creds

    def _config_fields(self) -> dict[str, Any]:
        fields = {name: getattr(self, name) for name in _CLUSTER_FIELDS}
        if fields["ips"] is not None:
            fields["ips"] = list(fields["ips"])
        fields["creds"] = self._creds_ref()
        return {**self.data, **prune(fields)}

    def _set_fields(self, config: dict[str, Any]) -> None:
        for name in _CLUSTER_FIELDS:
            setattr(self, name, config.pop(name, None))
        creds = config.pop("creds", None)
        self.creds = from_fields(Secret, creds) if isinstance(creds, dict) else creds
        self.data = config

    def _wire_config(self, session: Session) -> Op[dict[str, Any]]:
        config = self._config_fields()
        creds = self.creds
        if isinstance(creds, Secret):
            inline = creds._name is None and creds.address is None
            if inline:
                # Inline SSH credentials become a secret beside the cluster.
                own = yield from self._resolve_own_address(session)
                creds._set_name(f"{own}-ssh-creds")
                creds.provider = creds.provider or "ssh"
            config["creds"] = yield from creds._ensure_saved(session)
            if inline and config["creds"] not in _SAID_SAVED:
                _SAID_SAVED.add(config["creds"])
                print(f"den: saved your SSH key as the secret {config['creds']}, encrypted in "
                      "den and private to you; the cluster uses it through den, and people you "
                      "share the cluster with cannot read it.", file=sys.stderr, flush=True)
        elif isinstance(creds, str):
            config["creds"] = yield from api.resolve(session, creds)
        return config

    def _action_op(self, session: Session, action: str) -> Op[dict[str, Any]]:
        if action == "up" and self._dirty():
            yield from self._save_op(session)
        address = yield from self._resolve_own_address(session)
        return (yield from api.cluster_action(address, action))

    def _status_op(self, session: Session) -> Op[dict[str, Any]]:
        address = yield from self._resolve_own_address(session)
        return (yield from api.cluster_status(address))

    def status(self) -> dict[str, Any]:
        """The cluster's runtime status from den (``status``, daemon URL, last heartbeat...)."""
        session = self._sess()
        return run(self._status_op(session), session)

    async def astatus(self) -> dict[str, Any]:
        """Async :meth:`status`."""
        session = self._sess()
        return await arun(self._status_op(session), session)

    def up(self) -> Self:
        """Ask den to bring the cluster up (saving it first if it changed); returns at once.

        Use :meth:`up_if_not` to wait until it is up.
        """
        session = self._sess()
        run(self._action_op(session, "up"), session)
        return self

    def up_if_not(self, *, timeout: float = 600.0, quiet: bool = False) -> Self:
        """Bring the cluster up unless it is up already, and wait until it is.

        Saves the cluster first if it is new or changed, asks den to bring it up
        (unless it is up or on its way), and prints its progress to stderr (unless
        ``quiet``). Raises :class:`den.NoRunningCluster` with the cluster's message
        if it fails to start or is not up after ``timeout`` seconds.
        """
        from den.client import remote

        session = self._sess()
        address = run(self._ensure_saved(session), session)
        remote.bring_up(session, address, timeout=timeout, quiet=quiet)
        return self

    def stop(self) -> None:
        """Ask den to stop the cluster (it can come up again)."""
        session = self._sess()
        run(self._action_op(session, "stop"), session)

    def teardown(self) -> None:
        """Ask den to tear the cluster down and release its machines."""
        session = self._sess()
        run(self._action_op(session, "teardown"), session)

    def run(self, command: str | list[str], *, node: int | str | None = None,
            timeout: float | None = None, quiet: bool = False) -> Any:
        """Run a shell command on the head (``node=1``: another host;
        ``node="all"``: every host), printing its output as it arrives; needs
        write access. Returns a ``CommandResult`` (``exit_code``, ``stdout``,
        ``stderr``), or a list of them, one per node, with ``node="all"``."""
        from den.client import remote

        session = self._sess()
        address = run(self._resolve_own_address(session), session)
        results = remote.run_command(session, address, command, node=node, timeout=timeout,
                                     quiet=quiet)
        return results if node == "all" else results[0]

    def forget_host_key(self, host: str) -> None:
        """Stop trusting the SSH host key den recorded for ``host`` (one of
        ``ips``), after that machine was reinstalled: the next ``up`` trusts
        the key it presents then."""
        session = self._sess()
        address = run(self._resolve_own_address(session), session)
        run(api.cluster_forget_host_key(address, host), session)


