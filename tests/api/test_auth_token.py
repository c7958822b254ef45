from __future__ import annotations

from datetime import datetime, timedelta

from axes.models import AccessAttempt
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from knox.models import AuthToken
from knox.settings import CONSTANTS
from rest_framework.test import APIClient

from diagnosis.services.accounts import token_create, token_purge_expired
from diagnosis.tasks import purge_expired_tokens
from tests.api.conftest import assert_error
from tests.factories import ClinicianFactory, PatientFactory

URL = "/api/v1/auth/token/"
PASSWORD = "correct-horse-battery"
LOCKED = "Too many failed log-in attempts"


def obtain(user, password: str = PASSWORD, address: str = "127.0.0.1"):
    return APIClient(REMOTE_ADDR=address).post(URL, {"username": user.username, "password": password})


def token_client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def key(token: str) -> str:
    return token[: CONSTANTS.TOKEN_KEY_LENGTH]


def can_list_patients(token: str) -> bool:
    status = token_client(token).get("/api/v1/patients/").status_code
    assert status in (200, 401)
    return status == 200


def test_token_is_issued_with_its_expiry_and_authenticates(clinician):
    response = obtain(clinician)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"token", "expiry"}
    expiry = datetime.fromisoformat(body["expiry"])
    assert abs(expiry - (timezone.now() + timedelta(hours=10))) < timedelta(minutes=1)
    assert APIClient().get("/api/v1/patients/").status_code == 401
    assert can_list_patients(body["token"])


def test_token_lifetime_follows_the_setting(settings, clinician):
    settings.REST_KNOX = {**settings.REST_KNOX, "TOKEN_TTL": timedelta(hours=2)}
    expiry = datetime.fromisoformat(obtain(clinician).json()["expiry"])
    assert abs(expiry - (timezone.now() + timedelta(hours=2))) < timedelta(minutes=1)


def test_expired_token_is_401_in_the_error_shape(clinician):
    issued = token_create(user=clinician)
    assert can_list_patients(issued.token)
    AuthToken.objects.filter(user=clinician).update(expiry=timezone.now() - timedelta(seconds=1))
    assert_error(token_client(issued.token).get("/api/v1/patients/"), 401)
    assert not AuthToken.objects.filter(user=clinician).exists()


def test_a_request_reads_only_its_own_token_and_the_beat_purges_every_expired_one(
    clinician, other_clinician, django_assert_num_queries
):
    live = token_create(user=clinician)
    token_create(user=clinician)
    token_create(user=other_clinician)
    AuthToken.objects.exclude(token_key=key(live.token)).update(expiry=timezone.now() - timedelta(seconds=1))
    kept = token_create(user=other_clinician)
    client = token_client(live.token)
    client.get("/api/v1/models/")  # the request's group check and the like, once
    # The token with its user, the count and the page: the user's other tokens are not read.
    with django_assert_num_queries(3):
        assert client.get("/api/v1/models/").status_code == 200
    assert AuthToken.objects.count() == 4
    assert purge_expired_tokens.apply().successful()
    assert set(AuthToken.objects.values_list("token_key", flat=True)) == {key(live.token), key(kept.token)}
    assert can_list_patients(live.token) and can_list_patients(kept.token)
    assert token_purge_expired() == 0


def test_the_token_query_answers_group_membership_and_a_removal_counts_at_the_next_request(clinician):
    PatientFactory(created_by=clinician)
    client = token_client(token_create(user=clinician).token)
    # The token with its user and group membership in one query: none of its own for the group, which the
    # list's scope needs.
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/api/v1/patients/").json()["count"] == 1
    first, *others = (query["sql"] for query in queries.captured_queries)
    assert "knox_authtoken" in first and "auth_group" in first
    assert others and not any("auth_group" in sql for sql in others)
    clinician.groups.clear()
    assert client.get("/api/v1/patients/").json()["count"] == 0


def test_tokens_are_stored_hashed(clinician):
    issued = token_create(user=clinician)
    stored = AuthToken.objects.get(user=clinician)
    assert issued.token not in (stored.digest, stored.token_key)


def test_token_refuses_wrong_password_and_missing_fields(clinician):
    client = APIClient()
    assert_error(
        client.post(URL, {"username": clinician.username, "password": "nope"}), 400, "non_field_errors"
    )
    assert_error(client.post(URL, {}, format="json"), 400, "username", "password")
    assert_error(client.post(URL, [1, 2], format="json"), 400)
    assert_error(client.post(URL, "{not json", content_type="application/json"), 400)


def test_token_is_refused_to_an_inactive_user(clinician):
    clinician.is_active = False
    clinician.save()
    assert_error(obtain(clinician), 400, "non_field_errors")


def test_missing_or_bad_token_is_401_in_the_error_shape(db):
    assert_error(APIClient().get("/api/v1/cases/"), 401)
    for bad in ["not-a-token", "\xff\xfe", "a b"]:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {bad}")
        assert_error(client.get("/api/v1/cases/"), 401)


def test_session_authentication_works_and_enforces_csrf(clinician):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(clinician)
    assert client.get("/api/v1/patients/").status_code == 200
    assert_error(client.post("/api/v1/patients/", {"identifier": "X1"}, format="json"), 403)


# Revocation ----------------------------------------------------------------------------------------------


def test_logout_ends_only_the_token_used(clinician):
    used, other = token_create(user=clinician), token_create(user=clinician)
    response = token_client(used.token).post("/api/v1/auth/logout/")
    assert response.status_code == 204
    assert not can_list_patients(used.token)
    assert can_list_patients(other.token)
    assert_error(token_client(used.token).post("/api/v1/auth/logout/"), 401)


def test_logout_needs_a_token(clinician):
    assert_error(APIClient().post("/api/v1/auth/logout/"), 401)
    session = APIClient()
    session.force_login(clinician)
    assert_error(session.post("/api/v1/auth/logout/"), 401)


def test_logout_all_ends_every_token_of_the_user_only(clinician, other_clinician):
    first, second = token_create(user=clinician), token_create(user=clinician)
    others = token_create(user=other_clinician)
    assert token_client(first.token).post("/api/v1/auth/logout-all/").status_code == 204
    assert not can_list_patients(first.token) and not can_list_patients(second.token)
    assert can_list_patients(others.token)
    assert_error(APIClient().post("/api/v1/auth/logout-all/"), 401)


def test_password_change_ends_every_token(clinician):
    issued = token_create(user=clinician)
    clinician.set_password("lumbar-disc-9-review")
    clinician.save()
    assert not can_list_patients(issued.token)
    assert obtain(clinician, "lumbar-disc-9-review").status_code == 200


def test_deactivation_ends_every_token(clinician):
    issued = token_create(user=clinician)
    clinician.is_active = False
    clinician.save(update_fields=["is_active"])
    clinician.is_active = True
    clinician.save()
    assert not can_list_patients(issued.token)


def test_other_saves_keep_the_tokens(clinician):
    issued = token_create(user=clinician)
    clinician.email = "clinician@example.org"
    clinician.save()
    assert obtain(clinician).status_code == 200
    assert can_list_patients(issued.token)


# Lockout -------------------------------------------------------------------------------------------------


def test_account_is_locked_after_failures_from_any_mix_of_addresses(clinician):
    for number in range(4):
        assert_error(obtain(clinician, "wrong", address=f"10.0.0.{number}"), 400)
    body = assert_error(obtain(clinician, "wrong", address="10.0.0.4"), 429)
    assert LOCKED in body["message"]
    locked = obtain(clinician, address="10.9.9.9")
    assert LOCKED in assert_error(locked, 429)["message"]
    assert locked["Retry-After"] == "300"
    assert obtain(ClinicianFactory(), address="10.0.0.1").status_code == 200


def test_address_is_locked_after_failures_at_any_mix_of_accounts(clinician):
    for _ in range(5):
        obtain(ClinicianFactory(), "wrong", address="10.1.1.1")
    assert_error(obtain(clinician, address="10.1.1.1"), 429)
    assert obtain(clinician, address="10.2.2.2").status_code == 200


def test_lockout_ends_when_the_window_has_passed(clinician):
    for _ in range(5):
        obtain(clinician, "wrong")
    assert_error(obtain(clinician), 429)
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(seconds=301))
    assert obtain(clinician).status_code == 200


def test_attempts_while_locked_out_do_not_extend_the_lockout(clinician):
    for _ in range(5):
        obtain(clinician, "wrong")
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(seconds=200))
    assert_error(obtain(clinician, "still wrong"), 429)
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(seconds=101))
    assert obtain(clinician).status_code == 200


def test_failure_limit_follows_the_setting(settings, clinician):
    settings.AXES_FAILURE_LIMIT = 2
    assert_error(obtain(clinician, "wrong"), 400)
    assert_error(obtain(clinician, "wrong"), 429)


def test_behind_trusted_proxies_failures_count_against_the_forwarded_address(settings, clinician):
    settings.LUMBAR_TRUSTED_PROXIES = 1
    proxy = APIClient(REMOTE_ADDR="10.0.0.2")

    def through_proxy(user, password: str, forwarded: str):
        return proxy.post(
            URL, {"username": user.username, "password": password}, HTTP_X_FORWARDED_FOR=forwarded
        )

    for number in range(5):
        # What the client sends itself, left of what the proxy appended, changes nothing.
        through_proxy(ClinicianFactory(), "wrong", f"198.51.100.{number}, 203.0.113.7")
    assert_error(through_proxy(clinician, PASSWORD, "203.0.113.7"), 429)
    assert through_proxy(clinician, PASSWORD, "203.0.113.8").status_code == 200
    assert through_proxy(clinician, PASSWORD, "not-an-address").status_code == 200
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"203.0.113.7"}
