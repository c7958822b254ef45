"""The record of every change (django-simple-history) and of every access, and the case timeline built
from both."""

from __future__ import annotations

import pytest
from django.test import RequestFactory
from simple_history.middleware import HistoryRequestMiddleware

from diagnosis.models import AccessEvent, Case, Prediction, Review
from diagnosis.selectors import case_history
from diagnosis.services.cases import case_update
from diagnosis.services.history import access_record
from diagnosis.services.referrals import referral_create, referral_withdraw
from diagnosis.services.reviews import review_create
from tests.factories import CaseFactory, PatientFactory, PredictionFactory, ScanFactory

pytestmark = pytest.mark.django_db


def as_request_of(user, work):
    """Run `work` as the history middleware runs a view: inside a request made by `user`."""
    request = RequestFactory().get("/")
    request.user = user
    return HistoryRequestMiddleware(lambda request: work())(request)


def done_prediction(case: Case) -> Prediction:
    return PredictionFactory(
        scan=ScanFactory(case=case), status=Prediction.Status.DONE, label="ddd", probability=0.8
    )


def test_a_change_is_recorded_with_who_when_and_what(case, clinician):
    as_request_of(clinician, lambda: case_update(user=clinician, case=case, notes="Seen in clinic"))
    latest = case.history.first()
    assert (latest.history_type, latest.history_user, latest.notes) == ("~", clinician, "Seen in clinic")
    delta = latest.diff_against(latest.prev_record)
    assert [(change.field, change.old, change.new) for change in delta.changes] == [
        ("notes", "", "Seen in clinic")
    ]


def test_patients_scans_predictions_levels_and_reviews_keep_history(case, clinician):
    prediction = done_prediction(case)
    level = prediction.levels.create(
        level="L4-L5",
        box=[1, 2, 3, 4],
        grade=3,
        grade_probabilities=[0, 0, 1, 0, 0],
        degenerated_probability=0.9,
    )
    review = review_create(user=clinician, prediction=prediction, decision="agree")
    for record in (case.patient, prediction.scan, prediction, level, review):
        assert record.history.filter(history_type="+").exists(), type(record).__name__


def test_an_amended_review_keeps_its_earlier_version_in_the_history(case, clinician):
    prediction = done_prediction(case)
    first = review_create(user=clinician, prediction=prediction, decision="agree", comment="looks degenerate")
    review_create(user=clinician, prediction=prediction, decision="override", final_label="normal")
    versions = Review.history.filter(prediction_id=prediction.pk).order_by("history_date")
    assert [(v.id, v.version, v.comment) for v in versions][0] == (first.pk, 1, "looks degenerate")
    assert [v.history_type for v in versions] == ["+", "+"], "no review row is ever changed"


def test_access_record_finds_the_case_and_patient_of_what_was_opened(case, clinician):
    scan = ScanFactory(case=case)
    prediction = PredictionFactory(scan=scan)
    for obj, object_type in [(case, "case"), (scan, "scan"), (prediction, "prediction")]:
        event = access_record(user=clinician, obj=obj, action=AccessEvent.Action.VIEW_CASE)
        assert (event.case_id, event.patient_id, event.object_type, event.object_id) == (
            case.pk,
            case.patient_id,
            object_type,
            obj.pk,
        )
    patient_event = access_record(user=clinician, obj=case.patient, action=AccessEvent.Action.VIEW_PATIENT)
    assert (patient_event.case_id, patient_event.patient_id) == (None, case.patient_id)
    lookup = access_record(user=clinician, obj=None, action=AccessEvent.Action.LOOKUP_PATIENT, detail="MRN-1")
    assert (lookup.case_id, lookup.patient_id, lookup.detail) == (None, None, "MRN-1")


def test_access_record_refuses_an_unknown_action(case, clinician):
    with pytest.raises(ValueError):
        access_record(user=clinician, obj=case, action="peeked")


def test_the_access_log_outlives_the_case(clinician):
    case = CaseFactory(owner=clinician, patient=PatientFactory(created_by=clinician))
    access_record(user=clinician, obj=case, action=AccessEvent.Action.VIEW_CASE)
    case_id = case.pk
    case.delete()
    assert AccessEvent.objects.get().case_id == case_id


def test_case_history_merges_changes_and_accesses_newest_first(case, clinician):
    prediction = done_prediction(case)
    as_request_of(clinician, lambda: review_create(user=clinician, prediction=prediction, decision="agree"))
    as_request_of(clinician, lambda: case_update(user=clinician, case=case, notes="Reviewed"))
    access_record(user=clinician, obj=prediction.scan, action=AccessEvent.Action.DOWNLOAD_SCAN)
    other_case = CaseFactory()
    access_record(user=other_case.owner, obj=other_case, action=AccessEvent.Action.VIEW_CASE)

    entries = case_history(case=case)
    assert [entry.at for entry in entries] == sorted((entry.at for entry in entries), reverse=True)
    newest = entries[0]
    assert (newest.kind, newest.action, newest.user, newest.object_type) == (
        "access",
        "download_scan",
        clinician.username,
        "scan",
    )
    summaries = [entry.summary for entry in entries]
    assert f"Case {case.pk} changed" in summaries
    assert any(summary.startswith("Review ") and summary.endswith("created") for summary in summaries)
    assert f"Patient {case.patient_id} created" in summaries
    change = next(entry for entry in entries if entry.summary == f"Case {case.pk} changed")
    assert [(c.field, c.new) for c in change.changes if c.field == "notes"] == [("notes", "Reviewed")]
    assert all(entry.user != other_case.owner.username for entry in entries)


def test_case_history_names_the_worker_system(case):
    prediction = PredictionFactory(scan=ScanFactory(case=case))
    prediction.status = Prediction.Status.RUNNING
    prediction.save()
    entry = next(entry for entry in case_history(case=case) if entry.object_type == "prediction")
    assert entry.user == "system"
    assert [(c.field, c.old, c.new) for c in entry.changes] == [("status", "queued", "running")]


def test_case_history_shows_users_by_name_and_times_with_their_zone(case, clinician, other_clinician):
    referral = referral_create(user=clinician, case=case, clinician=other_clinician.username)
    as_request_of(clinician, lambda: referral_withdraw(user=clinician, referral=referral))
    withdrawal = next(entry for entry in case_history(case=case) if entry.summary.endswith("withdrawn"))
    shown = {change.field: change.new for change in withdrawal.changes}
    assert shown["withdrawn_by"] == clinician.username
    assert shown["withdrawn_at"].endswith(" UTC") and shown["withdrawn_at"].startswith(
        str(referral.created_at.year)
    )
