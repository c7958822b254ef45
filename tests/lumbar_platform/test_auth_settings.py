"""The environment switches of token expiry and log-in throttling reach the libraries that enforce them."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO_ROOT

SHOW = (
    "from django.conf import settings; "
    "print(settings.REST_KNOX['TOKEN_TTL'], settings.AXES_FAILURE_LIMIT, settings.AXES_COOLOFF_TIME)"
)


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "lumbar_platform.settings.test", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_token_lifetime_and_login_limits_come_from_the_environment():
    defaults = manage("shell", "-c", SHOW)
    assert defaults.stdout.splitlines()[-1].split() == ["10:00:00", "5", "0:05:00"], defaults.stderr
    configured = manage(
        "shell",
        "-c",
        SHOW,
        LUMBAR_TOKEN_TTL_HOURS="2",
        LUMBAR_LOGIN_MAX_FAILURES="3",
        LUMBAR_LOGIN_WINDOW_SECONDS="90",
    )
    assert configured.stdout.splitlines()[-1].split() == ["2:00:00", "3", "0:01:30"], configured.stderr


def test_a_token_lifetime_below_one_hour_refuses_to_start():
    result = manage("check", LUMBAR_TOKEN_TTL_HOURS="0")
    assert result.returncode != 0
    assert "LUMBAR_TOKEN_TTL_HOURS must be at least 1, got 0" in result.stderr
