"""The registry through the API: registering a taken identifier, opening a case by identifier."""

from __future__ import annotations

import pytest

from diagnosis.models import AccessEvent, Case, Patient
from diagnosis.services.patients import IDENTIFIER_TAKEN
from tests.api.conftest import assert_error
from tests.factories import CaseFactory, PatientFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def others_patient(other_clinician):
    patient = PatientFactory(identifier="MRN-100234", name="Hidden Name", created_by=other_clinician)
    CaseFactory(owner=other_clinician, patient=patient)
    return patient


def test_registering_someone_elses_identifier_reveals_nothing_about_them(api, others_patient):
    response = api.post("/api/v1/patients/", {"identifier": " mrn-100234 "}, format="json")
    body = assert_error(response, 400, "identifier")
    assert body["errors"]["identifier"] == [IDENTIFIER_TAKEN]
    assert "Hidden Name" not in response.content.decode()
    assert str(others_patient.pk) not in str(body)
    assert Patient.objects.count() == 1


def test_open_a_case_by_identifier(api, clinician, others_patient):
    assert api.get("/api/v1/patients/", {"search": "100234"}).json()["results"] == []
    response = api.post(
        "/api/v1/cases/", {"patient_identifier": "mrn-100234", "clinical_question": "Disc?"}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["patient"]["identifier"], body["owner"]) == ("MRN-100234", clinician.username)
    assert [row["identifier"] for row in api.get("/api/v1/patients/").json()["results"]] == ["MRN-100234"]
    cases = api.get("/api/v1/cases/").json()["results"]
    assert [row["id"] for row in cases] == [body["id"]], "the other clinician's case stays hidden"
    assert AccessEvent.objects.filter(
        user=clinician, action="lookup_patient", patient=others_patient
    ).exists()


def test_open_a_case_by_an_unknown_identifier(api, clinician):
    response = api.post("/api/v1/cases/", {"patient_identifier": "MRN-404"}, format="json")
    assert_error(response, 400, "patient_identifier")
    assert not Case.objects.exists()
    assert AccessEvent.objects.get().detail == "open a case: MRN-404"


@pytest.mark.parametrize("payload", [{}, {"patient": 1, "patient_identifier": "MRN-1"}])
def test_open_a_case_needs_one_patient_reference(api, payload):
    assert_error(api.post("/api/v1/cases/", payload, format="json"), 400, "patient")


def test_opening_a_case_by_id_still_needs_a_patient_of_ones_own(api, others_patient):
    assert_error(api.post("/api/v1/cases/", {"patient": others_patient.pk}, format="json"), 400, "patient")
