"""Another clinician's records look exactly like missing ones: a 404 in the error shape, nothing changed."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from diagnosis.models import AccessEvent, Case, Patient, Prediction, Referral, Review, Scan
from tests.api.conftest import assert_error
from tests.factories import ClinicianFactory, png_bytes

URL_KINDS = [
    ("get", "/api/v1/patients/{patient}/", None),
    ("patch", "/api/v1/patients/{patient}/", {"name": "Changed"}),
    ("get", "/api/v1/cases/{case}/", None),
    ("patch", "/api/v1/cases/{case}/", {"notes": "Changed"}),
    ("get", "/api/v1/cases/{case}/scans/", None),
    ("post", "/api/v1/cases/{case}/scans/", "upload"),
    ("get", "/api/v1/scans/{scan}/", None),
    ("get", "/api/v1/scans/{scan}/file", None),
    ("get", "/api/v1/predictions/{prediction}/", None),
    ("get", "/api/v1/predictions/{prediction}/heatmap", None),
    ("post", "/api/v1/predictions/{prediction}/rerun/", {}),
    ("post", "/api/v1/predictions/{prediction}/review/", {"decision": "agree"}),
    ("get", "/api/v1/cases/{case}/history/", None),
    ("get", "/api/v1/cases/{case}/referrals/", None),
    ("post", "/api/v1/cases/{case}/referrals/", "refer"),
    ("delete", "/api/v1/cases/{case}/referrals/{referral}/", None),
]


@pytest.mark.parametrize("method, template, payload", URL_KINDS, ids=[f"{m} {t}" for m, t, _ in URL_KINDS])
def test_other_clinicians_records_are_404(api, others_prediction, method, template, payload):
    scan = others_prediction.scan
    # Referred to a third clinician: a referral opens the case to that colleague only.
    referral = Referral.objects.create(
        case=scan.case, clinician=ClinicianFactory(), referred_by=scan.case.owner
    )
    ids = {
        "patient": scan.case.patient_id,
        "case": scan.case_id,
        "scan": scan.pk,
        "prediction": others_prediction.pk,
        "referral": referral.pk,
    }
    url = template.format(**ids)
    if payload == "refer":
        response = api.post(url, {"clinician": ClinicianFactory().username}, format="json")
    elif payload == "upload":
        response = api.post(
            url, {"file": SimpleUploadedFile("x.png", png_bytes(value=3))}, format="multipart"
        )
    elif payload is None:
        response = getattr(api, method)(url)
    else:
        response = getattr(api, method)(url, payload, format="json")
    assert_error(response, 404)
    assert (Patient.objects.filter(name="Changed").count(), Case.objects.filter(notes="Changed").count()) == (
        0,
        0,
    )
    assert (Scan.objects.count(), Prediction.objects.count(), Review.objects.count()) == (1, 1, 0)
    assert list(Referral.objects.values_list("pk", "withdrawn_at")) == [(referral.pk, None)]
    assert not AccessEvent.objects.exists()


def test_other_clinicians_records_are_missing_from_lists(api, others_prediction):
    for url in ["/api/v1/patients/", "/api/v1/cases/", "/api/v1/predictions/"]:
        assert api.get(url).json()["count"] == 0


def test_staff_sees_every_record(staff, others_prediction):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(staff)
    assert client.get(f"/api/v1/predictions/{others_prediction.pk}/").status_code == 200
