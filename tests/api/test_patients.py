from __future__ import annotations

from diagnosis.models import Patient
from tests.api.conftest import assert_error
from tests.factories import CaseFactory, PatientFactory, ScanFactory


def test_patients_create_needs_only_an_identifier_and_returns_its_id(api, clinician):
    response = api.post("/api/v1/patients/", {"identifier": "P-100"}, format="json")
    assert response.status_code == 201
    patient = Patient.objects.get(pk=response.json()["id"])
    assert patient.identifier == "P-100" and patient.created_by == clinician


def test_patients_create_validation_errors_name_the_field(api):
    PatientFactory(identifier="TAKEN")
    assert_error(api.post("/api/v1/patients/", {}, format="json"), 400, "identifier")
    assert_error(api.post("/api/v1/patients/", {"identifier": "TAKEN"}, format="json"), 400, "identifier")
    bad = {"identifier": "P-1", "birth_date": "2999-01-01", "sex": "X"}
    assert_error(api.post("/api/v1/patients/", bad, format="json"), 400, "sex")
    future = {"identifier": "P-1", "birth_date": "2999-01-01"}
    assert_error(api.post("/api/v1/patients/", future, format="json"), 400, "birth_date")
    assert_error(api.post("/api/v1/patients/", {"identifier": "a\x00b"}, format="json"), 400, "identifier")
    assert not Patient.objects.filter(identifier="P-1").exists()


def test_patients_list_searches_filters_orders_and_paginates(api, clinician):
    for identifier in ["B-2", "A-1", "C-3"]:
        PatientFactory(identifier=identifier, created_by=clinician)
    PatientFactory(identifier="A-other")
    body = api.get("/api/v1/patients/", {"ordering": "-identifier", "page_size": 2}).json()
    assert body["count"] == 3 and [p["identifier"] for p in body["results"]] == ["C-3", "B-2"]
    assert body["next"]
    assert [p["identifier"] for p in api.get("/api/v1/patients/", {"search": "a-"}).json()["results"]] == [
        "A-1"
    ]
    assert api.get("/api/v1/patients/", {"created_after": "2999-01-01"}).json()["count"] == 0
    assert api.get("/api/v1/patients/", {"created_before": "2999-01-01T00:00:00Z"}).json()["count"] == 3
    # Any offset the ISO parser takes, even past what PostgreSQL accepts, is compared in UTC.
    assert api.get("/api/v1/patients/", {"created_after": "1000-10-22T05:19:26-22:23"}).json()["count"] == 3
    assert api.get("/api/v1/patients/", {"created_before": "2999-01-27T21:18:42+16:20"}).json()["count"] == 3


def test_patients_list_rejects_bad_query_parameters(api):
    assert_error(api.get("/api/v1/patients/", {"ordering": "password"}), 400, "ordering")
    assert_error(api.get("/api/v1/patients/", {"created_after": "yesterday"}), 400, "created_after")
    period = {"created_after": "2024-02-01", "created_before": "2024-01-01"}
    assert_error(api.get("/api/v1/patients/", period), 400, "created_before")
    assert_error(api.get("/api/v1/patients/", {"search": "x" * 1000}), 400, "search")
    assert_error(
        api.get("/api/v1/patients/", {"created_after": "0001-01-01T00:00:00+05:00"}), 400, "created_after"
    )
    assert_error(api.get("/api/v1/patients/", {"page": "99999999999999999999999"}), 404)


def test_patient_detail_reads_and_updates(api, clinician):
    patient = PatientFactory(created_by=clinician)
    assert api.get(f"/api/v1/patients/{patient.pk}/").json()["identifier"] == patient.identifier
    response = api.patch(f"/api/v1/patients/{patient.pk}/", {"name": "Ada", "sex": "F"}, format="json")
    assert response.status_code == 200 and response.json()["name"] == "Ada"
    assert_error(
        api.patch(f"/api/v1/patients/{patient.pk}/", {"identifier": ""}, format="json"), 400, "identifier"
    )
    patient.refresh_from_db()
    assert (patient.name, patient.sex) == ("Ada", "F")


def test_patient_seen_through_a_case_is_readable(api, clinician):
    case = CaseFactory(owner=clinician, patient=PatientFactory())
    assert api.get(f"/api/v1/patients/{case.patient_id}/").status_code == 200


def test_patients_sort_by_name_whatever_its_case_and_scans_by_file_name(api, clinician, case):
    for identifier, name in [("P-1", "Zulkarnain"), ("P-2", "de Vries"), ("P-3", "Ayu"), ("P-4", "budi")]:
        PatientFactory(identifier=identifier, name=name, created_by=clinician)

    def names(ordering):
        rows = api.get("/api/v1/patients/", {"ordering": ordering}).json()["results"]
        return [row["name"] for row in rows if row["name"]]

    assert names("name") == ["Ayu", "budi", "de Vries", "Zulkarnain"]
    assert names("-name") == ["Zulkarnain", "de Vries", "budi", "Ayu"]
    for original_name in ["b.png", "A.png", "c.png"]:
        ScanFactory(case=case, original_name=original_name)
    scans = api.get(f"/api/v1/cases/{case.pk}/scans/", {"ordering": "original_name"}).json()["results"]
    assert [scan["original_name"] for scan in scans] == ["A.png", "b.png", "c.png"]
