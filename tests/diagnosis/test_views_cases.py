from __future__ import annotations

from pathlib import Path

from django.core.files.uploadedfile import SimpleUploadedFile

from diagnosis.models import Case, Scan
from tests.factories import ModelVersionFactory, PatientFactory, PredictionFactory, ScanFactory

SAMPLE = next((Path(__file__).parent.parent / "data" / "sudirman_sample" / "normal").glob("*.png"))


def test_case_create_opens_a_case_from_the_patient_page(client, clinician):
    patient = PatientFactory(created_by=clinician)
    client.force_login(clinician)
    response = client.post(f"/patients/{patient.pk}/cases/new/", {"clinical_question": "Low back pain?"})
    case = Case.objects.get(patient=patient)
    assert response["Location"] == f"/cases/{case.pk}/"
    assert (case.owner, case.clinical_question) == (clinician, "Low back pain?")


def test_case_edit_changes_notes_and_question(client, case, clinician):
    client.force_login(clinician)
    data = {"notes": "Done.", "clinical_question": "L4-L5?"}
    assert client.post(f"/cases/{case.pk}/edit/", data).status_code == 302
    case.refresh_from_db()
    assert (case.status, case.notes, case.clinical_question) == ("open", "Done.", "L4-L5?")


def test_case_detail_shows_thumbnails_predictions_and_reviews(client, case, clinician):
    model = ModelVersionFactory(threshold=0.457)
    done = PredictionFactory(
        scan=ScanFactory(case=case), status="done", label="ddd", probability=0.83, model_version=model
    )
    queued = PredictionFactory(scan=ScanFactory(case=case))
    client.force_login(clinician)
    html = client.get(f"/cases/{case.pk}/").content.decode()
    assert f"/scans/{done.scan_id}/preview" in html and "Degenerative disc disease" in html
    # The bar, and the model's decision threshold marked on it.
    assert 'class="bar-fill above" x="0" y="0" width="830"' in html and "P(DDD) 0.83" in html
    assert 'x1="457" x2="457"' in html and "threshold 0.46" in html
    assert f'data-prediction-id="{queued.pk}" data-status="queued"' in html
    assert "/static/js/case.js" in html


def test_case_status_json_reports_each_prediction(client, case, clinician):
    done = PredictionFactory(scan=ScanFactory(case=case), status="done", label="normal", probability=0.1)
    client.force_login(clinician)
    data = client.get(f"/cases/{case.pk}/status.json").json()
    assert data["case"]["id"] == case.pk
    [state] = data["predictions"]
    assert (state["id"], state["status"], state["label"], state["probability"]) == (
        done.pk,
        "done",
        "normal",
        0.1,
    )
    assert state["heatmap_url"] == "" and state["review"] is None


def test_case_upload_reports_each_file_separately(client, case, clinician):
    client.force_login(clinician)
    files = [SimpleUploadedFile("mri.png", SAMPLE.read_bytes()), SimpleUploadedFile("notes.txt", b"hello")]
    response = client.post(f"/cases/{case.pk}/upload/", {"file": files}, HTTP_ACCEPT="application/json")
    assert response.status_code == 201
    ok, bad = response.json()["results"]
    scan = Scan.objects.get(case=case)
    assert ok == {
        "name": "mri.png",
        "ok": True,
        "created": True,
        "scan": scan.pk,
        "prediction": {"id": scan.predictions.get().pk, "status": "queued"},
    }
    assert bad["name"] == "notes.txt" and not bad["ok"] and "notes.txt" in bad["error"]
    again = client.post(
        f"/cases/{case.pk}/upload/",
        {"file": SimpleUploadedFile("copy.png", SAMPLE.read_bytes())},
        HTTP_ACCEPT="application/json",
    )
    assert again.status_code == 200 and again.json()["results"][0]["created"] is False
    empty = client.post(f"/cases/{case.pk}/upload/", {}, HTTP_ACCEPT="application/json")
    assert (
        empty.status_code == 400
        and empty.json()["results"][0]["error"] == "Choose at least one file to upload."
    )


def test_case_upload_without_javascript_redirects_with_messages(client, case, clinician):
    client.force_login(clinician)
    response = client.post(
        f"/cases/{case.pk}/upload/", {"file": SimpleUploadedFile("x.png", b"nope")}, follow=True
    )
    assert response.redirect_chain[-1][0] == f"/cases/{case.pk}/"
    assert "x.png" in response.content.decode() and not Scan.objects.exists()
