"""``manage.py den_restore FILE``: restore a den backup into an empty database
(ops/backup.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ops.backup import BackupError, backup_restore


class Command(BaseCommand):
    help = ("Restore a backup made by den_backup into den's database, which must be empty; "
            "stop den's web and worker processes first.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("file", help="the backup to restore")
        parser.add_argument("--keys-out", metavar="FILE",
                            help="write the backup's keys to FILE (mode 0600), to set "
                                 "DEN_SECRET_KEY and DEN_ENCRYPTION_KEY from, instead of into "
                                 "DEN_HOME")

    def handle(self, *args: Any, **options: Any) -> None:
        keys_out = Path(options["keys_out"]).expanduser() if options["keys_out"] else None
        try:
            restored = backup_restore(path=Path(options["file"]).expanduser(), keys_out=keys_out)
        except BackupError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Restored den's {restored.engine} database; "
                          f"{restored.secrets_checked} secrets decrypt with the backup's keys.")
        if restored.keys_written_to is not None:
            self.stdout.write(f"The keys are in {restored.keys_written_to}: set DEN_SECRET_KEY "
                              "and DEN_ENCRYPTION_KEY from it before starting den.")
        self.stdout.write("If this den is newer than the backup, run `manage.py migrate` "
                          "before starting it.")
