"""The lifecycle routes: sign-off/, reopen/, report.pdf and predictions/{id}/not-used/; 404 for anyone
without access to the case, 409 for anything that would change a signed-off case."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from diagnosis.models import AccessEvent, Case, CaseReport, PredictionExclusion, Review
from diagnosis.services.accounts import token_create
from tests.api.conftest import assert_error
from tests.factories import PredictionFactory, ScanFactory, png_bytes


def sign_off(api, case, conclusion="Mild degeneration at L4-L5."):
    return api.post(f"/api/v1/cases/{case.pk}/sign-off/", {"conclusion": conclusion}, format="json")


def review(api, prediction):
    return api.post(f"/api/v1/predictions/{prediction.pk}/review/", {"decision": "agree"}, format="json")


def pdf_bytes(response) -> bytes:
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/pdf"
    return b"".join(response.streaming_content)


@pytest.fixture
def case(prediction):
    return prediction.scan.case


def test_sign_off_is_refused_until_every_current_prediction_is_settled(api, case, prediction):
    blocked = assert_error(sign_off(api, case), 409, "predictions")
    assert blocked["errors"]["predictions"] == ["1 prediction not reviewed: review or mark not used."]
    assert_error(api.post(f"/api/v1/cases/{case.pk}/sign-off/", {}, format="json"), 400, "conclusion")
    assert_error(sign_off(api, case, conclusion="   "), 400, "conclusion")
    assert not CaseReport.objects.exists()

    assert review(api, prediction).status_code == 201
    response = sign_off(api, case)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "signed_off"
    assert body["signed_off"]["by"] == case.owner.username and body["signed_off"]["version"] == 1
    assert body["signed_off"]["at"]
    [report] = body["reports"]
    assert report["conclusion"] == "Mild degeneration at L4-L5."
    assert report["reopened_by"] is None and report["reopen_reason"] == ""
    assert report["url"].endswith(f"/api/v1/cases/{case.pk}/report.pdf?version=1")
    assert api.get(f"/api/v1/cases/{case.pk}/").json() == body
    listed = api.get("/api/v1/cases/", {"status": "signed_off"}).json()["results"]
    assert [item["id"] for item in listed] == [case.pk] and listed[0]["signed_off"] == body["signed_off"]


def test_a_signed_off_case_answers_409_to_every_change(api, case, prediction):
    other_scan = ScanFactory(case=case)
    unreviewed = PredictionFactory(scan=other_scan, status="done", label="normal", probability=0.1)
    assert (
        api.post(
            f"/api/v1/predictions/{unreviewed.pk}/not-used/", {"reason": "Wrong slice."}, format="json"
        ).json()["not_used"]["reason"]
        == "Wrong slice."
    )
    review(api, prediction)
    assert sign_off(api, case).status_code == 200

    upload = api.post(
        f"/api/v1/cases/{case.pk}/scans/",
        {"file": SimpleUploadedFile("late.png", png_bytes(value=3), "image/png")},
        format="multipart",
    )
    refusals = [
        upload,
        review(api, unreviewed),
        api.post(f"/api/v1/predictions/{prediction.pk}/rerun/", {}, format="json"),
        api.patch(f"/api/v1/cases/{case.pk}/", {"notes": "Late."}, format="json"),
        api.delete(f"/api/v1/predictions/{unreviewed.pk}/not-used/"),
        sign_off(api, case),
    ]
    for response in refusals:
        body = assert_error(response, 409, "case")
        assert "signed off" in body["message"]
    case.refresh_from_db()
    assert case.status == Case.Status.SIGNED_OFF and case.notes == "" and case.scans.count() == 2
    assert not Review.objects.filter(prediction=unreviewed).exists()
    assert prediction.scan.predictions.count() == 1 and PredictionExclusion.objects.count() == 1
    assert CaseReport.objects.count() == 1


def test_reopen_needs_a_reason_and_the_next_sign_off_keeps_the_old_report(api, case, prediction):
    review(api, prediction)
    assert_error(
        api.post(f"/api/v1/cases/{case.pk}/reopen/", {"reason": "Early."}, format="json"), 409, "case"
    )
    sign_off(api, case, conclusion="First reading.")
    first_pdf = pdf_bytes(api.get(f"/api/v1/cases/{case.pk}/report.pdf"))
    assert first_pdf.startswith(b"%PDF-")

    assert_error(api.post(f"/api/v1/cases/{case.pk}/reopen/", {}, format="json"), 400, "reason")
    assert_error(api.post(f"/api/v1/cases/{case.pk}/reopen/", {"reason": " "}, format="json"), 400, "reason")
    response = api.post(f"/api/v1/cases/{case.pk}/reopen/", {"reason": "Second read differs."}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["signed_off"]) == ("open", None)
    assert body["reports"][0]["reopened_by"] == case.owner.username
    assert body["reports"][0]["reopen_reason"] == "Second read differs."
    assert pdf_bytes(api.get(f"/api/v1/cases/{case.pk}/report.pdf")) == first_pdf

    signed = sign_off(api, case, conclusion="Amended reading.").json()
    assert [report["version"] for report in signed["reports"]] == [2, 1]
    assert signed["signed_off"]["version"] == 2
    latest = pdf_bytes(api.get(f"/api/v1/cases/{case.pk}/report.pdf"))
    assert latest != first_pdf
    assert pdf_bytes(api.get(f"/api/v1/cases/{case.pk}/report.pdf", {"version": 1})) == first_pdf
    assert pdf_bytes(api.get(f"/api/v1/cases/{case.pk}/report.pdf", {"version": 2})) == latest
    download = api.get(f"/api/v1/cases/{case.pk}/report.pdf", {"version": 2})
    assert f'filename="case-{case.pk}-report-v2.pdf"' in download["Content-Disposition"]
    # Every download is in the access log, with the case it belongs to.
    downloads = AccessEvent.objects.filter(action=AccessEvent.Action.DOWNLOAD_REPORT, case_id=case.pk)
    assert downloads.count() == 6 and {event.user_id for event in downloads} == {case.owner_id}


def test_report_pdf_is_404_without_a_report_and_400_for_a_bad_version(api, case, prediction):
    assert_error(api.get(f"/api/v1/cases/{case.pk}/report.pdf"), 404)
    review(api, prediction)
    sign_off(api, case)
    assert_error(api.get(f"/api/v1/cases/{case.pk}/report.pdf", {"version": 9}), 404)
    assert_error(api.get(f"/api/v1/cases/{case.pk}/report.pdf", {"version": "one"}), 400, "version")
    assert_error(api.get(f"/api/v1/cases/{case.pk}/report.pdf", {"version": 0}), 400, "version")


def test_not_used_marks_and_unmarks_the_current_prediction(api, case, prediction):
    assert_error(api.post(f"/api/v1/predictions/{prediction.pk}/not-used/", {}, format="json"), 400, "reason")
    response = api.post(
        f"/api/v1/predictions/{prediction.pk}/not-used/", {"reason": "Motion artefact."}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["not_used"]["by"] == case.owner.username
    assert api.get(f"/api/v1/predictions/{prediction.pk}/").json()["not_used"]["reason"] == "Motion artefact."
    assert api.get("/api/v1/predictions/").json()["results"][0]["not_used"]["reason"] == "Motion artefact."
    again = api.post(f"/api/v1/predictions/{prediction.pk}/not-used/", {"reason": "Twice."}, format="json")
    assert_error(again, 409, "prediction")
    assert api.delete(f"/api/v1/predictions/{prediction.pk}/not-used/").status_code == 204
    assert api.get(f"/api/v1/predictions/{prediction.pk}/").json()["not_used"] is None
    assert_error(api.delete(f"/api/v1/predictions/{prediction.pk}/not-used/"), 409, "prediction")

    rerun = PredictionFactory(scan=prediction.scan)
    superseded = api.post(f"/api/v1/predictions/{prediction.pk}/not-used/", {"reason": "Old."}, format="json")
    assert_error(superseded, 409, "prediction")
    assert (
        api.post(
            f"/api/v1/predictions/{rerun.pk}/not-used/", {"reason": "Queued for ever."}, format="json"
        ).status_code
        == 201
    )


def test_the_lifecycle_routes_are_404_for_another_clinician(api, others_prediction):
    case = others_prediction.scan.case
    owner = APIClient()
    owner.credentials(HTTP_AUTHORIZATION=f"Token {token_create(user=case.owner).token}")
    review(owner, others_prediction)
    assert sign_off(owner, case).status_code == 200
    assert_error(sign_off(api, case), 404)
    assert_error(api.post(f"/api/v1/cases/{case.pk}/reopen/", {"reason": "Mine?"}, format="json"), 404)
    assert_error(api.get(f"/api/v1/cases/{case.pk}/report.pdf"), 404)
    assert_error(api.get(f"/api/v1/cases/{case.pk}/report.pdf", {"version": 1}), 404)
    not_used = f"/api/v1/predictions/{others_prediction.pk}/not-used/"
    assert_error(api.post(not_used, {"reason": "Mine?"}, format="json"), 404)
    assert_error(api.delete(not_used), 404)
    assert_error(api.post("/api/v1/cases/999999/sign-off/", {"conclusion": "x"}, format="json"), 404)
    case.refresh_from_db()
    assert case.status == Case.Status.SIGNED_OFF and case.reports.get().reopen_reason == ""


def test_the_lifecycle_routes_need_authentication(case):
    anonymous = APIClient()
    assert_error(sign_off(anonymous, case), 401)
    assert_error(anonymous.post(f"/api/v1/cases/{case.pk}/reopen/", {"reason": "x"}, format="json"), 401)
    assert_error(anonymous.get(f"/api/v1/cases/{case.pk}/report.pdf"), 401)
