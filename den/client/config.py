"""Where the client finds its server and token.

In order of precedence: ``den.login(...)`` in this process; the ``DEN_URL`` and
``DEN_TOKEN`` environment variables; the config file ``~/.den/config.yaml``
(``DEN_CONFIG`` names another path). The file is written with mode 0600 because
it holds a token.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = [
    "Settings",
    "config_path",
    "read_config_file",
    "resolve_settings",
    "server_url",
    "server_url_candidates",
    "write_config_file",
]

DEFAULT_TIMEOUT = 30.0
#: Hosts a URL without a scheme reaches over plain http; any other gets https.
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0"})
#: How many path segments of a pasted URL are tried as the server's root.
MAX_ROOT_CANDIDATES = 8


def server_url(text: str) -> str:
    """A den server's URL with a scheme and no trailing slash.

    A URL without a scheme gets one, as a browser would: ``http://`` for this
    machine (``localhost``, ``127.x``, ``[::1]``), where den serves plain HTTP
    by default, and ``https://`` for any other host, whose den should be
    behind TLS (give ``http://`` yourself to reach one that is not).
    """
    from urllib.parse import urlsplit

    text = text.strip().rstrip("/")
    if not text or "://" in text:
        return text
    host = (urlsplit("//" + text).hostname or "").lower()
    local = host in LOOPBACK_HOSTS or host.startswith("127.") or host.endswith(".localhost")
    return f"{'http' if local else 'https'}://{text}"


def server_url_candidates(url: str) -> list[str]:
    """Where a den server's root may be, for a URL someone pasted: the URL
    itself, then each shorter path down to the host. A page's URL
    (``http://host/alice/train``, ``http://host/login``) thus leads to the
    server at ``http://host``; a path at which den really is served is kept."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}"
    path = parts.path
    for marker in ("/-/", "/api/"):  # pages about a resource, and the API itself
        if marker in path + "/":
            path = path[: (path + "/").index(marker)]
    segments = [segment for segment in path.split("/") if segment][:MAX_ROOT_CANDIDATES]
    candidates = [base + "".join(f"/{s}" for s in segments[:n])
                  for n in range(len(segments), 0, -1)]
    return [*candidates, base]


class Settings:
    """The resolved connection settings: server URL, token and (if known) username."""

    __slots__ = ("timeout", "token", "url", "username")

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        username: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.url = url.rstrip("/") if url else None
        self.token = token or None
        self.username = username or None
        self.timeout = timeout

    def __repr__(self) -> str:
        token = "<set>" if self.token else None
        return f"Settings(url={self.url!r}, token={token}, username={self.username!r})"


def config_path() -> Path:
    """The config file's path: ``$DEN_CONFIG`` or ``~/.den/config.yaml``."""
    override = os.environ.get("DEN_CONFIG")
    if override:
        return Path(override).expanduser()
    return Path.home() / ".den" / "config.yaml"


def read_config_file(path: Path | None = None) -> dict[str, Any]:
    """Read the config file; a missing or empty file gives ``{}``."""
    path = path or config_path()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    import yaml

    data = yaml.safe_load(text)
    return data if isinstance(data, dict) else {}


def write_config_file(values: dict[str, Any], path: Path | None = None) -> Path:
    """Merge ``values`` into the config file (a ``None`` value removes the key).

    The file is created with mode 0600 and its directory with 0700; an existing
    file's mode is tightened to 0600 too. The write is atomic (temp file + rename).
    """
    import yaml

    path = path or config_path()
    data = read_config_file(path)
    for key, value in values.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            yaml.safe_dump(data, handle, default_flow_style=False, sort_keys=True)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def resolve_settings() -> Settings:
    """Settings from the environment over the config file (no explicit login)."""
    data = read_config_file()
    url = os.environ.get("DEN_URL") or data.get("url")
    env_token = os.environ.get("DEN_TOKEN")
    file_token = data.get("token")
    if url and data.get("url") and url.rstrip("/") != str(data["url"]).rstrip("/"):
        file_token = None  # the file's token belongs to the file's server: never send it elsewhere
    token = env_token or file_token
    # A username cached in the file belongs to the file's token and server.
    same_identity = not env_token and url == data.get("url")
    username = data.get("username") if same_identity else None
    timeout_text = os.environ.get("DEN_TIMEOUT") or data.get("timeout")
    try:
        timeout = float(timeout_text) if timeout_text else DEFAULT_TIMEOUT
    except ValueError:
        timeout = DEFAULT_TIMEOUT
    return Settings(url=url, token=token, username=username, timeout=timeout)
