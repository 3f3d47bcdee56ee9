"""``manage.py serve``'s first administrator: created once, and its password
never written to a log."""

from __future__ import annotations

import io
import os
import stat

import pytest
from django.contrib.auth import authenticate

from registry.management.commands.serve import Command

pytestmark = pytest.mark.django_db


def test_first_admin_password_goes_to_a_private_file_not_the_log(settings, tmp_path):
    settings.DEN_HOME = tmp_path
    out = io.StringIO()
    command = Command(stdout=out)
    command._ensure_admin("admin", "127.0.0.1:8000")
    path = tmp_path / "initial-admin-password"
    password = path.read_text().strip()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert password not in out.getvalue()
    assert str(path) in out.getvalue()
    assert authenticate(username="admin", password=password) is not None
    command._ensure_admin("admin", "127.0.0.1:8000")  # once only
    assert path.read_text().strip() == password


def test_the_first_admin_is_not_called_by_a_reserved_name(settings, tmp_path):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    from registry.management.commands.serve import DEFAULT_ADMIN_USERNAME
    from registry.models.users import validate_username

    validate_username(DEFAULT_ADMIN_USERNAME)  # not reserved, a valid address segment
    settings.DEN_HOME = tmp_path
    for name in ("admin", "API", "not a name"):
        with pytest.raises(CommandError) as refused:
            call_command("serve", "--admin-username", name, "--no-worker")
        assert "--admin-username" in str(refused.value) and "DEN_ADMIN_USERNAME" in str(refused.value)
    assert "reserved" in str(pytest.raises(CommandError, call_command, "serve",
                                           "--admin-username", "admin").value)


def test_invite_uses_the_url_serve_served_at(settings, tmp_path, monkeypatch):
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from registry.management.commands.serve import served_url_path, write_served_url

    settings.DEN_HOME = tmp_path
    monkeypatch.delenv("DEN_PUBLIC_URL", raising=False)
    get_user_model().objects.create_superuser("den-admin", "a@example.com", "pw-123-long-x")
    write_served_url("http://10.1.2.3:9000")
    assert stat.S_IMODE(os.stat(served_url_path()).st_mode) == 0o600
    out = io.StringIO()
    call_command("invite", "bob@example.com", stdout=out)
    assert "http://10.1.2.3:9000/invite/den_" in out.getvalue()
    # DEN_PUBLIC_URL, when set, still wins.
    monkeypatch.setenv("DEN_PUBLIC_URL", "https://den.example.com")
    settings.DEN_PUBLIC_URL = "https://den.example.com"
    out = io.StringIO()
    call_command("invite", "carol@example.com", stdout=out)
    assert "https://den.example.com/invite/den_" in out.getvalue()


def test_serve_starts_celery_and_forks_with_no_connection_open(transactional_db, settings,
                                                              tmp_path, monkeypatch):
    """What serve's own process opened (migrate, the first admin) is closed
    before Celery starts and gunicorn forks, so no child shares it."""
    from django.core.management import call_command
    from django.db import connections

    settings.DEN_HOME = tmp_path
    open_at: dict[str, list[str]] = {}

    def opened() -> list[str]:
        return [c.alias for c in connections.all() if c.connection is not None]

    def start_worker(self):
        open_at["celery"] = opened()

    def serve(self, *args):
        open_at["fork"] = opened()

    monkeypatch.setattr(Command, "_start_worker", start_worker)
    monkeypatch.setattr(Command, "_serve", serve)
    call_command("serve", stdout=io.StringIO())
    assert open_at == {"celery": [], "fork": []}
