"""Shapes of the cluster endpoints' bodies."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from compute.models import ClusterEvent, ClusterState


class ClusterStateSerializer(serializers.ModelSerializer):
    """``GET .../-/cluster``: what the client's ``cluster.status()`` returns."""

    address = serializers.SerializerMethodField()
    autostop_mins = serializers.IntegerField(source="effective_autostop_mins")
    objects = serializers.IntegerField(source="objects_count")
    nodes = serializers.SerializerMethodField()
    host_keys = serializers.SerializerMethodField()
    cost = serializers.SerializerMethodField()
    stop_tears_down = serializers.SerializerMethodField()

    class Meta:
        model = ClusterState
        fields = [
            "address", "status", "status_changed_at", "daemon_url", "backend",
            "last_heartbeat_at", "last_activity_at", "calls_in_flight", "objects",
            "autostop_mins", "message", "updated_at", "nodes", "host_keys", "cost",
            "stop_tears_down",
        ]

    def get_cost(self, state: ClusterState) -> dict[str, Any] | None:
        """What a cloud cluster costs (SkyPilot clusters): instance type, region,
        spot, hourly price when known, and uptime while up; None otherwise."""
        from compute import selectors

        return selectors.cluster_cost(state=state)

    def get_stop_tears_down(self, state: ClusterState) -> bool:
        """Whether a stop releases the machines (Kubernetes cannot keep them)."""
        from compute import selectors

        return selectors.cluster_stop_tears_down(state=state)

    def get_address(self, state: ClusterState) -> str:
        return state.resource.address

    def get_host_keys(self, state: ClusterState) -> dict[str, str]:
        """The SSH host keys den trusts for the cluster's hosts, as fingerprints."""
        from compute.backends.bootstrap import key_fingerprint

        shown = {}
        for host, key in (state.host_keys or {}).items():
            try:
                shown[str(host)] = key_fingerprint(str(key))
            except Exception:  # an unreadable record shows as such, never a 500
                shown[str(host)] = "unreadable"
        return shown

    def get_nodes(self, state: ClusterState) -> list[dict[str, Any]]:
        """Where callers reach each node, the head first (what a backend put in
        ``Launched.handles["nodes"]``; only the fields callers need)."""
        if state.status not in ("up", "unreachable") or not state.daemon_url:
            return []
        handles = state.handles or {}
        nodes = handles.get("nodes") or [{"url": state.daemon_url}]
        cert = handles.get("tls_cert")
        shown = []
        for node in nodes:
            if not isinstance(node, dict):
                continue
            entry: dict[str, Any] = {"url": str(node.get("url") or "")}
            if cert and node.get("tls_fingerprint"):
                # What a caller pins: the certificate den made for this start.
                entry["tls_fingerprint"] = str(node["tls_fingerprint"])
                entry["tls_cert"] = str(cert)
            shown.append(entry)
        return shown


class ClusterEventSerializer(serializers.ModelSerializer):
    """An event as the cluster's writers see it: with its ``data`` (log lines,
    the server's paths and process ids)."""

    class Meta:
        model = ClusterEvent
        fields = ["id", "created_at", "kind", "message", "data"]


class ClusterEventReaderSerializer(serializers.ModelSerializer):
    """An event as a reader sees it: what happened, never the server's details."""

    class Meta:
        model = ClusterEvent
        fields = ["id", "created_at", "kind", "message"]


def cluster_event_serializer(*, may_write: bool) -> type[serializers.ModelSerializer]:
    return ClusterEventSerializer if may_write else ClusterEventReaderSerializer


class AutostopSerializer(serializers.Serializer):
    autostop_mins = serializers.IntegerField(min_value=-1, max_value=60 * 24 * 365)

    def to_internal_value(self, data: Any) -> Any:
        # "30" or 30.0 are not minutes a client meant to send; say so.
        value = data.get("autostop_mins") if isinstance(data, dict) else None
        if isinstance(value, bool) or (value is not None and not isinstance(value, int)):
            raise serializers.ValidationError(
                {"autostop_mins": ["autostop_mins must be a whole number of minutes, or -1."]}
            )
        return super().to_internal_value(data)


class HeartbeatSerializer(serializers.Serializer):
    """What the node daemon posts (see ``den.node.server.DenLink.beat``)."""

    last_activity = serializers.DateTimeField(required=False, allow_null=True)
    calls_in_flight = serializers.IntegerField(min_value=0, required=False, default=0)
    objects = serializers.IntegerField(min_value=0, required=False, default=0)
    draining = serializers.BooleanField(required=False, default=False)


class HeartbeatAnswerSerializer(serializers.Serializer):
    """What den answers a heartbeat: the autostop in force, and whether to stop
    taking calls for autostop (``autostop``) or that den is stopping it (``stop``)."""

    autostop_mins = serializers.IntegerField()
    autostop = serializers.BooleanField()
    stop = serializers.BooleanField()


class DeploymentSerializer(serializers.Serializer):
    """``PUT .../-/deployment``: what the client just put on the daemon."""

    name = serializers.CharField(max_length=200)
    spec = serializers.JSONField()


class DeploymentAnswerSerializer(serializers.Serializer):
    """``GET .../-/deployment`` (a cluster's own token): what to put back."""

    name = serializers.CharField()
    spec = serializers.JSONField()
    restores_state = serializers.CharField()
    code = serializers.CharField(allow_null=True)


class ForgetHostKeySerializer(serializers.Serializer):
    """``{"host": "10.0.0.5"}`` (or ``"10.0.0.5:2222"``): which host's key to forget."""

    host = serializers.CharField(max_length=300)
