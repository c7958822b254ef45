"""Results back as DICOM: the SR of a finished prediction (read back with pydicom), the heatmap as a
Secondary Capture, GET /api/v1/predictions/{id}/sr, the page's send button and manage.py send_to_pacs;
every object the platform writes passes dciodvfy without errors."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pydicom
import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from pydicom.uid import ComprehensiveSRStorage, SecondaryCaptureImageStorage

from diagnosis.errors import ApplicationError
from diagnosis.models import Prediction, PredictionLevel, Review, Series
from diagnosis.services.dicom_reports import dicom_bytes, prediction_dicom_results, prediction_send_to_pacs
from diagnosis.services.series import series_upload
from tests.dicom_data import dicom_bytes as instance_bytes
from tests.dicom_data import mr_series
from tests.dicom_peers import free_port
from tests.factories import ModelVersionFactory, done_prediction, png_bytes

LEVELS = [
    ("L3-L4", [8.0, 20.0, 30.0, 28.0], 1, [0.7, 0.2, 0.05, 0.03, 0.02], 0.1),
    ("L4-L5", [9.0, 40.0, 31.0, 48.0], 3, [0.05, 0.15, 0.5, 0.2, 0.1], 0.8),
    ("L5-S1", [10.0, 60.0, 32.0, 70.0], 4, [0.02, 0.08, 0.2, 0.5, 0.2], 0.9),
]


def finish(prediction: Prediction, *, label="ddd", probability=0.83) -> Prediction:
    """Record a result the way the worker does: model, label, probability, heatmap and the three levels."""
    prediction.model_version = ModelVersionFactory(name="sr-test-invgg", version="2")
    prediction.status, prediction.label, prediction.probability = "done", label, probability
    prediction.heatmap.save("heat.png", ContentFile(png_bytes(96, 96, value=180)), save=False)
    prediction.save()
    for level, box, grade, grades, degenerated in LEVELS:
        PredictionLevel.objects.create(
            prediction=prediction,
            level=level,
            box=box,
            grade=grade,
            grade_probabilities=grades,
            degenerated_probability=degenerated,
        )
    return prediction


@pytest.fixture
def series_prediction(case) -> Prediction:
    case.patient.identifier, case.patient.name = "MRN-100234", "Ann Walker"
    case.patient.save()
    files = [SimpleUploadedFile(f"IM{i}", instance_bytes(ds)) for i, ds in enumerate(mr_series(5))]
    series_upload(user=case.owner, case=case, uploaded_files=files)
    return finish(Prediction.objects.get(scan__case=case))


def content_items(dataset) -> list:
    """Every content item of an SR, depth first."""
    found = []
    for item in dataset.get("ContentSequence", []):
        found.append(item)
        found.extend(content_items(item))
    return found


def named(items, meaning: str) -> list:
    return [item for item in items if item.ConceptNameCodeSequence[0].CodeMeaning == meaning]


def test_sr_references_the_slice_and_carries_the_outcome_each_level_the_model_and_the_review(
    series_prediction,
):
    Review.objects.create(
        prediction=series_prediction,
        reviewer=series_prediction.scan.case.owner,
        decision="agree",
        final_label="ddd",
    )
    series_prediction.refresh_from_db()

    sr = pydicom.dcmread(
        io.BytesIO(dicom_bytes(prediction_dicom_results(prediction=series_prediction).report))
    )

    source = pydicom.dcmread(series_prediction.scan.file.path)
    assert sr.SOPClassUID == ComprehensiveSRStorage and sr.Modality == "SR"
    assert (sr.PatientID, str(sr.PatientName)) == ("MRN-100234", "Walker^Ann")
    assert sr.StudyInstanceUID == source.StudyInstanceUID
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert (sr.CompletionFlag, sr.VerificationFlag) == ("COMPLETE", "VERIFIED")
    items = content_items(sr)
    [outcome] = [i for i in named(items, "Degeneration of intervertebral disc") if i.ValueType == "CODE"]
    assert outcome.ConceptCodeSequence[0].CodeMeaning == "Present"
    [ddd] = named(items, "Probability of degenerative disc disease")
    assert float(ddd.MeasuredValueSequence[0].NumericValue) == pytest.approx(0.83)
    sites = [i.ConceptCodeSequence[0].CodeValue for i in named(items, "Finding Site")]
    assert sites == ["62551000", "84020006", "75782005"]  # L3-L4, L4-L5, L5-S1 discs
    grades = [int(i.MeasuredValueSequence[0].NumericValue) for i in named(items, "Pfirrmann grade")]
    assert grades == [1, 3, 4]
    degenerated = named(items, "Probability of Pfirrmann grade 3 or more")
    assert [float(i.MeasuredValueSequence[0].NumericValue) for i in degenerated] == [0.1, 0.8, 0.9]
    assert {i.TextValue for i in named(items, "Algorithm Name")} == {"sr-test-invgg"}
    assert {i.TextValue for i in named(items, "Algorithm Version")} == {"2"}
    [review] = named(items, "Clinician review")
    assert review.ConceptCodeSequence[0].CodeMeaning == "Agrees with the model"
    # The slice is referenced, with the box of each level drawn on it.
    regions = [i for i in items if i.ValueType == "SCOORD"]
    assert len(regions) == 3
    assert (
        regions[1].ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        == source.SOPInstanceUID
    )


def test_unreviewed_sr_is_unverified_and_the_same_instance_when_asked_again(series_prediction):
    first = prediction_dicom_results(prediction=series_prediction).report
    again = prediction_dicom_results(prediction=series_prediction).report

    assert first.VerificationFlag == "UNVERIFIED" and not named(content_items(first), "Clinician review")
    assert first.SOPInstanceUID == again.SOPInstanceUID


def test_heatmap_is_a_secondary_capture_in_the_study(series_prediction):
    heatmap = prediction_dicom_results(prediction=series_prediction).heatmap

    assert heatmap.SOPClassUID == SecondaryCaptureImageStorage and heatmap.PatientID == "MRN-100234"
    assert heatmap.StudyInstanceUID == pydicom.dcmread(series_prediction.scan.file.path).StudyInstanceUID
    assert heatmap.pixel_array.shape == (96, 96, 3)


def _dciodvfy_errors(data: bytes, tmp_path: Path) -> list[str]:
    path = tmp_path / "object.dcm"
    path.write_bytes(data)
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


def test_every_dicom_object_the_platform_writes_passes_dciodvfy(series_prediction, tmp_path):
    Review.objects.create(
        prediction=series_prediction,
        reviewer=series_prediction.scan.case.owner,
        decision="override",
        final_label="normal",
    )
    series_prediction.refresh_from_db()
    results = prediction_dicom_results(prediction=series_prediction)
    stored = [scan.file.read() for scan in Series.objects.get().slices.all()]

    for data in [dicom_bytes(results.report), dicom_bytes(results.heatmap), *stored]:
        assert _dciodvfy_errors(data, tmp_path) == []


def test_sr_api_answers_application_dicom_and_refuses_what_has_no_report(client, series_prediction):
    client.force_login(series_prediction.scan.case.owner)

    response = client.get(f"/api/v1/predictions/{series_prediction.pk}/sr")

    assert response.status_code == 200 and response["Content-Type"] == "application/dicom"
    assert pydicom.dcmread(io.BytesIO(response.content)).SOPClassUID == ComprehensiveSRStorage
    queued = Prediction.objects.create(scan=series_prediction.scan)
    assert client.get(f"/api/v1/predictions/{queued.pk}/sr").json()["errors"]["prediction"]
    on_png = done_prediction(series_prediction.scan.case.owner)
    assert "PNG or JPEG" in client.get(f"/api/v1/predictions/{on_png.pk}/sr").json()["message"]


def test_sr_of_another_clinicians_prediction_is_a_404(client, series_prediction, other_clinician):
    client.force_login(other_clinician)

    assert client.get(f"/api/v1/predictions/{series_prediction.pk}/sr").status_code == 404


def test_send_button_shows_only_with_a_pacs_and_reports_a_pacs_that_does_not_answer(
    client, series_prediction, settings
):
    client.force_login(series_prediction.scan.case.owner)
    case_url = f"/cases/{series_prediction.scan.case_id}/"
    assert "Send the report to the PACS" not in client.get(case_url).content.decode()
    settings.LUMBAR_PACS_HOST, settings.LUMBAR_PACS_PORT = "127.0.0.1", free_port()
    assert "Send the report to the PACS" in client.get(case_url).content.decode()

    response = client.post(f"/predictions/{series_prediction.pk}/send-to-pacs/", follow=True)

    assert "Not sent: No association with PACS" in response.content.decode()


def test_send_to_pacs_command_refuses_what_it_cannot_send(series_prediction):
    with pytest.raises(CommandError, match="No prediction 999999"):
        call_command("send_to_pacs", "999999", "--host=127.0.0.1")
    with pytest.raises(CommandError, match="No PACS"):
        call_command("send_to_pacs", str(series_prediction.pk), "--host=")
    with pytest.raises(CommandError, match="No association"):
        call_command("send_to_pacs", str(series_prediction.pk), "--host=127.0.0.1", f"--port={free_port()}")


def test_sending_without_a_configured_pacs_is_refused(series_prediction):
    with pytest.raises(ApplicationError, match="No PACS is configured"):
        prediction_send_to_pacs(user=series_prediction.scan.case.owner, prediction=series_prediction)
