"""The case page through the lifecycle: what blocks sign-off, the locked page after it, reopening with a
reason and the report downloads."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from diagnosis.models import Case, CaseReport, PredictionExclusion, Review
from tests.factories import PredictionFactory, ScanFactory, done_prediction, png_bytes


@pytest.fixture
def prediction(clinician):
    return done_prediction(clinician)


@pytest.fixture
def case(prediction):
    return prediction.scan.case


@pytest.fixture
def logged_in(client, clinician):
    client.force_login(clinician)
    return client


def page(client, case):
    response = client.get(f"/cases/{case.pk}/")
    assert response.status_code == 200
    return response.content.decode()


def agree(client, prediction):
    response = client.post(
        f"/predictions/{prediction.pk}/review/", {f"review-{prediction.pk}-decision": "agree"}
    )
    assert response.status_code == 302, response.content


def test_the_open_case_page_says_what_blocks_sign_off(logged_in, case, prediction):
    PredictionFactory(scan=ScanFactory(case=case), status="failed", error="no active model")
    html = page(logged_in, case)
    assert "Sign-off waits for:" in html and 'id="sign-off-ready" hidden' in html
    assert "1 prediction not reviewed: review or mark not used." in html
    assert "1 prediction failed: re-run or mark not used." in html
    assert 'id="upload-form"' in html and "Save review" in html and "Mark not used" in html

    live = logged_in.get(f"/cases/{case.pk}/status.json").json()["case"]["sign_off_blockers"]
    assert live == [
        "1 prediction not reviewed: review or mark not used.",
        "1 prediction failed: re-run or mark not used.",
    ]

    refused = logged_in.post(f"/cases/{case.pk}/sign-off/", {"conclusion": "Too soon."})
    assert refused.status_code == 400
    assert "1 prediction failed: re-run or mark not used." in str(refused.context["sign_off_form"].errors)
    empty = logged_in.post(f"/cases/{case.pk}/sign-off/", {"conclusion": ""})
    assert empty.status_code == 400 and "conclusion" in empty.context["sign_off_form"].errors
    assert Case.objects.get().status != Case.Status.SIGNED_OFF and not CaseReport.objects.exists()


def test_not_used_with_a_reason_then_used_again(logged_in, case, prediction):
    url = f"/predictions/{prediction.pk}/not-used/"
    missing = logged_in.post(url, {f"not-used-{prediction.pk}-reason": ""})
    assert (
        missing.status_code == 400
        and "This field is required." in missing.context["scans"][0].current_prediction.not_used_errors
    )
    assert logged_in.post(url, {f"not-used-{prediction.pk}-reason": "Motion artefact."}).status_code == 302
    html = page(logged_in, case)
    assert "Motion artefact." in html and "Use it again" in html
    assert 'id="sign-off-blockers" role="status" hidden' in html and 'id="sign-off-ready" hidden' not in html
    assert logged_in.post(f"/predictions/{prediction.pk}/use-again/").status_code == 302
    assert not PredictionExclusion.objects.exists()
    assert "1 prediction not reviewed" in page(logged_in, case)


def test_sign_off_locks_the_page_and_reopen_needs_a_reason(logged_in, case, prediction):
    unreviewed = PredictionFactory(scan=ScanFactory(case=case), status="done", label="ddd", probability=0.6)
    logged_in.post(
        f"/predictions/{unreviewed.pk}/not-used/", {f"not-used-{unreviewed.pk}-reason": "Blurred."}
    )
    agree(logged_in, prediction)
    response = logged_in.post(f"/cases/{case.pk}/sign-off/", {"conclusion": "No degeneration."})
    assert response.status_code == 302 and response["Location"] == f"/cases/{case.pk}/"

    html = page(logged_in, case)
    assert "Signed off" in html and "report version 1" in html and "No degeneration." in html
    assert 'id="upload-form"' not in html and "Save review" not in html and "Re-run" not in html
    assert "Mark not used" not in html and "Use it again" not in html and "Edit case" not in html
    assert "Reopen case" in html and f"/cases/{case.pk}/report.pdf?version=1" in html

    stale = logged_in.post(
        f"/predictions/{unreviewed.pk}/review/", {f"review-{unreviewed.pk}-decision": "agree"}
    )
    assert stale.status_code == 400 and "The case is signed off; reopen it" in stale.content.decode()
    rerun = logged_in.post(f"/predictions/{prediction.pk}/rerun/", {})
    assert rerun.status_code == 400 and "The case is signed off; reopen it" in rerun.content.decode()
    upload = logged_in.post(
        f"/cases/{case.pk}/upload/",
        {"file": SimpleUploadedFile("late.png", png_bytes(value=7))},
        HTTP_ACCEPT="application/json",
    )
    assert upload.status_code == 400 and "signed off" in upload.json()["results"][0]["error"]
    assert logged_in.post(f"/cases/{case.pk}/edit/", {"notes": "Late."}).status_code == 400
    assert not Review.objects.filter(prediction=unreviewed).exists() and case.scans.count() == 2

    download = logged_in.get(f"/cases/{case.pk}/report.pdf")
    assert download.status_code == 200 and download["Content-Type"] == "application/pdf"
    assert b"".join(download.streaming_content).startswith(b"%PDF-")
    assert logged_in.get(f"/cases/{case.pk}/report.pdf?version=2").status_code == 404
    assert logged_in.get(f"/cases/{case.pk}/report.pdf?version=x").status_code == 404

    no_reason = logged_in.post(f"/cases/{case.pk}/reopen/", {"reason": ""})
    assert no_reason.status_code == 400 and "reason" in no_reason.context["reopen_form"].errors
    assert logged_in.post(f"/cases/{case.pk}/reopen/", {"reason": "New history."}).status_code == 302
    html = page(logged_in, case)
    assert 'id="upload-form"' in html and "New history." in html and "Sign off" in html
    assert Case.objects.get().status == Case.Status.OPEN
    assert logged_in.post(f"/cases/{case.pk}/sign-off/", {"conclusion": "Amended."}).status_code == 302
    assert [report.version for report in CaseReport.objects.all()] == [2, 1]
    html = page(logged_in, case)
    assert (
        f"/cases/{case.pk}/report.pdf?version=2" in html and f"/cases/{case.pk}/report.pdf?version=1" in html
    )
