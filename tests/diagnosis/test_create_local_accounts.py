"""`make run` calls create_local_accounts on every start, with DEBUG off: it must create the two accounts on a
local site, keep them across starts, and refuse on a site other hosts can reach."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command


def test_creates_the_local_accounts_once_with_debug_off(db, settings, tmp_path):
    settings.DEBUG = False
    settings.VAR_DIR = tmp_path
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]  # the default, without "testserver"
    first, second = StringIO(), StringIO()

    call_command("create_local_accounts", stdout=first)
    call_command("create_local_accounts", stdout=second)

    users = get_user_model().objects.order_by("username")
    assert [(u.username, u.is_superuser) for u in users] == [("admin", True), ("clinician", False)]
    password = (tmp_path / "local-accounts.txt").read_text().split()[1]
    assert users.get(username="clinician").check_password(password)
    assert password in first.getvalue() and password in second.getvalue()


def test_refuses_on_a_site_other_hosts_can_reach(db, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    settings.ALLOWED_HOSTS = ["127.0.0.1", "lumbar.example.org"]

    with pytest.raises(CommandError, match="local run"):
        call_command("create_local_accounts", stdout=StringIO())

    assert not get_user_model().objects.exists()
    assert not (tmp_path / "local-accounts.txt").exists()
