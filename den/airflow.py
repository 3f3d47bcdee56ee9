"""den for Apache Airflow: a ``den`` connection type and :class:`DenHook`.

Imported only by Airflow users (``import den`` never imports it, nor Airflow)::

    from den.airflow import DenHook

    @task
    def train(data_ref):
        return DenHook(den_conn_id="den_default").function("/alice/train").remote(data_ref)

The connection holds den's URL (its host, ``https://den.example.com``, or a
host and port with ``{"scheme": "http"}`` in its extra) and a token (its
password), best a service account's: ``AIRFLOW_CONN_DEN_DEFAULT='{"conn_type":
"den", "host": "https://den.example.com", "password": "den_..."}'`` or an
Airflow connection made in its UI, where ``den`` is a connection type of its own
(den's distribution registers it as an Airflow provider). Nothing here talks to
den until a hook method is called, so a DAG file that makes hooks at the top
costs no den call when Airflow parses it; load functions inside tasks.

Remote output goes to the hook's logger: stdout and logs at INFO, stderr at
WARNING (a remote warning is not an Airflow error). A den error fails the task
with den's message (``den.NotFound``, ``den.AuthenticationError``...), which the
task log shows.

Results a task passes to the next are best :class:`den.Ref` handles
(``fn.remote(...)``): a few hundred bytes in the XCom, the data staying on the
cluster. This module registers :class:`den.Ref` with Airflow's serializer, so
an XCom holding one comes back as one.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from airflow.sdk import BaseHook

import den
from den.client.session import Session

__all__ = ["DenHook", "get_provider_info"]


def get_provider_info() -> dict[str, Any]:
    """Airflow's provider metadata for den (the ``apache_airflow_provider`` entry point)."""
    return {
        "package-name": "den-ml",
        "name": "den",
        "description": "Call functions saved in den on den's clusters from Airflow tasks.",
        "connection-types": [
            {"connection-type": "den", "hook-class-name": "den.airflow.DenHook",
             "hook-name": "den"},
        ],
    }


def _allow_refs_in_xcoms() -> None:
    try:
        from airflow.sdk.serde import allow_class
    except ImportError:  # an Airflow before 3.3: add den.client.refs.Ref to
        return  # [core] allowed_deserialization_classes instead
    allow_class(den.Ref)


_allow_refs_in_xcoms()


class DenHook(BaseHook):
    """A den client for Airflow tasks, configured by an Airflow connection of type ``den``.

    ``DenHook(den_conn_id="den_default").function("/alice/train")`` loads a saved
    function as a callable stub (calls run on its cluster, as the connection's
    token). The session is made on first use and kept for the hook's life.
    """

    conn_name_attr = "den_conn_id"
    default_conn_name = "den_default"
    conn_type = "den"
    hook_name = "den"

    def __init__(self, den_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.den_conn_id = den_conn_id
        self._session: Session | None = None

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """How Airflow's connection form shows a den connection."""
        return {
            "hidden_fields": ["schema", "login", "extra"],
            "relabeling": {"host": "den URL", "password": "Token"},
            "placeholders": {"host": "https://den.example.com", "password": "den_..."},
        }

    def get_conn(self) -> Session:
        """The den session for the connection: its URL and token (made once)."""
        if self._session is None:
            conn = self.get_connection(self.den_conn_id)
            url = den_url(conn.host or "", conn.port, conn.extra_dejson.get("scheme"))
            token = conn.password or None
            if not token:
                raise den.AuthenticationError(
                    f"The Airflow connection {self.den_conn_id!r} has no token: put a den "
                    "token (a service account's) in its password."
                )
            self._session = Session(url, token, output=self._log_output)
        return self._session

    def _log_output(self, stream: str, text: str) -> None:
        level = logging.WARNING if stream == "stderr" else logging.INFO
        for line in text.rstrip("\n").splitlines():
            self.log.log(level, "%s", line)

    def function(self, name: str) -> den.Function:
        """The saved function at ``name`` (an address like ``/alice/train``, or a URL)."""
        return den.function(name=name, session=self.get_conn())

    def module(self, name: str) -> den.Module:
        """The saved module (class or named instance) at ``name``."""
        return den.module(name=name, session=self.get_conn())

    def cluster(self, name: str) -> den.Cluster:
        """The saved cluster at ``name``."""
        return den.cluster(name=name, session=self.get_conn())

    def load(self, name: str) -> den.Resource:
        """Any saved resource at ``name``, as its type's class."""
        return den.load(name, session=self.get_conn())

    def whoami(self) -> dict[str, Any]:
        """Who the connection's token is (``username``...); a cheap connection test."""
        return den.whoami(session=self.get_conn())

    def test_connection(self) -> tuple[bool, str]:
        """For the connection form's Test button."""
        try:
            me = self.whoami()
        except den.DenError as exc:
            return False, str(exc)
        return True, f"Connected to den as {me.get('username')}."


def den_url(host: str, port: int | None = None, scheme: str | None = None) -> str:
    """den's base URL from a connection's host (a URL, or a bare host), port and scheme."""
    host = host.strip().rstrip("/")
    if "://" not in host:
        host = f"{scheme or 'https'}://{host}"
    parts = urlsplit(host)
    if port and not parts.port:
        host = f"{parts.scheme}://{parts.hostname}:{port}{parts.path}"
    return host
