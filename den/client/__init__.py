"""The den client: HTTP session, config, errors and resource objects.

Modules: :mod:`~den.client.addresses` (parse addresses and URLs),
:mod:`~den.client.config` (server URL and token), :mod:`~den.client.session`
(HTTP pool, retries, sync/async driving), :mod:`~den.client.api` (one operation
per REST endpoint), :mod:`~den.client.resources` (resource objects),
:mod:`~den.client.account` (login, tokens), :mod:`~den.client.errors`,
:mod:`~den.client.introspect` and :mod:`~den.client.remote`. Use them through
``import den``.
"""
