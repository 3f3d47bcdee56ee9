"""``manage.py serve``: one command for a working den on one machine.

It migrates the database, creates a first administrator when there is none
(printing how to sign in, once), collects static files, and serves the web
app with gunicorn (``den.webserver.DenWorker``: request heads are read by an
event loop, requests run on threads) next to a Celery worker with an
embedded beat scheduler. With no environment set, that is SQLite and kombu's
filesystem broker under ``DEN_HOME``: nothing else to install or start.

Every database connection the command opened is closed before it forks
gunicorn's workers or starts Celery: a connection inherited across a fork
is one socket shared by several processes, whose queries and answers then
interleave (one user's request can read another's rows).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from den.gunicorn_conf import close_connections
from den.node.hardening import set_non_dumpable
from registry.models.users import validate_username

#: The first administrator's default name. ``admin`` itself is reserved (it
#: is a top-level route: that user's pages would be Django's admin).
DEFAULT_ADMIN_USERNAME = "den-admin"
#: Where serve leaves the URL it serves at, for ``manage.py invite``.
SERVED_URL_FILE = "served-url"


class Command(BaseCommand):
    help = "Migrate, create a first admin if needed, and serve den (web + Celery worker + beat)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--bind", default=os.environ.get("DEN_BIND", "127.0.0.1:8000"))
        parser.add_argument("--workers", type=int, default=int(os.environ.get("DEN_WEB_WORKERS", "2")),
                            help="web processes (default 2)")
        parser.add_argument("--threads", type=int, default=int(os.environ.get("DEN_WEB_THREADS", "4")),
                            help="request threads per web process (default 4)")
        parser.add_argument(
            "--stream-threads", type=int,
            default=int(os.environ.get("DEN_WEB_STREAM_THREADS", "16")),
            help="threads per web process for open event streams (default 16)")
        parser.add_argument("--no-worker", action="store_true", help="Do not start a Celery worker.")
        parser.add_argument(
            "--admin-username",
            default=os.environ.get("DEN_ADMIN_USERNAME", DEFAULT_ADMIN_USERNAME),
            help=f"the first administrator's username (default {DEFAULT_ADMIN_USERNAME})")

    def handle(self, *args: Any, **options: Any) -> None:
        # First of all, before any secret is read: code on a local cluster runs
        # as den's user when den is not root, and must not read this process
        # (or the gunicorn workers it forks, which inherit the flag).
        set_non_dumpable()
        username = _valid_admin_username(options["admin_username"])
        for name in ("workers", "threads", "stream_threads"):
            if options[name] < 1:
                raise CommandError(f"--{name.replace('_', '-')} must be at least 1.")
        self._derive_public_url(options["bind"])
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        self._ensure_admin(username, options["bind"])
        write_served_url(settings.DEN_PUBLIC_URL)
        close_connections()  # before Celery starts and gunicorn forks
        worker = None if options["no_worker"] else self._start_worker()
        try:
            self._serve(options["bind"], options["workers"], options["threads"],
                        options["stream_threads"])
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
        if users.objects.filter(username__iexact=username).exists():
            raise CommandError(
                f"A user named '{username}' exists and is not an administrator; choose "
                "another name for the first administrator with --admin-username or "
                "DEN_ADMIN_USERNAME.")
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

    def _serve(self, bind: str, workers: int, threads: int, stream_threads: int) -> None:
        from django.core.wsgi import get_wsgi_application
        from gunicorn.app.base import BaseApplication

        from den import gunicorn_conf
        from den.webserver import DenWorker

        application = get_wsgi_application()
        worker_class = type("DenWorker", (DenWorker,), {"stream_threads": stream_threads})

        class Server(BaseApplication):  # type: ignore[misc]
            def load_config(self) -> None:
                # den's gunicorn settings and hooks, as production's
                # `gunicorn -c python:den.gunicorn_conf` has them ...
                for name in gunicorn_conf.SETTINGS:
                    value = getattr(gunicorn_conf, name, None)
                    if value is not None:
                        self.cfg.set(name, value)
                # ... with serve's own bind, processes and threads.
                self.cfg.set("bind", bind)
                self.cfg.set("workers", workers)
                self.cfg.set("threads", threads)
                self.cfg.set("worker_class", worker_class)

            def load(self) -> Any:
                return application

        self.stdout.write(f"den is serving on http://{bind} (Ctrl-C stops it)")
        self.stdout.flush()
        Server().run()


def _valid_admin_username(username: str) -> str:
    try:
        validate_username(username)
    except ValidationError as exc:
        raise CommandError(
            f"{exc.messages[0]} (the first administrator's name: pass --admin-username "
            "or set DEN_ADMIN_USERNAME)") from None
    return username


def served_url_path() -> Path:
    return Path(settings.DEN_HOME) / SERVED_URL_FILE


def write_served_url(url: str) -> None:
    """Leave the URL den serves at under DEN_HOME (mode 0600), so that
    ``manage.py invite`` run beside ``serve --bind HOST:PORT`` prints links
    that reach it."""
    path = served_url_path()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(url + "\n")


def read_served_url() -> str | None:
    """The URL the last ``serve`` under this DEN_HOME served at, if any."""
    try:
        url = served_url_path().read_text().strip()
    except OSError:
        return None
    return url.rstrip("/") if url.startswith(("http://", "https://")) else None


def _broker_name() -> str:
    url = settings.CELERY_BROKER_URL
    return "filesystem, under DEN_HOME" if url.startswith("filesystem") else url.split("@")[-1]
