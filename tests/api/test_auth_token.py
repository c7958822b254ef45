from __future__ import annotations

from rest_framework.test import APIClient

from tests.api.conftest import assert_error

URL = "/api/v1/auth/token/"


def test_token_is_issued_for_valid_credentials_and_authenticates(clinician):
    client = APIClient()
    response = client.post(URL, {"username": clinician.username, "password": "correct-horse-battery"})
    assert response.status_code == 200
    token = response.json()["token"]
    assert client.get("/api/v1/patients/").status_code == 401
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/patients/").status_code == 200


def test_token_refuses_wrong_password_and_missing_fields(clinician):
    client = APIClient()
    assert_error(
        client.post(URL, {"username": clinician.username, "password": "nope"}), 400, "non_field_errors"
    )
    assert_error(client.post(URL, {}, format="json"), 400, "username", "password")
    assert_error(client.post(URL, [1, 2], format="json"), 400)
    assert_error(client.post(URL, "{not json", content_type="application/json"), 400)


def test_token_endpoint_is_rate_limited_per_username_and_address(clinician):
    client = APIClient()
    for _ in range(5):
        assert client.post(URL, {"username": clinician.username, "password": "wrong"}).status_code == 400
    blocked = client.post(URL, {"username": clinician.username, "password": "correct-horse-battery"})
    body = assert_error(blocked, 429)
    assert "Too many failed log-in attempts" in body["message"]
    elsewhere = APIClient(REMOTE_ADDR="10.0.0.9")
    response = elsewhere.post(URL, {"username": clinician.username, "password": "correct-horse-battery"})
    assert response.status_code == 200


def test_missing_or_bad_token_is_401_in_the_error_shape(db):
    assert_error(APIClient().get("/api/v1/cases/"), 401)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    assert_error(client.get("/api/v1/cases/"), 401)


def test_session_authentication_works_and_enforces_csrf(clinician):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(clinician)
    assert client.get("/api/v1/patients/").status_code == 200
    assert_error(client.post("/api/v1/patients/", {"identifier": "X1"}, format="json"), 403)
