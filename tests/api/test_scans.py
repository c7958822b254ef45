from __future__ import annotations

from pathlib import Path

from django.core.files.uploadedfile import SimpleUploadedFile
from pydicom.data import get_testdata_file

from diagnosis.models import Prediction, Scan
from tests.api.conftest import assert_error
from tests.factories import ScanFactory

SAMPLE = next((Path(__file__).parent.parent / "data" / "sudirman_sample" / "normal").glob("*.png"))


def upload(api, case, data: bytes, name: str = "mri.png"):
    return api.post(
        f"/api/v1/cases/{case.pk}/scans/", {"file": SimpleUploadedFile(name, data)}, format="multipart"
    )


def test_case_scans_upload_returns_the_scan_and_its_queued_prediction(api, case):
    response = upload(api, case, SAMPLE.read_bytes())
    assert response.status_code == 201, response.json()
    body = response.json()
    scan = Scan.objects.get(pk=body["id"])
    assert scan.case == case and body["format"] == "png"
    assert body["prediction"] == {"id": scan.predictions.get().pk, "status": "queued"}
    again = upload(api, case, SAMPLE.read_bytes(), name="same.png")
    assert again.status_code == 200 and again.json()["id"] == scan.pk
    assert Prediction.objects.count() == 1
    listed = api.get(f"/api/v1/cases/{case.pk}/scans/").json()
    assert [item["id"] for item in listed["results"]] == [scan.pk]


def test_case_scans_upload_errors_name_the_file_field(api, case):
    assert_error(upload(api, case, b"not an image", name="notes.txt"), 400, "file")
    assert_error(upload(api, case, b""), 400, "file")
    assert_error(api.post(f"/api/v1/cases/{case.pk}/scans/", {}, format="multipart"), 400, "file")
    json_body = api.post(f"/api/v1/cases/{case.pk}/scans/", {"file": "x"}, format="json")
    assert_error(json_body, 415)
    case.status = "signed_off"
    case.save()
    assert_error(upload(api, case, SAMPLE.read_bytes()), 409, "case")
    assert not Scan.objects.exists()


def test_scan_detail_and_file_are_served_with_their_content_type(api, case):
    scan = ScanFactory(case=case)
    assert api.get(f"/api/v1/scans/{scan.pk}/").json()["sha256"] == scan.sha256
    response = api.get(f"/api/v1/scans/{scan.pk}/file", HTTP_ACCEPT="image/png")
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content) == scan.file.open("rb").read()


def test_scan_file_serves_dicom_as_application_dicom(api, case):
    data = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    scan_id = upload(api, case, data, name="ct.dcm").json()["id"]
    response = api.get(f"/api/v1/scans/{scan_id}/file")
    assert response.status_code == 200 and response["Content-Type"] == "application/dicom"
    assert response["Content-Disposition"].startswith("attachment")
