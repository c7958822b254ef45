"""The counts of a case's current predictions that the worklist sums (Case.predictions_*): the services keep
them through everything a prediction goes through, always equal to counting the predictions themselves."""

from __future__ import annotations

from pathlib import Path

from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from diagnosis.models import Case, Prediction, Scan
from diagnosis.selectors import case_prediction_counts
from diagnosis.services.predictions import prediction_fail, prediction_request, prediction_run
from diagnosis.services.reviews import review_create
from diagnosis.services.scans import scan_upload
from diagnosis.services.signoff import prediction_mark_not_used, prediction_use_again

SAMPLES = sorted(Path(__file__).resolve().parents[1].glob("data/sudirman_sample/*/*.png"))[:2]


def _upload(case: Case, path: Path) -> Prediction:
    uploaded = SimpleUploadedFile(path.name, path.read_bytes())
    return scan_upload(user=case.owner, case=case, uploaded_file=uploaded).prediction


def _kept(case: Case) -> tuple[int, int, int]:
    """(awaiting review, in progress, failed) as the case keeps them, checked against a fresh count."""
    case.refresh_from_db()
    kept = {name: getattr(case, name) for name in case_prediction_counts(case=case)}
    assert kept == case_prediction_counts(case=case)
    return kept["predictions_awaiting_review"], kept["predictions_in_progress"], kept["predictions_failed"]


def test_counts_follow_uploads_results_failures_reruns_reviews_and_not_used(case, active_model):
    first = _upload(case, SAMPLES[0])
    second = _upload(case, SAMPLES[1])
    assert _kept(case) == (0, 2, 0) and case.status == Case.Status.OPEN

    first = prediction_run(prediction_id=first.pk)
    assert first.status == Prediction.Status.DONE, first.error
    assert _kept(case) == (1, 1, 0) and case.status == Case.Status.AWAITING_REVIEW

    prediction_fail(prediction=Prediction.objects.get(pk=second.pk), reason="the model crashed")
    assert _kept(case) == (1, 0, 1)

    prediction_mark_not_used(user=case.owner, prediction=first, reason="Wrong slice.")
    assert _kept(case) == (0, 0, 1) and case.status == Case.Status.OPEN
    prediction_use_again(user=case.owner, prediction=first)
    assert _kept(case) == (1, 0, 1) and case.status == Case.Status.AWAITING_REVIEW

    rerun = prediction_request(user=case.owner, scan=second.scan)  # supersedes the failure
    assert _kept(case) == (1, 1, 0)

    review_create(user=case.owner, prediction=first, decision="agree")
    assert _kept(case) == (0, 1, 0) and case.status == Case.Status.OPEN

    prediction_run(prediction_id=rerun.pk)
    assert _kept(case) == (1, 0, 0) and case.status == Case.Status.AWAITING_REVIEW


def test_deleting_scans_or_predictions_in_the_admin_refreshes_their_case(client, staff, case, active_model):
    kept_scan, deleted_scan = (prediction_run(prediction_id=_upload(case, path).pk).scan for path in SAMPLES)
    assert _kept(case) == (2, 0, 0)
    client.force_login(staff)

    client.post(reverse("admin:diagnosis_scan_delete", args=[deleted_scan.pk]), {"post": "yes"})
    assert not Scan.objects.filter(pk=deleted_scan.pk).exists()
    assert _kept(case) == (1, 0, 0) and case.status == Case.Status.AWAITING_REVIEW

    prediction = Prediction.objects.get(scan=kept_scan)
    bulk_delete = {"action": "delete_selected", "_selected_action": [prediction.pk], "post": "yes"}
    client.post(reverse("admin:diagnosis_prediction_changelist"), bulk_delete)
    assert not Prediction.objects.filter(scan=kept_scan).exists()
    assert _kept(case) == (0, 0, 0) and case.status == Case.Status.OPEN
