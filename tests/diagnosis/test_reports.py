"""The signed PDF report, read back the way a clinician's software would: its text with pdftotext and
its images with pdfimages (poppler-utils)."""

from __future__ import annotations

import datetime
import re
import shutil
import subprocess

import pytest
from PIL import ImageFile

from diagnosis.models import PredictionLevel, Review
from diagnosis.services.reports import report_html
from diagnosis.services.reviews import review_create
from diagnosis.services.signoff import case_reopen, case_sign_off, prediction_mark_not_used
from tests.factories import ModelVersionFactory, PredictionFactory, ScanFactory, done_prediction

pytestmark = pytest.mark.skipif(
    not shutil.which("pdftotext"), reason="poppler-utils (pdftotext, pdfimages) is not installed"
)


def pdf_text(report) -> str:
    path = report.file.path
    text = subprocess.run(["pdftotext", path, "-"], check=True, capture_output=True, text=True).stdout
    return " ".join(text.split())  # lines wrap where the page does; the words stay in reading order


def pdf_image_count(report) -> int:
    listing = subprocess.run(
        ["pdfimages", "-list", report.file.path], check=True, capture_output=True, text=True
    )
    return len(listing.stdout.strip().splitlines()) - 2  # two header lines


@pytest.fixture
def signed_case(clinician):
    clinician.first_name, clinician.last_name = "Ada", "Lovelace"
    clinician.save()
    model = ModelVersionFactory(name="invgg-report", version="2.0", threshold=0.457)
    prediction = done_prediction(clinician, model_version=model)
    case = prediction.scan.case
    patient = case.patient
    patient.identifier, patient.name, patient.sex = "MRN-100234", "Jane Roe", "F"
    patient.birth_date = datetime.date(1961, 3, 4)
    patient.save()
    case.clinical_question = "Chronic low back pain: disc degeneration?"
    case.save()
    prediction.levels.all().delete()  # done_prediction's own findings, replaced by these
    for level, grade, probabilities in [
        ("L4-L5", 4, [0.01, 0.04, 0.15, 0.62, 0.18]),
        ("L5-S1", 2, [0.2, 0.55, 0.2, 0.04, 0.01]),
    ]:
        PredictionLevel.objects.create(
            prediction=prediction,
            level=level,
            box=[10, 10, 20, 20],
            grade=grade,
            grade_probabilities=probabilities,
            degenerated_probability=sum(probabilities[2:]),
        )
    review_create(
        user=clinician,
        prediction=prediction,
        decision=Review.Decision.OVERRIDE,
        final_label="normal",
        comment="Hydration preserved.",
        levels=[{"level": "L4-L5", "grade": 2}],
    )
    failed = PredictionFactory(scan=ScanFactory(case=case), status="failed", error="worker stopped")
    prediction_mark_not_used(user=clinician, prediction=failed, reason="Motion artefact on this slice.")
    report = case_sign_off(user=clinician, case=case, conclusion="Early degeneration at L4-L5; no surgery.")
    return report


def test_the_report_text_holds_the_patient_case_results_conclusion_and_signature(signed_case):
    text = pdf_text(signed_case)
    for expected in [
        "Lumbar spine MRI case report",
        "MRN-100234",
        "Jane Roe",
        "1961-03-04",
        "Female",
        "Chronic low back pain: disc degeneration?",
        "Degenerative disc disease, P(DDD) 0.80 (threshold 0.46)",
        "invgg-report version 2.0",
        "Override: Normal, “Hydration preserved.”",
        "Clinician: Pfirrmann grade",
        "L4-L5 4 0.62 0.95 2 (corrected)",
        "L5-S1 2 0.55 0.25 2 (confirmed)",
        "Not used for this report",
        "Motion artefact on this slice.",
        "Early degeneration at L4-L5; no surgery.",
        "Signed off by Ada Lovelace",
        "decision support",
        "not a diagnosis",
    ]:
        assert expected in text, f"{expected!r} not in the report:\n{text}"
    assert f"Case {signed_case.case_id} · report version 1" in text
    # The scan and the heatmap of the reviewed prediction, and the scan of the failed one.
    assert pdf_image_count(signed_case) == 3


def test_an_amendment_says_what_it_amends_and_why(signed_case, clinician):
    case = case_reopen(user=clinician, case=signed_case.case, reason="Radiologist's read disagrees at L5-S1.")
    amendment = case_sign_off(user=clinician, case=case, conclusion="Degeneration at L4-L5 and L5-S1.")
    text = pdf_text(amendment)
    assert "report version 2, amending version 1" in text
    assert "Reason: Radiologist's read disagrees at L5-S1." in text
    assert "Degeneration at L4-L5 and L5-S1." in text
    assert "Early degeneration at L4-L5; no surgery." in pdf_text(signed_case)


def test_the_report_loads_nothing_from_outside(signed_case):
    html = report_html(report=signed_case, amends=None)
    sources = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert sources and all(source.startswith("data:image/jpeg;base64,") for source in sources)
    assert "url(" not in html


def test_rendering_leaves_pillow_strict_about_truncated_images(signed_case):
    # WeasyPrint turns this on when imported; upload validation depends on it being off.
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_dicom_and_16_bit_uploads_are_printed_as_the_case_page_shows_them(clinician, tmp_path):
    import io

    import numpy as np
    from django.core.files.uploadedfile import SimpleUploadedFile
    from PIL import Image
    from pydicom.data import get_testdata_file

    from diagnosis.services.scans import scan_upload
    from tests.factories import CaseFactory

    case = CaseFactory(owner=clinician)
    ramp = np.linspace(0, 4095, 48 * 48, dtype=np.uint16).reshape(48, 48)
    sixteen_bit = io.BytesIO()
    Image.fromarray(ramp).save(sixteen_bit, format="PNG")
    dicom = open(get_testdata_file("MR_small.dcm", download=False), "rb").read()
    for name, data in [("ramp16.png", sixteen_bit.getvalue()), ("mr.dcm", dicom)]:
        result = scan_upload(user=clinician, case=case, uploaded_file=SimpleUploadedFile(name, data))
        prediction_mark_not_used(user=clinician, prediction=result.prediction, reason="Not run in this test.")
    report = case_sign_off(user=clinician, case=case, conclusion="Images only.")
    assert "mr.dcm" in pdf_text(report) and "ramp16.png" in pdf_text(report)
    listing = subprocess.run(
        ["pdfimages", "-list", report.file.path], check=True, capture_output=True, text=True
    )
    rows = [line.split() for line in listing.stdout.strip().splitlines()[2:]]
    # page num type width height color comp bpc enc: two 8-bit greyscale JPEGs, the ramp stretched to 8 bits.
    assert [(row[3], row[4], row[5], row[7], row[8]) for row in rows] == [
        ("48", "48", "gray", "8", "jpeg"),
        ("64", "64", "gray", "8", "jpeg"),
    ]
    subprocess.run(["pdfimages", "-j", report.file.path, str(tmp_path / "image")], check=True)
    printed_ramp = np.asarray(Image.open(tmp_path / "image-000.jpg"))
    assert printed_ramp.min() <= 3 and printed_ramp.max() >= 252  # the full 16-bit range, in 8 bits
