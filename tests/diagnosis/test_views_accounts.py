from __future__ import annotations

import pytest
from django.test import Client

from tests.factories import ClinicianFactory

PASSWORD = "correct-horse-battery"


@pytest.fixture(autouse=True)
def isolated_cache(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


def test_login_page_logs_in_and_redirects_to_the_worklist(client, clinician):
    page = client.get("/accounts/login/")
    assert page.status_code == 200 and b'name="csrfmiddlewaretoken"' in page.content
    response = client.post("/accounts/login/", {"username": clinician.username, "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200


def test_login_page_shows_an_error_for_a_wrong_password(client, clinician):
    response = client.post("/accounts/login/", {"username": clinician.username, "password": "wrong"})
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content


def test_login_page_is_rate_limited_per_username_and_address(client, clinician):
    for _ in range(5):
        client.post("/accounts/login/", {"username": clinician.username, "password": "wrong"})
    blocked = client.post("/accounts/login/", {"username": clinician.username, "password": PASSWORD})
    assert blocked.status_code == 429
    assert b"Too many failed log-in attempts" in blocked.content
    other_address = Client(REMOTE_ADDR="10.1.2.3")
    ok = other_address.post("/accounts/login/", {"username": clinician.username, "password": PASSWORD})
    assert ok.status_code == 302
    other_user = ClinicianFactory()
    assert (
        client.post("/accounts/login/", {"username": other_user.username, "password": PASSWORD}).status_code
        == 302
    )


def test_admin_login_shares_the_rate_limit(client, staff):
    for _ in range(5):
        client.post("/admin/login/", {"username": staff.username, "password": "wrong"})
    blocked = client.post("/admin/login/", {"username": staff.username, "password": PASSWORD})
    assert blocked.status_code == 200 and b"Too many failed log-in attempts" in blocked.content


def test_login_page_enforces_csrf(clinician):
    client = Client(enforce_csrf_checks=True)
    response = client.post("/accounts/login/", {"username": clinician.username, "password": PASSWORD})
    assert response.status_code == 403


def test_logout_ends_the_session(client, clinician):
    client.force_login(clinician)
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/")["Location"].startswith("/accounts/login/")


def test_password_change_validates_the_new_password(client, clinician):
    client.force_login(clinician)
    weak = {"old_password": PASSWORD, "new_password1": "12345", "new_password2": "12345"}
    response = client.post("/accounts/password/", weak)
    assert response.status_code == 200
    assert b"This password is too short" in response.content and b"entirely numeric" in response.content
    strong = {
        "old_password": PASSWORD,
        "new_password1": "lumbar-disc-9-review",
        "new_password2": "lumbar-disc-9-review",
    }
    assert client.post("/accounts/password/", strong)["Location"] == "/accounts/password/done/"
    clinician.refresh_from_db()
    assert clinician.check_password("lumbar-disc-9-review")


def test_pages_require_login(client):
    for url in ["/", "/patients/", "/models/", "/api/docs/"]:
        response = client.get(url)
        assert response.status_code in (302, 401, 403)
        if response.status_code == 302:
            assert response["Location"].startswith("/accounts/login/")
