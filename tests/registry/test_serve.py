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
