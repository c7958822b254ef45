"""The case lifecycle services: sign-off needs every current prediction settled and a conclusion, locks
the case, and a reopen with a reason lets the next sign-off add the next report version."""

from __future__ import annotations

import threading

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from diagnosis.errors import ApplicationError, Conflict, NotFound
from diagnosis.models import Case, CaseReport, PredictionExclusion, Review
from diagnosis.selectors import case_sign_off_blockers
from diagnosis.services import signoff
from diagnosis.services.cases import case_update
from diagnosis.services.predictions import prediction_request
from diagnosis.services.reviews import review_create
from diagnosis.services.scans import scan_upload
from diagnosis.services.signoff import (
    case_reopen,
    case_sign_off,
    prediction_mark_not_used,
    prediction_use_again,
)
from tests.factories import PredictionFactory, ScanFactory, done_prediction, png_bytes


def reviewed(prediction, user):
    return review_create(user=user, prediction=prediction, decision=Review.Decision.AGREE)


@pytest.fixture
def prediction(clinician):
    return done_prediction(clinician)


def test_sign_off_waits_for_every_current_prediction_and_says_what_blocks(clinician, prediction):
    case = prediction.scan.case
    ScanFactory(case=case)  # a scan without a prediction: nothing to wait for
    failed = PredictionFactory(scan=ScanFactory(case=case), status="failed", error="no active model")
    running = PredictionFactory(scan=ScanFactory(case=case), status="running")
    assert case_sign_off_blockers(case=case) == [
        "1 prediction not reviewed: review or mark not used.",
        "1 prediction failed: re-run or mark not used.",
        "1 prediction still running: wait for the result or mark not used.",
    ]
    with pytest.raises(Conflict) as refused:
        case_sign_off(user=clinician, case=case, conclusion="Mild degeneration at L4-L5.")
    assert refused.value.errors["predictions"] == case_sign_off_blockers(case=case)
    assert not CaseReport.objects.exists()

    reviewed(prediction, clinician)
    prediction_mark_not_used(user=clinician, prediction=failed, reason="No model was active.")
    prediction_mark_not_used(user=clinician, prediction=running, reason="Motion artefact.")
    assert case_sign_off_blockers(case=case) == []
    report = case_sign_off(user=clinician, case=case, conclusion="  Mild degeneration at L4-L5. ")
    case.refresh_from_db()
    assert case.status == Case.Status.SIGNED_OFF
    assert (report.version, report.conclusion, report.signed_by) == (
        1,
        "Mild degeneration at L4-L5.",
        clinician,
    )
    assert report.file.name.endswith(f"case-{case.pk}-report-v1.pdf")
    assert report.file.read().startswith(b"%PDF-")


def test_only_the_latest_prediction_of_a_scan_needs_a_review(clinician, prediction):
    case = prediction.scan.case
    rerun = PredictionFactory(scan=prediction.scan, status="done", label="normal", probability=0.2)
    assert case_sign_off_blockers(case=case) == ["1 prediction not reviewed: review or mark not used."]
    reviewed(rerun, clinician)
    assert case_sign_off_blockers(case=case) == []
    with pytest.raises(Conflict, match="current prediction"):
        prediction_mark_not_used(user=clinician, prediction=prediction, reason="Superseded.")


def test_sign_off_needs_a_conclusion(clinician, prediction):
    reviewed(prediction, clinician)
    with pytest.raises(ApplicationError) as refused:
        case_sign_off(user=clinician, case=prediction.scan.case, conclusion="   ")
    assert "conclusion" in refused.value.errors
    assert not CaseReport.objects.exists()


def test_a_signed_off_case_refuses_uploads_reviews_reruns_edits_and_marks(clinician, prediction):
    case = prediction.scan.case
    unreviewed = PredictionFactory(scan=ScanFactory(case=case), status="done", label="ddd", probability=0.7)
    prediction_mark_not_used(user=clinician, prediction=unreviewed, reason="Wrong slice.")
    reviewed(prediction, clinician)
    case_sign_off(user=clinician, case=case, conclusion="Normal discs.")
    case.refresh_from_db()
    attempts = [
        lambda: scan_upload(
            user=clinician, case=case, uploaded_file=SimpleUploadedFile("new.png", png_bytes(value=9))
        ),
        lambda: review_create(user=clinician, prediction=unreviewed, decision="agree"),
        lambda: prediction_request(user=clinician, scan=prediction.scan),
        lambda: case_update(user=clinician, case=case, notes="Late note."),
        lambda: prediction_use_again(user=clinician, prediction=unreviewed),
        lambda: case_sign_off(user=clinician, case=case, conclusion="Again."),
    ]
    for attempt in attempts:
        with pytest.raises(Conflict, match="signed off"):
            attempt()
    case.refresh_from_db()
    assert case.scans.count() == 2 and case.notes == "" and case.reports.count() == 1
    assert prediction.scan.predictions.count() == 1 and PredictionExclusion.objects.count() == 1


def test_reopen_needs_a_reason_and_the_next_sign_off_is_the_next_version(clinician, prediction):
    case = prediction.scan.case
    reviewed(prediction, clinician)
    with pytest.raises(Conflict, match="Only a signed-off case"):
        case_reopen(user=clinician, case=case, reason="Too early.")
    first = case_sign_off(user=clinician, case=case, conclusion="Normal discs.")
    with pytest.raises(ApplicationError) as refused:
        case_reopen(user=clinician, case=case, reason=" ")
    assert "reason" in refused.value.errors

    case = case_reopen(user=clinician, case=case, reason="The radiologist's report arrived.")
    assert case.status == Case.Status.OPEN
    first.refresh_from_db()
    assert (first.reopened_by, first.reopen_reason) == (clinician, "The radiologist's report arrived.")
    assert first.reopened_at >= first.signed_at

    rerun = prediction_request(user=clinician, scan=prediction.scan)
    case.refresh_from_db()
    assert case_sign_off_blockers(case=case) == [
        "1 prediction still running: wait for the result or mark not used."
    ]
    prediction_mark_not_used(user=clinician, prediction=rerun, reason="Re-run not needed.")
    second = case_sign_off(user=clinician, case=case, conclusion="Degeneration at L5-S1.")
    assert second.version == 2
    assert [report.version for report in case.reports.all()] == [2, 1]
    assert first.file.storage.exists(first.file.name) and second.file.name != first.file.name


def test_not_used_can_be_undone_while_open_and_needs_a_reason(clinician, prediction):
    case = prediction.scan.case
    with pytest.raises(ApplicationError) as refused:
        prediction_mark_not_used(user=clinician, prediction=prediction, reason="")
    assert "reason" in refused.value.errors
    prediction_mark_not_used(user=clinician, prediction=prediction, reason="Blurred.")
    case.refresh_from_db()
    assert case.status == Case.Status.OPEN
    with pytest.raises(Conflict, match="already"):
        prediction_mark_not_used(user=clinician, prediction=prediction, reason="Blurred.")
    prediction_use_again(user=clinician, prediction=prediction)
    case.refresh_from_db()
    assert case.status == Case.Status.AWAITING_REVIEW
    with pytest.raises(Conflict, match="not marked"):
        prediction_use_again(user=clinician, prediction=prediction)


def test_lifecycle_is_the_owners(other_clinician, prediction, clinician, staff):
    case = prediction.scan.case
    reviewed(prediction, clinician)
    with pytest.raises(NotFound):
        case_sign_off(user=other_clinician, case=case, conclusion="Not mine.")
    with pytest.raises(NotFound):
        prediction_mark_not_used(user=other_clinician, prediction=prediction, reason="Not mine.")
    case_sign_off(user=clinician, case=case, conclusion="Mine.")
    with pytest.raises(NotFound):
        case_reopen(user=other_clinician, case=case, reason="Not mine.")
    assert case_reopen(user=staff, case=case, reason="Audit found a typo.").status == Case.Status.OPEN


def test_case_status_is_no_longer_set_by_an_edit(clinician, prediction):
    case = prediction.scan.case
    assert case_update(user=clinician, case=case, status=case.status, notes="Same status.").notes == (
        "Same status."
    )
    with pytest.raises(ApplicationError) as refused:
        case_update(user=clinician, case=case, status=Case.Status.SIGNED_OFF)
    assert "sign-off" in refused.value.errors["status"][0]


@pytest.mark.django_db(transaction=True)
def test_a_review_that_arrives_during_the_sign_off_waits_for_it_and_is_refused(monkeypatch):
    from tests.factories import ClinicianFactory

    clinician = ClinicianFactory()
    prediction = done_prediction(clinician)
    case = prediction.scan.case
    late = PredictionFactory(scan=ScanFactory(case=case), status="done", label="ddd", probability=0.7)
    reviewed(prediction, clinician)
    prediction_mark_not_used(user=clinician, prediction=late, reason="Wrong slice.")
    rendering, release = threading.Event(), threading.Event()
    render = signoff.report_render

    def slow_render(**kwargs):
        rendering.set()
        release.wait(30)
        return render(**kwargs)

    monkeypatch.setattr(signoff, "report_render", slow_render)
    outcomes: dict[str, object] = {}

    def in_thread(name, action):
        def run():
            try:
                outcomes[name] = action()
            except Exception as exc:  # the outcome under test, whatever it is
                outcomes[name] = exc
            finally:
                connection.close()

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    signing = in_thread("sign-off", lambda: case_sign_off(user=clinician, case=case, conclusion="Done."))
    assert rendering.wait(30)
    reviewing = in_thread("review", lambda: review_create(user=clinician, prediction=late, decision="agree"))
    reviewing.join(1.0)
    assert reviewing.is_alive(), "the review did not wait for the sign-off"
    release.set()
    signing.join(60)
    reviewing.join(60)
    assert isinstance(outcomes["sign-off"], CaseReport)
    assert isinstance(outcomes["review"], Conflict), outcomes["review"]
    assert not Review.objects.filter(prediction=late).exists()
