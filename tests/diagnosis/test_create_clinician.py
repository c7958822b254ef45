from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from diagnosis.selectors import user_is_clinician

pytestmark = pytest.mark.django_db


def test_create_clinician_noinput_reads_password_from_environment(monkeypatch):
    monkeypatch.setenv("LUMBAR_CLINICIAN_PASSWORD", "a-long-Secret-42")
    call_command("create_clinician", "drhouse", "--email", "h@example.org", "--noinput")
    user = get_user_model().objects.get(username="drhouse")
    assert user.check_password("a-long-Secret-42")
    assert user.email == "h@example.org"
    assert user_is_clinician(user)


def test_create_clinician_noinput_without_password_fails(monkeypatch):
    monkeypatch.delenv("LUMBAR_CLINICIAN_PASSWORD", raising=False)
    with pytest.raises(CommandError, match="LUMBAR_CLINICIAN_PASSWORD"):
        call_command("create_clinician", "drhouse", "--noinput")


def test_create_clinician_refuses_weak_password_and_duplicates(monkeypatch):
    monkeypatch.setenv("LUMBAR_CLINICIAN_PASSWORD", "123")
    with pytest.raises(CommandError, match="password"):
        call_command("create_clinician", "drhouse", "--noinput")
    monkeypatch.setenv("LUMBAR_CLINICIAN_PASSWORD", "a-long-Secret-42")
    call_command("create_clinician", "drhouse", "--noinput")
    with pytest.raises(CommandError, match="taken"):
        call_command("create_clinician", "drhouse", "--noinput")
