"""POST/GET /api/v1/cases/{id}/referrals/ and DELETE /api/v1/cases/{id}/referrals/{referral_id}/."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from diagnosis.models import Referral, Review
from diagnosis.services.accounts import token_create
from tests.api.conftest import assert_error
from tests.factories import CaseFactory, ClinicianFactory

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_create(user=user).token}")
    return client


@pytest.fixture
def colleague():
    return ClinicianFactory()


def refer(api, case, colleague, note="Please look at L4-L5."):
    return api.post(
        f"/api/v1/cases/{case.pk}/referrals/", {"clinician": colleague.username, "note": note}, format="json"
    )


def test_referral_lets_the_colleague_see_and_give_an_opinion_until_withdrawn(api, prediction, colleague):
    case = prediction.scan.case
    response = refer(api, case, colleague)
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["clinician"], body["note"], body["is_active"], body["withdrawn_at"]) == (
        colleague.username,
        "Please look at L4-L5.",
        True,
        None,
    )
    other = client_for(colleague)
    assert other.get(f"/api/v1/cases/{case.pk}/").status_code == 200
    assert [row["id"] for row in other.get("/api/v1/cases/").json()["results"]] == [case.pk]
    assert other.get(f"/api/v1/scans/{prediction.scan_id}/file").status_code == 200
    opinion = other.post(
        f"/api/v1/predictions/{prediction.pk}/review/",
        {"levels": [{"level": "L4-L5", "grade": 2}], "comment": "Disc height preserved."},
        format="json",
    )
    assert opinion.status_code == 201
    assert (opinion.json()["kind"], opinion.json()["reviewer"]) == ("second_opinion", colleague.username)
    assert (opinion.json()["decision"], opinion.json()["final_label"]) == ("override", "normal")
    assert {"level": "L4-L5", "grade": 2, "model_grade": 3, "changed": True} in opinion.json()["levels"]
    api.post(f"/api/v1/predictions/{prediction.pk}/review/", {"decision": "agree"}, format="json")
    shown = api.get(f"/api/v1/predictions/{prediction.pk}/").json()
    assert (shown["review"]["decision"], shown["review"]["kind"]) == ("agree", "review")
    assert [(o["reviewer"], o["final_label"]) for o in shown["second_opinions"]] == [
        (colleague.username, "normal")
    ]

    withdrawn = api.delete(f"/api/v1/cases/{case.pk}/referrals/{body['id']}/")
    assert withdrawn.status_code == 200
    assert withdrawn.json()["is_active"] is False and withdrawn.json()["withdrawn_at"]
    assert_error(other.get(f"/api/v1/cases/{case.pk}/"), 404)
    assert_error(other.get(f"/api/v1/predictions/{prediction.pk}/"), 404)
    assert other.get("/api/v1/cases/").json()["results"] == []
    assert Review.objects.filter(kind=Review.Kind.SECOND_OPINION).count() == 1, "the opinion stays on record"
    assert_error(api.delete(f"/api/v1/cases/{case.pk}/referrals/{body['id']}/"), 400, "referral")


def test_the_referred_clinician_gets_403_for_what_only_the_owner_does(api, prediction, colleague):
    case = prediction.scan.case
    referral_id = refer(api, case, colleague).json()["id"]
    other = client_for(colleague)
    assert_error(other.patch(f"/api/v1/cases/{case.pk}/", {"notes": "mine"}, format="json"), 403)
    assert_error(other.post(f"/api/v1/predictions/{prediction.pk}/rerun/", {}, format="json"), 403)
    assert_error(refer(other, case, ClinicianFactory()), 403)
    assert_error(other.delete(f"/api/v1/cases/{case.pk}/referrals/{referral_id}/"), 403)
    assert Referral.objects.get().is_active


def test_the_referred_clinician_lists_only_their_own_referral(api, case, colleague):
    refer(api, case, colleague)
    refer(api, case, ClinicianFactory())
    assert len(api.get(f"/api/v1/cases/{case.pk}/referrals/").json()["results"]) == 2
    mine = client_for(colleague).get(f"/api/v1/cases/{case.pk}/referrals/").json()["results"]
    assert [row["clinician"] for row in mine] == [colleague.username]


@pytest.mark.parametrize(
    "payload, field",
    [
        ({}, "clinician"),
        ({"clinician": "no-such-user"}, "clinician"),
        ({"clinician": "OWNER"}, "clinician"),
        ({"clinician": "COLLEAGUE", "note": "x" * 2001}, "note"),
    ],
)
def test_referral_input_errors(api, case, clinician, colleague, payload, field):
    names = {"OWNER": clinician.username, "COLLEAGUE": colleague.username}
    payload = {key: names.get(value, value) for key, value in payload.items()}
    assert_error(api.post(f"/api/v1/cases/{case.pk}/referrals/", payload, format="json"), 400, field)
    assert not Referral.objects.exists()


def test_a_second_active_referral_to_the_same_colleague_is_refused(api, case, colleague):
    assert refer(api, case, colleague).status_code == 201
    assert_error(refer(api, case, colleague), 400, "clinician")


def test_referrals_of_another_case_are_404(api, case, colleague, other_clinician):
    others_case = CaseFactory(owner=other_clinician)
    others_case_referral = refer(client_for(other_clinician), others_case, colleague).json()
    assert_error(api.delete(f"/api/v1/cases/{case.pk}/referrals/{others_case_referral['id']}/"), 404)
    assert_error(api.delete(f"/api/v1/cases/{case.pk}/referrals/999999/"), 404)


def test_the_referred_clinician_reads_but_does_not_edit_the_patient(api, case, colleague):
    refer(api, case, colleague)
    other = client_for(colleague)
    assert other.get(f"/api/v1/patients/{case.patient_id}/").status_code == 200
    assert_error(other.patch(f"/api/v1/patients/{case.patient_id}/", {"name": "Changed"}, format="json"), 403)
    assert (
        api.patch(f"/api/v1/patients/{case.patient_id}/", {"name": "Changed"}, format="json").status_code
        == 200
    )
