"""Another clinician's records look exactly like missing ones on every page: 404, and nothing changes."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile

from diagnosis.models import Case, CaseReport, Patient, Prediction, PredictionExclusion, Review, Scan
from tests.factories import CaseFactory, PredictionFactory, ScanFactory, png_bytes

PAGES = [
    ("get", "/patients/{patient}/", None),
    ("get", "/patients/{patient}/edit/", None),
    ("post", "/patients/{patient}/edit/", {"identifier": "CHANGED"}),
    ("get", "/patients/{patient}/cases/new/", None),
    ("post", "/patients/{patient}/cases/new/", {"notes": "CHANGED"}),
    ("get", "/cases/{case}/", None),
    ("get", "/cases/{case}/edit/", None),
    ("post", "/cases/{case}/edit/", {"notes": "CHANGED"}),
    ("get", "/cases/{case}/status.json", None),
    ("post", "/cases/{case}/upload/", "upload"),
    ("get", "/scans/{scan}/file", None),
    ("get", "/scans/{scan}/preview", None),
    ("get", "/predictions/{prediction}/heatmap", None),
    ("post", "/predictions/{prediction}/review/", {"review-{prediction}-decision": "agree"}),
    ("post", "/predictions/{prediction}/rerun/", {}),
    ("post", "/predictions/{prediction}/not-used/", {"not-used-{prediction}-reason": "CHANGED"}),
    ("post", "/predictions/{prediction}/use-again/", {}),
    ("post", "/cases/{case}/sign-off/", {"conclusion": "CHANGED"}),
    ("post", "/cases/{case}/reopen/", {"reason": "CHANGED"}),
    ("get", "/cases/{case}/report.pdf", None),
]


@pytest.mark.parametrize("method, template, payload", PAGES, ids=[f"{m} {t}" for m, t, _ in PAGES])
def test_other_clinicians_records_are_404_on_pages(
    client, clinician, other_clinician, method, template, payload
):
    scan = ScanFactory(case=CaseFactory(owner=other_clinician))
    prediction = PredictionFactory(
        scan=scan, status="done", label="ddd", probability=0.8, heatmap=ContentFile(png_bytes(), name="h.png")
    )
    ids = {
        "patient": scan.case.patient_id,
        "case": scan.case_id,
        "scan": scan.pk,
        "prediction": prediction.pk,
    }
    client.force_login(clinician)
    url = template.format(**ids)
    if payload == "upload":
        response = client.post(url, {"file": SimpleUploadedFile("x.png", png_bytes(value=5))})
    elif payload is None:
        response = getattr(client, method)(url)
    else:
        response = client.post(url, {key.format(**ids): value for key, value in payload.items()})
    assert response.status_code == 404
    assert not Patient.objects.filter(identifier="CHANGED").exists()
    assert Case.objects.get().status == "open" and not Case.objects.filter(notes="CHANGED").exists()
    assert (Scan.objects.count(), Prediction.objects.count(), Review.objects.count()) == (1, 1, 0)
    assert not CaseReport.objects.exists() and not PredictionExclusion.objects.exists()


def test_other_clinicians_records_are_missing_from_list_pages(client, clinician, other_clinician):
    case = CaseFactory(owner=other_clinician, patient__identifier="THEIRS")
    PredictionFactory(scan=ScanFactory(case=case), status="failed", error="no active model")
    client.force_login(clinician)
    for url in ["/", "/patients/", "/patients/?q=HEIR"]:
        html = client.get(url).content.decode()
        assert "THEIRS" not in html and "no active model" not in html
