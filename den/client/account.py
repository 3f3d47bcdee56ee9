"""Signing in and out, who am I, and API tokens."""

from __future__ import annotations

from typing import Any

from den.client import api
from den.client.config import (
    read_config_file,
    resolve_settings,
    server_url,
    server_url_candidates,
    write_config_file,
)
from den.client.errors import (
    AuthenticationError,
    DenError,
    NetworkError,
    NotLoggedIn,
    ValidationError,
)
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
    url = server_url(url or settings.url or "")
    if not url:
        raise NotLoggedIn("den.login needs the server's url (or DEN_URL).")
    if token is None and username is None and url == settings.url:
        token = settings.token
    if token is None and username is None:
        raise NotLoggedIn("den.login needs a token, or a username and password.")
    return url, token


def _probe_op() -> Op[bool]:
    """Is there a den API here? Asked without a token, den answers 401 with
    its JSON error; a web page (a resource's, the sign-in page) answers with
    a redirect or HTML instead."""
    try:
        yield Call("GET", "/auth/check")
    except AuthenticationError as exc:
        return exc.code in ("not_authenticated", "authentication_failed")
    except NetworkError:
        raise
    except DenError:
        return False
    return False  # den never answers this without a token with a success


def _not_a_server(url: str, candidates: list[str]) -> ValidationError:
    return ValidationError(
        f"There is no den server at {url}: give the server's own URL (the address of its "
        f"dashboard, such as {candidates[-1]}), not the URL of a page on it.",
        field="url",
    )


def _with_scheme_hint(exc: NetworkError, given: str | None, url: str) -> NetworkError:
    if given and "://" not in given:
        exc.message = (f"{exc.message} (den read {given!r} as {url}; give the URL with "
                       "http:// or https:// if that is not where the server is.)")
        exc.args = (exc.message,)
    return exc


def _find_server(url: str, timeout: float | None) -> str:
    """The root of the den server ``url`` points into (see
    ``config.server_url_candidates``); asks only when ``url`` has a path."""
    candidates = server_url_candidates(url)
    if len(candidates) == 1:
        return candidates[0]
    for candidate in candidates:
        probe = Session(candidate, timeout=timeout) if timeout is not None else Session(candidate)
        try:
            if run(_probe_op(), probe):
                return candidate
        finally:
            probe.close()
    raise _not_a_server(url, candidates)


async def _afind_server(url: str, timeout: float | None) -> str:
    """Async :func:`_find_server`."""
    candidates = server_url_candidates(url)
    if len(candidates) == 1:
        return candidates[0]
    for candidate in candidates:
        probe = Session(candidate, timeout=timeout) if timeout is not None else Session(candidate)
        try:
            if await arun(_probe_op(), probe):
                return candidate
        finally:
            await probe.aclose()
    raise _not_a_server(url, candidates)


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

    ``url`` may be any page of the server (``https://den.example.com/alice/train``):
    den finds the server's root from it. Without a scheme, ``http://`` is
    assumed for this machine and ``https://`` for any other host.
    """
    given = url
    url, token = _prepare(url, token, username)
    me: dict[str, Any] = {}
    if verify or username is not None:
        try:
            url = _find_server(url, timeout)
            probe = Session(url, timeout=timeout) if timeout is not None else Session(url)
            try:
                token, me = run(_login_op(token, username, password, token_name), probe)
            finally:
                probe.close()
        except NetworkError as exc:
            raise _with_scheme_hint(exc, given, url) from exc.__cause__
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
    given = url
    url, token = _prepare(url, token, username)
    me: dict[str, Any] = {}
    if verify or username is not None:
        try:
            url = await _afind_server(url, timeout)
            probe = Session(url, timeout=timeout) if timeout is not None else Session(url)
            try:
                token, me = await arun(_login_op(token, username, password, token_name), probe)
            finally:
                await probe.aclose()
        except NetworkError as exc:
            raise _with_scheme_hint(exc, given, url) from exc.__cause__
    _finish(url, token, me, persist, timeout)
    return me


def _revoke_current_op() -> Op[None]:
    yield Call("DELETE", "/tokens/current")


def _tokens_to_forget(persist: bool) -> list[tuple[str, str]]:
    """``(server, token)`` pairs logout forgets: the process's token (unless it
    came from ``DEN_TOKEN``, which logout cannot unset) and, with ``persist``,
    the config file's."""
    import os

    found: list[tuple[str, str]] = []
    active = current()
    if active.url and active.token and active.token != os.environ.get("DEN_TOKEN"):
        found.append((active.url, active.token))
    if persist:
        stored = read_config_file()
        if stored.get("url") and stored.get("token"):
            found.append((server_url(str(stored["url"])), str(stored["token"])))
    return list(dict.fromkeys(found))


def logout(*, persist: bool = True, revoke: bool = True) -> list[dict[str, Any]]:
    """Sign out: revoke the token on its server (``revoke=True``), then forget
    it in this process and (``persist=True``) in the config file.

    Returns what happened to each token forgotten: ``{"url", "revoked",
    "reason"}``, where ``reason`` says why a token was not revoked:
    ``"unreachable"`` (the server could not be reached: the token stays valid
    until it expires; revoke it later in the web UI or with ``den token
    revoke``), ``"invalid"`` (it no longer worked anyway) or the server's
    message. The token is forgotten here in every case. A ``DEN_TOKEN`` in the
    environment is neither revoked nor forgotten.
    """
    results: list[dict[str, Any]] = []
    for url, token in _tokens_to_forget(persist) if revoke else []:
        session = Session(url, token, retries=1)
        result: dict[str, Any] = {"url": url, "revoked": False, "reason": None}
        try:
            run(_revoke_current_op(), session)
            result["revoked"] = True
        except NetworkError:
            result["reason"] = "unreachable"
        except AuthenticationError:
            result["reason"] = "invalid"
        except DenError as exc:
            result["reason"] = exc.message
        finally:
            session.close()
        results.append(result)
    set_current(Session(None))
    if persist:
        write_config_file({"token": None, "username": None})
    return results


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
