from __future__ import annotations

from diagnosis.models import Patient
from diagnosis.services.patients import IDENTIFIER_TAKEN
from tests.factories import PatientFactory


def test_patient_list_searches_my_patients(client, clinician):
    PatientFactory(identifier="MRN-1", name="Ada Lovelace", created_by=clinician)
    PatientFactory(identifier="MRN-2", created_by=clinician)
    PatientFactory(identifier="MRN-3")
    client.force_login(clinician)
    html = client.get("/patients/").content.decode()
    assert "MRN-1" in html and "MRN-2" in html and "MRN-3" not in html
    html = client.get("/patients/", {"q": "lovelace"}).content.decode()
    assert "MRN-1" in html and "MRN-2" not in html
    assert client.get("/patients/", {"page": "x" * 50}).status_code == 200


def test_patient_create_registers_and_shows_errors_next_to_the_field(client, clinician):
    client.force_login(clinician)
    response = client.post("/patients/new/", {"identifier": "MRN-9", "name": "Ada", "sex": "F"})
    patient = Patient.objects.get(identifier="MRN-9")
    assert response["Location"] == f"/patients/{patient.pk}/"
    duplicate = client.post("/patients/new/", {"identifier": "MRN-9"})
    assert duplicate.status_code == 400
    assert duplicate.context["form"].errors == {"identifier": [IDENTIFIER_TAKEN]}
    assert b'aria-invalid="true"' in duplicate.content
    future = client.post("/patients/new/", {"identifier": "MRN-10", "birth_date": "2999-01-01"})
    assert "birth_date" in future.context["form"].errors


def test_patient_edit_saves_changes(client, clinician):
    patient = PatientFactory(created_by=clinician)
    client.force_login(clinician)
    assert (
        client.get(f"/patients/{patient.pk}/edit/").context["form"].initial["identifier"]
        == patient.identifier
    )
    response = client.post(
        f"/patients/{patient.pk}/edit/", {"identifier": patient.identifier, "name": "New name"}
    )
    assert response.status_code == 302
    patient.refresh_from_db()
    assert patient.name == "New name"
    assert client.post(f"/patients/{patient.pk}/edit/", {"identifier": ""}).status_code == 400


def test_patient_detail_lists_the_patients_cases(client, case, clinician):
    client.force_login(clinician)
    html = client.get(f"/patients/{case.patient_id}/").content.decode()
    assert f"/cases/{case.pk}/" in html and f"/patients/{case.patient_id}/cases/new/" in html
