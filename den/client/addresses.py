"""Resource addresses: ``/<owner>/<name>``, ``~/name``, bare names and page URLs.

An address is the path of a resource's web page, so a URL copied from the browser
(``https://den.example.com/alice/train``) loads the same resource as
``/alice/train``. ``~/train`` and a bare ``train`` mean the caller's namespace.
"""

from __future__ import annotations

import re

from den.client.errors import InvalidAddress

__all__ = ["is_url", "join_address", "parse_address", "split_address", "to_address"]

_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")
# Usernames are address segments too (the server refuses others at sign-up).
_OWNER = re.compile(r"[A-Za-z0-9._-]+")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# Paths that point at a resource through the API rather than its page.
_API_PREFIX = "/api/v1/resources/"


def is_url(text: str) -> bool:
    """True if ``text`` looks like ``scheme://...`` rather than an address."""
    return bool(_URL.match(text))


def _check_segments(owner: str, segments: list[str], original: str) -> None:
    if not owner or not _OWNER.fullmatch(owner) or owner in {"-", ".", ".."}:
        raise InvalidAddress(
            f"{original!r} is not a valid address: the owner {owner!r} is not a username.",
            field="address",
        )
    if not segments:
        raise InvalidAddress(
            f"{original!r} is not a valid address: expected /<owner>/<name>.",
            field="address",
        )
    for segment in segments:
        if not _SEGMENT.fullmatch(segment) or segment in {"-", ".", ".."}:
            raise InvalidAddress(
                f"{original!r} is not a valid address: name segment {segment!r} may only "
                "use letters, digits, '.', '_' and '-' (and may not be '-', '.' or '..').",
                field="address",
            )


def _path_of_url(url: str, server_url: str | None) -> str:
    from urllib.parse import unquote, urlsplit

    if server_url:
        base = server_url.rstrip("/")
        if url.startswith(base + "/"):
            return unquote(urlsplit(url[len(base) :]).path)
    return unquote(urlsplit(url).path)


def parse_address(
    text: str, *, username: str | None = None, server_url: str | None = None
) -> tuple[str | None, str]:
    """Split an address, name or URL into ``(owner, name)``.

    ``owner`` is ``None`` for ``~/name`` and bare names when ``username`` is not
    given (the caller's namespace, still to be resolved). ``name`` may contain
    ``/`` (folders). For URLs the host is dropped and the path is the address; a
    trailing ``/-/...`` (a page about the resource) and an ``/api/v1/resources``
    prefix are removed. Raises :class:`den.InvalidAddress` if it does not parse.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidAddress("An address may not be empty.", field="address")
    original = text
    text = text.strip()
    if is_url(text):
        path = _path_of_url(text, server_url)
        if path.startswith(_API_PREFIX):
            path = "/" + path[len(_API_PREFIX) :]
        if not path.startswith("/") or path == "/":
            raise InvalidAddress(
                f"{original!r} is not the URL of a resource: its path should be /<owner>/<name>.",
                field="address",
            )
        text = path
    if "/-/" in text + "/":
        text = text[: (text + "/").index("/-/")]
    text = text.rstrip("/")

    owner: str | None
    if text.startswith("/"):
        owner, *segments = text[1:].split("/")
    else:
        # "~/name" and a bare "name" both mean the caller's namespace.
        rest = text[2:] if text.startswith("~/") else ("" if text == "~" else text)
        owner, segments = username, (rest.split("/") if rest else [])
    if owner is None:
        _check_segments("me", segments, original)
        return None, "/".join(segments)
    _check_segments(owner, segments, original)
    return owner, "/".join(segments)


def join_address(owner: str, name: str) -> str:
    """``("alice", "train") -> "/alice/train"``."""
    return f"/{owner}/{name}"


def split_address(address: str) -> tuple[str, str]:
    """Split a full address ``/<owner>/<name>`` into ``(owner, name)``."""
    owner, name = parse_address(address)
    if owner is None:
        raise InvalidAddress(f"{address!r} is not a full address /<owner>/<name>.", field="address")
    return owner, name


def to_address(text: str, *, username: str | None, server_url: str | None = None) -> str:
    """Resolve an address, ``~/name``, bare name or URL to a full ``/<owner>/<name>``.

    ``username`` is needed for names in the caller's namespace; without it such
    a name raises :class:`den.NotLoggedIn`.
    """
    owner, name = parse_address(text, username=username, server_url=server_url)
    if owner is None:
        from den.client.errors import NotLoggedIn

        raise NotLoggedIn(
            f"{text!r} is in your own namespace, but den does not know who you are: "
            "run `den login` first or use a full address /<owner>/<name>."
        )
    return join_address(owner, name)
