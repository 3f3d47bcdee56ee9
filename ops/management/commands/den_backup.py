"""``manage.py den_backup FILE``: back up den's database and keys (ops/backup.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ops.backup import BackupError, backup_create


class Command(BaseCommand):
    help = ("Back up den's database (online: den may keep running) and its keys into one "
            "file, readable only by you.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("file", help="the backup to write (must not exist)")
        parser.add_argument("--without-keys", action="store_true",
                            help="leave DEN_SECRET_KEY and DEN_ENCRYPTION_KEY out (keep them "
                                 "safe elsewhere: the secrets do not decrypt without them)")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["file"]).expanduser()
        try:
            manifest = backup_create(path=path, with_keys=not options["without_keys"])
        except BackupError as exc:
            raise CommandError(str(exc)) from None
        keys = ("with den's keys: keep it as safe as they are" if manifest["keys"]
                else "without keys: keep DEN_SECRET_KEY and DEN_ENCRYPTION_KEY apart")
        self.stdout.write(f"Backed up den's {manifest['database']} database to {path} ({keys}).")
