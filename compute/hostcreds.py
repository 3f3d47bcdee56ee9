"""What backends that reach hosts over SSH get from den: the cluster's hosts,
its owner's private key and the host keys den trusts, and where newly trusted
host keys are recorded.

The private key is the value of the cluster's ``creds`` secret. The worker
uses it for the cluster's **owner** (the daemon acts for them), so the owner
must be able to read that secret and, when the cluster names one, its
``env``, checked through the access layer at every use, as for a function's
``system``: a writer cannot point a cluster at a key they may not see. Every
read of the secret is audited. The key is held in memory only; it never goes
into an event, a log line, a handle or a command line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import transaction

from compute.backends.base import BackendError
from compute.backends.bootstrap import SshHost, key_fingerprint
from compute.models import ClusterEvent, ClusterState
from registry.access import Caller, access_resource
from registry.errors import NotAuthenticated, NotFound, PermissionDenied
from registry.models import AccessLevel, Resource, ResourceType
from registry.services import audit_record, secret_read_values_audited

#: Fields of a cluster's config that name other resources its owner must be able to use.
_REFERENCES = {"creds": ResourceType.SECRET, "env": ResourceType.ENV}


def owner_id(cluster_key: str) -> int | None:
    """The id of the cluster's owner (kept in a start's handles for its release)."""
    return Resource.objects.filter(pk=int(cluster_key)).values_list("owner_id", flat=True).first()


def host_label(host: str, port: int) -> str:
    """How den names a host (its key in ``ClusterState.host_keys``)."""
    return host if int(port) == 22 else f"{host}:{port}"


def require_usable_references(resource: Resource) -> None:
    """BackendError unless the cluster's owner may read the ``creds`` and
    ``env`` its config names (they may have lost access since it was saved)."""
    owner = resource.owner
    for field, wanted in _REFERENCES.items():
        address = (resource.config or {}).get(field)
        if not isinstance(address, str) or not address:
            continue
        try:
            target = access_resource(Caller(user=owner), address, AccessLevel.READ)
        except (NotFound, PermissionDenied, NotAuthenticated):
            target = None
        if target is None or target.type != wanted:
            raise BackendError(
                f"The cluster's owner ({owner.username}) may not use config.{field} "
                f"({address}): there is no {wanted} there, or they may not read it; name a "
                f"{wanted} they can read and bring the cluster up again.", field=field)


def _secret_values(resource: Resource) -> dict[str, str]:
    address = (resource.config or {}).get("creds")
    if not isinstance(address, str) or not address:
        raise BackendError("An ssh cluster needs config.creds: the address of a secret holding "
                           "the private key (den.cluster(..., ssh_creds={...}) saves one).",
                           field="creds")
    require_usable_references(resource)
    secret = access_resource(Caller(user=resource.owner), address, AccessLevel.READ)
    return secret_read_values_audited(actor=resource.owner, resource=secret)


def private_key_of(values: Mapping[str, str]) -> str:
    """The private key in a creds secret's values (``private_key``, or
    ``ssh_private_key`` when it holds the key itself rather than its path)."""
    for name in ("private_key", "ssh_private_key"):
        value = values.get(name) or ""
        if "PRIVATE KEY" in value:
            return value
    raise BackendError("The cluster's creds secret holds no private key (a value named "
                       "private_key with the key's text); save it again with "
                       "ssh_creds={'ssh_private_key': '~/.ssh/id_ed25519'}.", field="creds")


def cluster_hosts(cluster_key: str, handles: Mapping[str, Any] | None = None) -> list[SshHost]:
    """The hosts of cluster ``cluster_key`` with its owner's key and the host
    keys den trusts. From the cluster's config; for a cluster whose resource
    is gone (being released), from the start's ``handles``."""
    resource = Resource.objects.select_related("owner").filter(pk=int(cluster_key)).first()
    if resource is None:
        return _released_hosts(handles or {})
    config = resource.config or {}
    ips = config.get("ips") or (handles or {}).get("ips") or []
    if isinstance(ips, str):
        ips = [ips]
    if not ips or not all(isinstance(ip, str) and ip for ip in ips):
        raise BackendError("An ssh cluster needs config.ips: one or more host addresses, the "
                           "head first.", field="ips")
    values = _secret_values(resource)
    user = config.get("ssh_user") or values.get("ssh_user")
    if not isinstance(user, str) or not user:
        raise BackendError("An ssh cluster needs ssh_user (in its config or its creds "
                           "secret).", field="ssh_user")
    try:
        port = int(config.get("ssh_port") or values.get("ssh_port") or 22)
    except (TypeError, ValueError):
        raise BackendError("ssh_port must be a port number.", field="ssh_port") from None
    key = private_key_of(values)
    pinned = ClusterState.objects.filter(resource=resource).values_list(
        "host_keys", flat=True).first() or {}
    return [SshHost(host=ip, port=port, user=user, private_key=key,
                    host_key=pinned.get(host_label(ip, port))) for ip in ips]


def _released_hosts(handles: Mapping[str, Any]) -> list[SshHost]:
    """The hosts of a cluster whose resource was deleted (its release tears
    them down), from its last start's handles: the owner's key is read as
    for a live cluster, and each host key is the one that start used."""
    from django.contrib.auth import get_user_model

    if not handles.get("nodes"):
        return []  # not running when it was deleted: no daemon to stop
    owner = get_user_model().objects.filter(pk=int(handles.get("owner_id") or 0),
                                            is_active=True).first()
    address = handles.get("creds")
    if owner is None or not isinstance(address, str):
        raise BackendError("The cluster is gone, and den no longer knows how to reach its "
                           "hosts; stop its daemons there by hand.")
    try:
        secret = access_resource(Caller(user=owner), address, AccessLevel.READ)
    except (NotFound, PermissionDenied, NotAuthenticated):
        raise BackendError("The cluster is gone, and its owner can no longer read its creds; "
                           "stop its daemons on the hosts by hand.") from None
    values = secret_read_values_audited(actor=owner, resource=secret)
    key = private_key_of(values)
    return [SshHost(host=str(node["host"]), port=int(node.get("ssh_port") or 22),
                    user=str(handles.get("ssh_user") or ""), private_key=key,
                    host_key=node.get("host_key") or None)
            for node in handles.get("nodes") or () if isinstance(node, dict)]


def record_host_key(cluster_key: str, host: SshHost, key_line: str) -> bool:
    """Trust ``key_line`` for ``host`` from now on (first use); True if it was
    recorded now. A key already recorded is never replaced here: only
    :func:`forget_host_key` removes one."""
    label = host_label(host.host, host.port)
    with transaction.atomic():
        state = ClusterState.objects.select_for_update().filter(
            resource_id=int(cluster_key)).first()
        if state is None or label in (state.host_keys or {}):
            return False
        state.host_keys = {**(state.host_keys or {}), label: key_line}
        state.save(update_fields=["host_keys", "updated_at"])
        ClusterEvent.objects.create(
            cluster=state, kind="host_key.trusted",
            message=f"Trusted the SSH host key of {label} on first use "
                    f"({key_fingerprint(key_line)}); a different key will be refused.",
            data={"host": label, "fingerprint": key_fingerprint(key_line)})
    return True


@transaction.atomic
def forget_host_key(*, actor: Any, resource: Resource, host: str) -> list[str]:
    """Forget the host key den trusts for ``host`` (``ip`` or ``ip:port``), so
    that the next start trusts the key the host presents then; returns the
    hosts forgotten (none if den trusted no key for it)."""
    state = ClusterState.objects.select_for_update().filter(resource=resource).first()
    keys = dict(state.host_keys or {}) if state is not None else {}
    gone = [label for label in keys if label == host or label.rsplit(":", 1)[0] == host]
    if state is None or not gone:
        return []
    for label in gone:
        fingerprint = key_fingerprint(keys.pop(label))
        ClusterEvent.objects.create(
            cluster=state, kind="host_key.forgotten",
            message=f"{getattr(actor, 'username', 'den')} removed the trusted SSH host key of "
                    f"{label} ({fingerprint}); the next start trusts the key it finds.",
            data={"host": label, "fingerprint": fingerprint})
    state.host_keys = keys
    state.save(update_fields=["host_keys", "updated_at"])
    audit_record(actor=actor, action="cluster.host_key.forget", resource=resource, hosts=gone)
    return gone
