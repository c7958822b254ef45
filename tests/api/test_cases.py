from __future__ import annotations

from diagnosis.models import Case
from tests.api.conftest import assert_error
from tests.factories import CaseFactory, PatientFactory


def test_cases_create_needs_only_a_patient_and_returns_its_id(api, clinician):
    patient = PatientFactory(created_by=clinician)
    response = api.post("/api/v1/cases/", {"patient": patient.pk}, format="json")
    assert response.status_code == 201
    case = Case.objects.get(pk=response.json()["id"])
    assert case.owner == clinician and case.status == "open"
    assert response.json()["patient"] == {"id": patient.pk, "identifier": patient.identifier}


def test_cases_create_validation_errors(api, other_clinician):
    assert_error(api.post("/api/v1/cases/", {}, format="json"), 400, "patient")
    assert_error(api.post("/api/v1/cases/", {"patient": "abc"}, format="json"), 400, "patient")
    assert_error(api.post("/api/v1/cases/", {"patient": 10**30}, format="json"), 400, "patient")
    foreign = PatientFactory(created_by=other_clinician)
    assert_error(api.post("/api/v1/cases/", {"patient": foreign.pk}, format="json"), 400, "patient")
    assert not Case.objects.exists()


def test_cases_list_filters_by_status_patient_and_date(api, clinician):
    first = CaseFactory(owner=clinician)
    CaseFactory(owner=clinician, status="signed_off")
    CaseFactory()
    assert api.get("/api/v1/cases/").json()["count"] == 2
    assert [c["id"] for c in api.get("/api/v1/cases/", {"status": "open"}).json()["results"]] == [first.pk]
    assert api.get("/api/v1/cases/", {"patient": first.patient_id}).json()["count"] == 1
    assert (
        api.get("/api/v1/cases/", {"created_after": "2000-01-01", "ordering": "status"}).json()["count"] == 2
    )
    assert_error(api.get("/api/v1/cases/", {"status": "lost"}), 400, "status")
    assert_error(api.get("/api/v1/cases/", {"patient": "-1"}), 400, "patient")
    assert_error(api.get("/api/v1/cases/", {"patient": "1.5"}), 400, "patient")
    assert_error(api.get("/api/v1/cases/", {"patient": str(2**63)}), 400, "patient")


def test_case_detail_updates_notes_and_takes_its_status_back_unchanged(api, case):
    response = api.patch(f"/api/v1/cases/{case.pk}/", {"status": "open", "notes": "Seen."}, format="json")
    assert response.status_code == 200
    case.refresh_from_db()
    assert (case.status, case.notes) == ("open", "Seen.")
    assert_error(api.patch(f"/api/v1/cases/{case.pk}/", {"status": "gone"}, format="json"), 400, "status")
    closing = assert_error(
        api.patch(f"/api/v1/cases/{case.pk}/", {"status": "signed_off"}, format="json"), 400
    )
    assert f"/api/v1/cases/{case.pk}/sign-off/" in closing["errors"]["status"][0]
    assert api.get(f"/api/v1/cases/{case.pk}/").json()["notes"] == "Seen."
