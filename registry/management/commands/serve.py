"""``manage.py serve``: one command for a working den on one machine.

It migrates the database, creates a first administrator when there is none
(printing how to sign in, once), collects static files, and serves the web
app with gunicorn's sync workers next to a Celery worker with an embedded
beat scheduler. With no environment set, that is SQLite and kombu's
filesystem broker under ``DEN_HOME``: nothing else to install or start.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Migrate, create a first admin if needed, and serve den (web + Celery worker + beat)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--bind", default=os.environ.get("DEN_BIND", "127.0.0.1:8000"))
        parser.add_argument("--workers", type=int, default=int(os.environ.get("DEN_WEB_WORKERS", "2")))
        parser.add_argument("--no-worker", action="store_true", help="Do not start a Celery worker.")
        parser.add_argument("--admin-username", default=os.environ.get("DEN_ADMIN_USERNAME", "admin"))

    def handle(self, *args: Any, **options: Any) -> None:
        self._derive_public_url(options["bind"])
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        self._ensure_admin(options["admin_username"], options["bind"])
        worker = None if options["no_worker"] else self._start_worker()
        try:
            self._serve(options["bind"], options["workers"])
        finally:
            if worker is not None and worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                try:
                    worker.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    worker.kill()

    def _derive_public_url(self, bind: str) -> None:
        """Without DEN_PUBLIC_URL, den is where it listens: resource URLs,
        invitation links and the address daemons call back on follow --bind."""
        if os.environ.get("DEN_PUBLIC_URL"):
            return
        host, _, port = bind.rpartition(":")
        if host in ("0.0.0.0", "", "[::]"):  # a wildcard is not an address to call back on
            host = "127.0.0.1"
        url = f"http://{host}:{port}"
        os.environ["DEN_PUBLIC_URL"] = url  # for the Celery worker started below
        settings.DEN_PUBLIC_URL = url

    def _ensure_admin(self, username: str, bind: str) -> None:
        """Create the first administrator with a random password. The password
        goes to the terminal when there is one; otherwise (output captured by a
        service manager, i.e. a log) into a 0600 file under DEN_HOME, because
        no secret belongs in a log line."""
        users = get_user_model()
        if users.objects.filter(is_superuser=True).exists():
            return
        password = secrets.token_urlsafe(12)
        email = os.environ.get("DEN_ADMIN_EMAIL", "")
        users.objects.create_superuser(username=username, email=email, password=password)
        url = settings.DEN_PUBLIC_URL
        if sys.stdout.isatty():
            where = f"  username: {username}\n  password: {password}\n"
        else:
            path = settings.DEN_HOME / "initial-admin-password"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(password + "\n")
            where = (f"  username: {username}\n  password: in {path} (readable only by you; "
                     "delete it once you have signed in)\n")
        self.stdout.write(
            self.style.SUCCESS("\nCreated the first administrator (change the password after "
                               "signing in):\n")
            + where + "\n"
            f"Sign in at {url}/login (admin pages at {url}/admin/), or from a shell:\n"
            f"  den login --url {url} --username {username}\n"
        )
        self.stdout.flush()  # before gunicorn forks, or a redirected log never shows it

    def _start_worker(self) -> subprocess.Popen:
        command = [sys.executable, "-m", "celery", "-A", "den", "worker", "--beat",
                   "--loglevel", os.environ.get("DEN_LOG_LEVEL", "INFO").lower(),
                   "--concurrency", os.environ.get("DEN_WORKER_CONCURRENCY", "2"),
                   "--schedule", str(settings.DEN_HOME / "celerybeat-schedule")]
        self.stdout.write(f"Starting a Celery worker and beat (broker: {_broker_name()})")
        self.stdout.flush()
        return subprocess.Popen(command)

    def _serve(self, bind: str, workers: int) -> None:
        from gunicorn.app.base import BaseApplication

        from den.wsgi import application

        class Server(BaseApplication):  # type: ignore[misc]
            def load_config(self) -> None:
                self.cfg.set("bind", bind)
                self.cfg.set("workers", workers)
                self.cfg.set("worker_class", "sync")
                self.cfg.set("timeout", 60)
                self.cfg.set("accesslog", os.environ.get("DEN_ACCESS_LOG") or None)

            def load(self) -> Any:
                return application

        self.stdout.write(f"den is serving on http://{bind} (Ctrl-C stops it)")
        self.stdout.flush()
        Server().run()


def _broker_name() -> str:
    url = settings.CELERY_BROKER_URL
    return "filesystem, under DEN_HOME" if url.startswith("filesystem") else url.split("@")[-1]
