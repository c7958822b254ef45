from __future__ import annotations

import io

from django.core.management import call_command
from django.test import Client
from knox.models import AuthToken

from diagnosis.services.accounts import token_create
from tests.factories import ClinicianFactory

PASSWORD = "correct-horse-battery"


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


def login(client: Client, user, password: str = PASSWORD, address: str = "127.0.0.1"):
    return client.post(
        "/accounts/login/", {"username": user.username, "password": password}, REMOTE_ADDR=address
    )


def assert_locked_out(response) -> None:
    assert response.status_code == 429
    assert b"Too many failed log-in attempts. Wait 5 minutes and try again." in response.content
    assert b"<h1>Log-in locked</h1>" in response.content


def test_login_page_locks_the_account_after_failures_from_any_mix_of_addresses(client, clinician):
    for number in range(4):
        assert login(client, clinician, "wrong", address=f"10.0.0.{number}").status_code == 200
    assert_locked_out(login(client, clinician, "wrong", address="10.0.0.4"))
    assert_locked_out(login(Client(), clinician, address="10.9.9.9"))
    assert login(client, ClinicianFactory(), address="10.0.0.1").status_code == 302


def test_login_page_locks_the_address_after_failures_at_any_mix_of_accounts(client, clinician):
    for _ in range(5):
        login(client, ClinicianFactory(), "wrong", address="10.1.1.1")
    assert_locked_out(login(client, clinician, address="10.1.1.1"))
    assert login(Client(), clinician, address="10.2.2.2").status_code == 302


def test_admin_login_shares_the_lockout_and_its_page(client, staff):
    for _ in range(3):
        client.post("/admin/login/", {"username": staff.username, "password": "wrong"})
    for _ in range(2):
        client.post("/api/v1/auth/token/", {"username": staff.username, "password": "wrong"})
    assert_locked_out(client.post("/admin/login/", {"username": staff.username, "password": PASSWORD}))
    assert_locked_out(login(client, staff))


def test_axes_reset_lifts_a_lockout(client, clinician):
    for _ in range(5):
        login(client, clinician, "wrong")
    assert_locked_out(login(client, clinician))
    call_command("axes_reset", stdout=io.StringIO())
    assert login(client, clinician).status_code == 302


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


def test_password_change_page_ends_api_tokens_and_other_sessions(client, clinician):
    token_create(user=clinician)
    elsewhere = Client()
    elsewhere.force_login(clinician)
    client.force_login(clinician)
    new = {
        "old_password": PASSWORD,
        "new_password1": "lumbar-disc-9-review",
        "new_password2": "lumbar-disc-9-review",
    }
    assert client.post("/accounts/password/", new).status_code == 302
    assert not AuthToken.objects.filter(user=clinician).exists()
    assert client.get("/").status_code == 200
    assert elsewhere.get("/").status_code == 302


def test_logging_in_on_the_page_keeps_api_tokens(client, clinician):
    token_create(user=clinician)
    assert login(client, clinician).status_code == 302
    assert AuthToken.objects.filter(user=clinician).count() == 1


def test_deactivation_ends_web_sessions_for_good(client, clinician, other_clinician):
    client.force_login(clinician)
    other = Client()
    other.force_login(other_clinician)
    clinician.is_active = False
    clinician.save()
    clinician.is_active = True
    clinician.save()
    assert client.get("/")["Location"].startswith("/accounts/login/")
    assert other.get("/").status_code == 200
