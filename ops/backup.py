"""Backups of a whole den, and restoring one into an empty database.

A backup is one tar file (mode 0600) holding:

- ``manifest.json``: the format, den's version, when, the database engine,
  each app's latest applied migration, whether keys are inside;
- the database: ``database.sqlite3``, copied with SQLite's online backup API
  (a consistent copy while den runs and writes), or ``database.pgdump``,
  ``pg_dump``'s custom format (a consistent snapshot, also online);
- ``keys.env``: ``DEN_SECRET_KEY`` and ``DEN_ENCRYPTION_KEY`` as den uses them
  (from the environment or from the files under ``DEN_HOME``), without which
  the restored secrets do not decrypt. Such a backup is as secret as the keys.

Restoring goes into an *empty* database of the same engine (den refuses a
database that has tables: it would mix two dens). Keys kept in files under
``DEN_HOME`` are written back there; keys given in the environment must
include the backup's (``--keys-out`` writes them to a file to copy from).
Afterwards every secret in the restored database is decrypted once with
the backup's keys, so a restore that would leave secrets unreadable fails
loudly, now, rather than at the first read.

PostgreSQL needs ``pg_dump`` and ``pg_restore`` (at least the server's major
version): on ``PATH``, in ``DEN_PG_BIN``, or under ``/usr/lib/postgresql``.
The connection's password reaches them in their environment (PGPASSWORD),
never on a command line.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connections

FORMAT = 1
MANIFEST = "manifest.json"
KEYS = "keys.env"
SQLITE_MEMBER = "database.sqlite3"
PG_MEMBER = "database.pgdump"


class BackupError(Exception):
    """What went wrong and what to do, in one sentence (shown as is)."""


@dataclass
class Restored:
    engine: str
    secrets_checked: int
    keys_written_to: Path | None
    backup_migrations: dict[str, str]


# -- helpers ----------------------------------------------------------------------


def _engine(alias: str = "default") -> str:
    vendor = connections[alias].vendor
    if vendor not in ("sqlite", "postgresql"):
        raise BackupError(f"den backs up SQLite and PostgreSQL databases, not {vendor}.")
    return vendor


def _pg_tool(name: str) -> str:
    """pg_dump or pg_restore: DEN_PG_BIN, PATH, or the newest under /usr/lib/postgresql."""
    folder = os.environ.get("DEN_PG_BIN")
    if folder:
        candidate = Path(folder) / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    installed = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
                       key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    if installed:
        return str(installed[-1])
    raise BackupError(f"{name} is not installed; install PostgreSQL's client programs "
                      "(Debian: postgresql-client) or set DEN_PG_BIN to their folder.")


def _pg_env(alias: str = "default") -> dict[str, str]:
    """libpq's variables for the database den uses (password included)."""
    db = connections[alias].settings_dict
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    for variable, key in (("PGHOST", "HOST"), ("PGPORT", "PORT"), ("PGUSER", "USER"),
                          ("PGPASSWORD", "PASSWORD"), ("PGDATABASE", "NAME")):
        if db.get(key):
            env[variable] = str(db[key])
    sslmode = (db.get("OPTIONS") or {}).get("sslmode")
    if sslmode:
        env["PGSSLMODE"] = str(sslmode)
    return env


def _run_pg(argv: list[str], alias: str = "default") -> None:
    result = subprocess.run(argv, env=_pg_env(alias), capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        tool = Path(argv[0]).name
        detail = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
        raise BackupError(f"{tool} failed ({detail}); check the database URL and that "
                          f"{tool} is at least the server's version.")


def _migrations() -> dict[str, str]:
    """Each app's latest applied migration (what the backup's schema is)."""
    from django.db.migrations.recorder import MigrationRecorder

    latest: dict[str, str] = {}
    for app, name in MigrationRecorder(connections["default"]).applied_migrations():
        if name > latest.get(app, ""):
            latest[app] = name
    return dict(sorted(latest.items()))


def _keys_text() -> str:
    return (f"DEN_SECRET_KEY={settings.SECRET_KEY}\n"
            f"DEN_ENCRYPTION_KEY={','.join(settings.DEN_ENCRYPTION_KEYS)}\n")


def _parse_keys(text: str) -> dict[str, str]:
    keys = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name in ("DEN_SECRET_KEY", "DEN_ENCRYPTION_KEY"):
            keys[name] = value
    return keys


def _private_file(path: Path) -> Any:
    """A new file only its owner may read, opened for writing bytes."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return os.fdopen(fd, "wb")


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    info.mtime = int(datetime.now(UTC).timestamp())
    archive.addfile(info, io.BytesIO(data))


# -- backup -----------------------------------------------------------------------


def backup_create(*, path: Path, with_keys: bool = True) -> dict[str, Any]:
    """Write a backup of den's database (and keys) to ``path``, which must
    not exist; answers the manifest."""
    from den import __version__

    path = Path(path)
    if path.exists():
        raise BackupError(f"{path} exists already; choose a new file for the backup.")
    engine = _engine()
    manifest = {
        "format": FORMAT,
        "den_version": __version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "database": engine,
        "migrations": _migrations(),
        "keys": with_keys,
    }
    work = Path(tempfile.mkdtemp(prefix="den-backup-"))
    partial = path.with_name(f".{path.name}.partial")
    try:
        if engine == "sqlite":
            member, dump = SQLITE_MEMBER, work / SQLITE_MEMBER
            source = sqlite3.connect(str(settings.DATABASES["default"]["NAME"]))
            target = sqlite3.connect(str(dump))
            try:
                with target:
                    source.backup(target)  # online: a consistent copy while den writes
            finally:
                target.close()
                source.close()
        else:
            member, dump = PG_MEMBER, work / PG_MEMBER
            _run_pg([_pg_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
                     f"--file={dump}"])
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        with _private_file(partial) as out, tarfile.open(fileobj=out, mode="w") as archive:
            _add(archive, MANIFEST, json.dumps(manifest, indent=1).encode())
            info = archive.gettarinfo(str(dump), arcname=member)
            info.mode = 0o600
            with open(dump, "rb") as handle:
                archive.addfile(info, handle)
            if with_keys:
                _add(archive, KEYS, _keys_text().encode())
        os.replace(partial, path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return manifest


# -- restore ----------------------------------------------------------------------


def _read(archive: tarfile.TarFile, name: str) -> bytes | None:
    try:
        member = archive.getmember(name)
    except KeyError:
        return None
    handle = archive.extractfile(member)
    return None if handle is None else handle.read()


def _sqlite_tables(path: Path) -> list[str]:
    if not path.exists() or path.stat().st_size == 0:
        return []
    conn = sqlite3.connect(str(path))
    try:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                            "AND name NOT LIKE 'sqlite_%'").fetchall()
    finally:
        conn.close()
    return [row[0] for row in rows]


def _pg_tables() -> list[str]:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT table_name FROM information_schema.tables "
                       "WHERE table_schema = current_schema()")
        return [row[0] for row in cursor.fetchall()]


def _check_env_keys(keys: dict[str, str]) -> None:
    """Keys given in the environment must include the backup's encryption
    keys (the secrets were encrypted under them)."""
    if not os.environ.get("DEN_ENCRYPTION_KEY"):
        return
    wanted = [k for k in keys.get("DEN_ENCRYPTION_KEY", "").split(",") if k]
    have = set(settings.DEN_ENCRYPTION_KEYS)
    if not set(wanted) <= have:
        raise BackupError("DEN_ENCRYPTION_KEY does not hold the keys this backup's secrets "
                          "were encrypted with; run den_restore with --keys-out FILE and set "
                          "DEN_ENCRYPTION_KEY (and DEN_SECRET_KEY) from that file.")


def _write_key_files(keys: dict[str, str]) -> None:
    """Put the backup's keys where a den without key variables reads them."""
    home = Path(settings.DEN_HOME)
    for variable, name in (("DEN_SECRET_KEY", "secret_key"),
                           ("DEN_ENCRYPTION_KEY", "encryption_key")):
        if os.environ.get(variable) or not keys.get(variable):
            continue
        path = home / name
        partial = home / f".{name}.restoring"
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        with _private_file(partial) as handle:
            value = keys[variable]
            # The file holds one key (den reads rotations from the environment);
            # more than one go to the environment instead.
            if variable == "DEN_ENCRYPTION_KEY" and "," in value:
                partial.unlink()
                raise BackupError("This backup holds several encryption keys; set "
                                  "DEN_ENCRYPTION_KEY to them (den_restore --keys-out FILE "
                                  "writes them out) and run den_restore again.")
            handle.write(value.encode())
        os.replace(partial, path)


def _check_secrets(keys: dict[str, str]) -> int:
    """Decrypt every restored secret with the backup's keys (or den's own,
    for a backup without keys); answers how many there were."""
    from cryptography.fernet import Fernet, InvalidToken, MultiFernet

    from registry.models import SecretValue

    names = [k for k in keys.get("DEN_ENCRYPTION_KEY", "").split(",") if k] \
        or list(settings.DEN_ENCRYPTION_KEYS)
    fernet = MultiFernet([Fernet(k) for k in names])
    count = 0
    for ciphertext in SecretValue.objects.values_list("ciphertext", flat=True).iterator():
        try:
            fernet.decrypt(ciphertext.encode())
        except InvalidToken:
            raise BackupError("A restored secret does not decrypt with the keys at hand; "
                              "restore with the keys that were in use when the backup was "
                              "made.") from None
        count += 1
    return count


def backup_restore(*, path: Path, keys_out: Path | None = None) -> Restored:
    """Restore the backup at ``path`` into den's (empty) database; see the
    module's doc for what happens to the keys."""
    path = Path(path)
    if not path.is_file():
        raise BackupError(f"There is no backup at {path}.")
    engine = _engine()
    if not tarfile.is_tarfile(path):
        raise BackupError(f"{path} is not a den backup (not a tar file).")
    with tarfile.open(path, mode="r") as archive:
        raw = _read(archive, MANIFEST)
        if raw is None:
            raise BackupError(f"{path} is not a den backup (it has no {MANIFEST}).")
        manifest = json.loads(raw)
        if manifest.get("format") != FORMAT:
            raise BackupError(f"This backup's format is {manifest.get('format')!r}; this den "
                              f"reads format {FORMAT}.")
        if manifest.get("database") != engine:
            raise BackupError(f"This is a backup of a {manifest.get('database')} database and "
                              f"den uses {engine}; restore it into a den on "
                              f"{manifest.get('database')}.")
        keys = _parse_keys((_read(archive, KEYS) or b"").decode())
        if keys_out is not None:
            if not keys:
                raise BackupError("This backup holds no keys to write out.")
            with _private_file(Path(keys_out)) as handle:
                handle.write(_read(archive, KEYS) or b"")
        else:
            _check_env_keys(keys)

        tables = (_sqlite_tables(Path(settings.DATABASES["default"]["NAME"]))
                  if engine == "sqlite" else _pg_tables())
        if tables:
            raise BackupError(f"den's database is not empty ({len(tables)} tables); restore "
                              "into a new, empty database.")
        connections.close_all()
        work = Path(tempfile.mkdtemp(prefix="den-restore-"))
        try:
            member = SQLITE_MEMBER if engine == "sqlite" else PG_MEMBER
            data = archive.extractfile(archive.getmember(member))
            if data is None:
                raise BackupError(f"{path} has no {member}.")
            dump = work / member
            with open(dump, "wb") as out:
                shutil.copyfileobj(data, out)
            if engine == "sqlite":
                source = sqlite3.connect(str(dump))
                target = sqlite3.connect(str(settings.DATABASES["default"]["NAME"]))
                try:
                    with target:
                        source.backup(target)
                finally:
                    target.close()
                    source.close()
            else:
                _run_pg([_pg_tool("pg_restore"), "--no-owner", "--no-privileges",
                         "--exit-on-error", "--single-transaction",
                         f"--dbname={connections['default'].settings_dict['NAME']}", str(dump)])
        finally:
            shutil.rmtree(work, ignore_errors=True)

    secrets_checked = _check_secrets(keys)
    if keys and keys_out is None:
        _write_key_files(keys)
    return Restored(engine=engine, secrets_checked=secrets_checked,
                    keys_written_to=Path(keys_out) if keys_out else None,
                    backup_migrations=dict(manifest.get("migrations") or {}))
