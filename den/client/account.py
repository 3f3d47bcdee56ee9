"""Signing in and out, who am I, and API tokens."""

from __future__ import annotations

from typing import Any

from den.client import api
from den.client.config import resolve_settings, write_config_file
from den.client.errors import NotLoggedIn, ValidationError
from den.client.session import Call, Op, Session, arun, current, run, set_current

__all__ = [
    "acreate_token",
    "alogin",
    "awhoami",
    "create_token",
    "default_token_name",
    "list_tokens",
    "login",
    "logout",
    "revoke_token",
    "whoami",
]


def default_token_name() -> str:
    """A token name that says where and when it was made, e.g. ``login-laptop-20250101-120000``."""
    import socket
    import time

    host = socket.gethostname().split(".")[0] or "host"
    return f"login-{host}-{time.strftime('%Y%m%d-%H%M%S')}"


def _login_op(
    token: str | None, username: str | None, password: str | None, token_name: str | None
) -> Op[tuple[str | None, dict[str, Any]]]:
    if token is None and username is not None:
        if password is None:
            raise ValidationError(
                "A password is needed to log in with a username.", field="password"
            )
        data = yield from api.auth_login(username, password, token_name or default_token_name())
        token = str(data["token"])
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    reply = yield Call("GET", "/me", headers=headers)
    me: dict[str, Any] = reply.data
    return token, me


def _prepare(url: str | None, token: str | None, username: str | None) -> tuple[str, str | None]:
    settings = resolve_settings()
    url = (url or settings.url or "").rstrip("/")
    if not url:
        raise NotLoggedIn("den.login needs the server's url (or DEN_URL).")
    if token is None and username is None and url == settings.url:
        token = settings.token
    if token is None and username is None:
        raise NotLoggedIn("den.login needs a token, or a username and password.")
    return url, token


def _finish(
    url: str, token: str | None, me: dict[str, Any], persist: bool, timeout: float | None
) -> Session:
    kwargs: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
    session = Session(url, token, username=me.get("username"), **kwargs)
    set_current(session)
    if persist:
        write_config_file({"url": url, "token": token, "username": me.get("username")})
    return session


def login(
    url: str | None = None,
    token: str | None = None,
    *,
    username: str | None = None,
    password: str | None = None,
    token_name: str | None = None,
    persist: bool = True,
    verify: bool = True,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Sign in to a den server for this process and (``persist=True``) for later ones.

    Give a ``token`` (``den_...``), or a ``username`` and ``password`` to exchange
    for a new token named ``token_name``. The URL and token are written to
    ``~/.den/config.yaml`` (mode 0600; ``DEN_CONFIG`` names another file) unless
    ``persist=False``. With ``verify=True`` the token is checked against the
    server; returns the account (``username``, ``email``...) or ``{}`` unverified.
    """
    url, token = _prepare(url, token, username)
    me: dict[str, Any] = {}
    if verify or username is not None:
        probe = Session(url, timeout=timeout) if timeout is not None else Session(url)
        try:
            token, me = run(_login_op(token, username, password, token_name), probe)
        finally:
            probe.close()
    _finish(url, token, me, persist, timeout)
    return me


async def alogin(
    url: str | None = None,
    token: str | None = None,
    *,
    username: str | None = None,
    password: str | None = None,
    token_name: str | None = None,
    persist: bool = True,
    verify: bool = True,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Async :func:`login`."""
    url, token = _prepare(url, token, username)
    me: dict[str, Any] = {}
    if verify or username is not None:
        probe = Session(url, timeout=timeout) if timeout is not None else Session(url)
        try:
            token, me = await arun(_login_op(token, username, password, token_name), probe)
        finally:
            await probe.aclose()
    _finish(url, token, me, persist, timeout)
    return me


def logout(*, persist: bool = True) -> None:
    """Forget the token in this process and (``persist=True``) in the config file.

    The token stays valid on the server; revoke it with :func:`revoke_token` or
    ``den token revoke`` if it may have leaked.
    """
    set_current(Session(None))
    if persist:
        write_config_file({"token": None, "username": None})


def _whoami_op(session: Session) -> Op[dict[str, Any]]:
    data = yield from api.me()
    session.username = str(data.get("username")) if data.get("username") else None
    return data


def whoami(*, session: Session | None = None) -> dict[str, Any]:
    """The signed-in account: ``username``, ``email``, ``is_staff``, ``date_joined``."""
    session = session or current()
    return run(_whoami_op(session), session)


async def awhoami(*, session: Session | None = None) -> dict[str, Any]:
    """Async :func:`whoami`."""
    session = session or current()
    return await arun(_whoami_op(session), session)


def list_tokens(*, session: Session | None = None) -> list[dict[str, Any]]:
    """Your API tokens: ``id``, ``name``, ``scope``, ``expires_at``, ``last_used_at``,
    ``hint`` (never the secret value)."""
    return run(api.token_list(), session)


def create_token(
    name: str,
    scope: str = "write",
    expires_in_days: int | None = None,
    *,
    session: Session | None = None,
) -> dict[str, Any]:
    """Make an API token; the answer's ``token`` is the secret, shown this once.

    ``scope`` is ``read`` (refused every write) or ``write``.
    """
    if scope not in ("read", "write"):
        raise ValidationError(f"scope must be 'read' or 'write', not {scope!r}.", field="scope")
    return run(api.token_create(name, scope, expires_in_days), session)


async def acreate_token(
    name: str,
    scope: str = "write",
    expires_in_days: int | None = None,
    *,
    session: Session | None = None,
) -> dict[str, Any]:
    """Async :func:`create_token`."""
    if scope not in ("read", "write"):
        raise ValidationError(f"scope must be 'read' or 'write', not {scope!r}.", field="scope")
    return await arun(api.token_create(name, scope, expires_in_days), session)


def revoke_token(token_id: int | str, *, session: Session | None = None) -> None:
    """Revoke one of your tokens by its ``id``; it stops working at once."""
    run(api.token_revoke(token_id), session)
