"""Response headers: a Content-Security-Policy without inline script or style on every response, and no
caching of anything that may carry patient data, while static files keep theirs."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from django.test import Client

from tests.conftest import REPO_ROOT
from tests.factories import CaseFactory, ScanFactory, done_prediction


def _csp(response) -> dict[str, list[str]]:
    directives = {}
    for directive in response["Content-Security-Policy"].split(";"):
        name, *sources = directive.split()
        directives[name] = sources
    return directives


@pytest.fixture
def logged_in(clinician) -> Client:
    client = Client()
    client.force_login(clinician)
    return client


@pytest.fixture
def prediction(clinician):
    return done_prediction(clinician)


def _patient_data_urls(prediction) -> list[str]:
    scan, case = prediction.scan, prediction.scan.case
    return [
        "/",
        "/patients/",
        f"/patients/{case.patient_id}/",
        f"/cases/{case.pk}/",
        f"/cases/{case.pk}/status.json",
        f"/scans/{scan.pk}/file",
        f"/scans/{scan.pk}/preview",
        f"/predictions/{prediction.pk}/heatmap",
        "/models/",
        "/api/v1/patients/",
        f"/api/v1/cases/{case.pk}/",
        f"/api/v1/cases/{case.pk}/scans/",
        f"/api/v1/scans/{scan.pk}/",
        f"/api/v1/scans/{scan.pk}/file",
        "/api/v1/predictions/",
        f"/api/v1/predictions/{prediction.pk}/",
        f"/api/v1/predictions/{prediction.pk}/heatmap",
    ]


def test_every_patient_data_response_is_not_stored_and_has_the_policy(logged_in, prediction):
    for url in _patient_data_urls(prediction):
        response = logged_in.get(url)
        assert response.status_code == 200, url
        cache_control = {part.strip() for part in response["Cache-Control"].split(",")}
        assert {"private", "no-store"} <= cache_control, (url, cache_control)
        assert _csp(response)["default-src"] == ["'self'"], url


@pytest.mark.parametrize(
    "url",
    ["/accounts/login/", "/no-such-page/", "/api/v1/patients/", "/static/css/app.css", "/static/js/case.js"],
)
def test_content_security_policy_forbids_inline_code_and_framing(client, db, url):
    directives = _csp(client.get(url))

    assert directives["default-src"] == ["'self'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["object-src"] == ["'none'"]
    for name, sources in directives.items():
        assert "'unsafe-inline'" not in sources and "'unsafe-eval'" not in sources, name
    assert "script-src" not in directives and "style-src" not in directives  # default-src 'self' applies


def test_static_files_are_served_without_debug_and_keep_their_caching(client, settings):
    assert settings.DEBUG is False

    response = client.get("/static/css/app.css")

    assert response.status_code == 200
    assert b"--accent" in b"".join(response.streaming_content)
    assert "no-store" not in response.get("Cache-Control", "")
    assert "max-age" in response["Cache-Control"]


def test_not_found_page_lists_no_url_patterns(client, db):
    response = client.get("/no-such-page/")

    assert response.status_code == 404
    html = response.content.decode()
    assert "<h1>Not found</h1>" in html
    assert "URLconf" not in html and "api/v1/" not in html


def test_scan_download_is_named_after_the_upload_with_the_stored_extension(logged_in, clinician):
    scan = ScanFactory(case=CaseFactory(owner=clinician), original_name="lumbar T2.jpg")

    response = logged_in.get(f"/scans/{scan.pk}/file")

    assert response["Content-Type"] == "image/png"
    assert 'filename="lumbar T2.png"' in response["Content-Disposition"]


RUN_SETTINGS_PROBE = """
from django.conf import settings
from django.test import Client
client = Client(HTTP_HOST="localhost")
missing = client.get("/no-such-page/")
static = client.get("/static/css/app.css")
print(settings.DEBUG, missing.status_code, b"URLconf" in missing.content, static.status_code)
"""


@pytest.mark.parametrize(
    ("debug", "expected"),
    [(None, "False 404 False 200"), ("true", "True 404 True 200")],
    ids=["unset", "true"],
)
def test_make_run_settings_have_debug_off_unless_asked(tmp_path, debug, expected):
    env = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "DJANGO_SETTINGS_MODULE"}}
    env.update(DJANGO_SETTINGS_MODULE="lumbar_platform.settings.base", LUMBAR_VAR_DIR=str(tmp_path))
    if debug is not None:
        env["DEBUG"] = debug

    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", RUN_SETTINGS_PROBE],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == expected


INLINE_CODE = re.compile(r"<script(?![^>]*\ssrc=)[^>]*>|<style[\s>]|\sstyle=|\son[a-z]+=", re.IGNORECASE)


def test_templates_carry_no_inline_script_style_or_event_handler():
    """The policy would block them in the browser; this names the template instead."""
    offenders = [
        f"{path.relative_to(REPO_ROOT)}: {match.group()}"
        for path in (REPO_ROOT / "templates").rglob("*.html")
        for match in INLINE_CODE.finditer(
            re.sub(r"{% comment %}.*?{% endcomment %}", "", path.read_text(), flags=re.S)
        )
    ]
    assert offenders == []


def test_pages_name_their_icon_and_favicon_ico_leads_to_it(client, logged_in):
    login_page = client.get("/accounts/login/").content.decode()
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in login_page
    assert 'rel="icon"' in logged_in.get("/").content.decode()
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"] == "/static/favicon.svg"
    assert (REPO_ROOT / "static" / "favicon.svg").read_text().startswith("<svg")
