from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from lumbar_platform.settings.base import env
from tests.conftest import REPO_ROOT


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    base_env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "ALLOWED_HOSTS", "DEBUG"}}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env={**base_env, "DJANGO_SETTINGS_MODULE": "lumbar_platform.settings.production", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_refuses_to_start_without_secret_key():
    result = manage("check", ALLOWED_HOSTS="lumbar.example.org")
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_production_refuses_to_start_with_a_blank_secret_key():
    result = manage("check", SECRET_KEY="  ", ALLOWED_HOSTS="lumbar.example.org")
    assert result.returncode != 0
    assert "Set the SECRET_KEY environment variable" in result.stderr


def test_production_refuses_to_start_without_allowed_hosts():
    result = manage("check", SECRET_KEY="x" * 60)
    assert result.returncode != 0
    assert "ALLOWED_HOSTS" in result.stderr


def test_production_deploy_check_has_no_errors_or_warnings():
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        SECRET_KEY="k3y-" + "x9" * 30,
        ALLOWED_HOSTS="lumbar.example.org",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_debug_is_off_even_if_asked():
    result = manage(
        "shell",
        "-c",
        "from django.conf import settings; print(settings.DEBUG)",
        SECRET_KEY="k" * 60,
        ALLOWED_HOSTS="h",
        DEBUG="1",
    )
    assert result.stdout.strip().splitlines()[-1] == "False"


def test_a_typo_in_debug_stops_the_start():
    result = manage("check", SECRET_KEY="k" * 60, ALLOWED_HOSTS="h", DEBUG="ture")
    assert result.returncode != 0
    assert "DEBUG='ture' is not a valid value" in result.stderr


@pytest.mark.parametrize("value", ["maybe", "ture", "2", "enabled"])
def test_env_bool_refuses_a_word_that_is_not_a_boolean(monkeypatch, value):
    monkeypatch.setenv("LUMBAR_TEST_FLAG", value)
    with pytest.raises(ImproperlyConfigured, match="LUMBAR_TEST_FLAG"):
        env.bool("LUMBAR_TEST_FLAG", default=True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("Yes", True), (" on ", True), ("false", False), ("0", False), ("off", False)],
)
def test_env_bool_reads_the_usual_words(monkeypatch, value, expected):
    monkeypatch.setenv("LUMBAR_TEST_FLAG", value)
    assert env.bool("LUMBAR_TEST_FLAG", default=not expected) is expected


def test_env_int_refuses_a_value_that_is_not_a_number(monkeypatch):
    monkeypatch.setenv("LUMBAR_TEST_NUMBER", "50MB")
    with pytest.raises(ImproperlyConfigured, match="LUMBAR_TEST_NUMBER='50MB'"):
        env.int("LUMBAR_TEST_NUMBER", default=1)


def test_a_blank_variable_gets_its_default(monkeypatch):
    monkeypatch.setenv("LUMBAR_TEST_NUMBER", " ")
    assert env.int("LUMBAR_TEST_NUMBER", default=7) == 7


def test_a_blank_required_variable_is_refused(monkeypatch):
    monkeypatch.setenv("LUMBAR_TEST_SECRET", "")
    with pytest.raises(ImproperlyConfigured, match="Set the LUMBAR_TEST_SECRET environment variable"):
        env.str("LUMBAR_TEST_SECRET")


def test_lists_are_comma_separated_and_trimmed(monkeypatch):
    monkeypatch.setenv("LUMBAR_TEST_HOSTS", "lumbar.example.org, 10.0.0.5")
    assert env.list("LUMBAR_TEST_HOSTS", cast=str.strip) == ["lumbar.example.org", "10.0.0.5"]


def test_cache_url_names_redis_or_a_file_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("LUMBAR_TEST_CACHE", "redis://127.0.0.1:6379/1")
    assert env.cache_url("LUMBAR_TEST_CACHE") == {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:6379/1",
    }
    monkeypatch.delenv("LUMBAR_TEST_CACHE")
    assert env.cache_url("LUMBAR_TEST_CACHE", default=f"filecache://{tmp_path}") == {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": str(tmp_path),
    }


@pytest.mark.django_db
def test_postgresql_connections_never_jit_compile():
    """The worklist's counts at hospital size spent longer in PostgreSQL's JIT compiler than in running."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("JIT is PostgreSQL's")
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone() == ("off",)
