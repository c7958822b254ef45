from __future__ import annotations

from pathlib import Path

from django.core.files.base import ContentFile
from pydicom.data import get_testdata_file

from diagnosis.models import Prediction, Review
from diagnosis.services.scans import scan_upload
from tests.factories import ModelVersionFactory, PredictionFactory, ScanFactory, png_bytes


def done_prediction(case, **kwargs):
    return PredictionFactory(
        scan=ScanFactory(case=case), status="done", label="ddd", probability=0.8, **kwargs
    )


def test_prediction_review_agrees_and_the_case_page_shows_who_decided(client, case, clinician):
    prediction = done_prediction(case)
    client.force_login(clinician)
    data = {f"review-{prediction.pk}-decision": "agree", f"review-{prediction.pk}-comment": "Clear."}
    response = client.post(f"/predictions/{prediction.pk}/review/", data)
    assert response["Location"] == f"/cases/{case.pk}/#prediction-{prediction.pk}"
    review = Review.objects.get()
    assert (review.reviewer, review.decision, review.final_label) == (clinician, "agree", "ddd")
    html = client.get(f"/cases/{case.pk}/").content.decode()
    assert f"Reviewed by <strong>{clinician.username}</strong>: agree" in html and "Clear." in html


def test_prediction_review_errors_are_shown_next_to_the_field(client, case, clinician):
    prediction = done_prediction(case)
    client.force_login(clinician)
    data = {f"review-{prediction.pk}-decision": "override", f"review-{prediction.pk}-final_label": "ddd"}
    response = client.post(f"/predictions/{prediction.pk}/review/", data)
    assert response.status_code == 400
    html = response.content.decode()
    assert "Degenerative disc disease is the model&#x27;s label; choose Agree instead." in html
    assert f'id="id_review-{prediction.pk}-final_label"' in html and 'aria-invalid="true"' in html
    missing = client.post(f"/predictions/{prediction.pk}/review/", {})
    assert missing.status_code == 400 and "Choose Agree or Override." in missing.content.decode()
    assert not Review.objects.exists()


def test_prediction_rerun_queues_with_the_chosen_model(client, case, clinician):
    prediction = done_prediction(case)
    model = ModelVersionFactory(name="vgg-2")
    client.force_login(clinician)
    response = client.post(
        f"/predictions/{prediction.pk}/rerun/", {f"rerun-{prediction.pk}-model_version": model.pk}
    )
    rerun = Prediction.objects.exclude(pk=prediction.pk).get()
    assert response["Location"].endswith(f"#prediction-{rerun.pk}")
    assert (rerun.requested_model, rerun.status, rerun.scan) == (model, "queued", prediction.scan)
    unknown = client.post(
        f"/predictions/{prediction.pk}/rerun/", {f"rerun-{prediction.pk}-model_version": 999999}
    )
    assert unknown.status_code == 400 and Prediction.objects.count() == 2
    assert "Choose the active model or one of the registered models." in unknown.content.decode()


def test_prediction_heatmap_is_png_and_404_until_it_exists(client, case, clinician):
    with_heatmap = done_prediction(case, heatmap=ContentFile(png_bytes(value=9), name="h.png"))
    queued = PredictionFactory(scan=ScanFactory(case=case))
    client.force_login(clinician)
    response = client.get(f"/predictions/{with_heatmap.pk}/heatmap")
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert client.get(f"/predictions/{queued.pk}/heatmap").status_code == 404


def test_scan_file_and_preview_serve_images_and_render_dicom(client, case, clinician):
    scan = ScanFactory(case=case)
    client.force_login(clinician)
    assert client.get(f"/scans/{scan.pk}/file")["Content-Type"] == "image/png"
    dicom_bytes = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    dicom = scan_upload(user=clinician, case=case, uploaded_file=ContentFile(dicom_bytes, name="ct.dcm")).scan
    assert client.get(f"/scans/{dicom.pk}/file")["Content-Type"] == "application/dicom"
    preview = client.get(f"/scans/{dicom.pk}/preview")
    assert preview["Content-Type"] == "image/png" and preview.content.startswith(b"\x89PNG")


def test_media_root_has_no_url(client, case, clinician):
    scan = ScanFactory(case=case)
    client.force_login(clinician)
    assert client.get(f"/media/{scan.file.name}").status_code == 404
