from __future__ import annotations

import os
import subprocess
import sys

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
