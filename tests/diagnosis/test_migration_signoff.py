"""Cases closed before sign-off existed are open again after the migration: awaiting review while a
current prediction lacks a review, open otherwise."""

from __future__ import annotations

import pytest

from tests.migrations import legacy_owner_and_patient, legacy_scan, migrate, migrate_to_latest

BEFORE = [("diagnosis", "0009_history_of_series_fields")]
AFTER = [("diagnosis", "0010_case_signoff")]


@pytest.mark.django_db(transaction=True)
def test_closed_cases_become_open_or_awaiting_review():
    apps = migrate(BEFORE)
    user, patient = legacy_owner_and_patient(apps)
    Case = apps.get_model("diagnosis", "Case")
    Prediction = apps.get_model("diagnosis", "Prediction")
    Review = apps.get_model("diagnosis", "Review")

    def case_with(*runs, status="closed"):
        case = Case.objects.create(patient=patient, owner=user, status=status)
        scan = legacy_scan(apps, number=case.pk, case=case, uploaded_by=user)
        for reviewed in runs:
            prediction = Prediction.objects.create(scan=scan, status="done", label="ddd", probability=0.7)
            if reviewed:
                Review.objects.create(
                    prediction=prediction, reviewer=user, decision="agree", final_label="ddd"
                )
        return case.pk

    waiting = case_with(True, False)  # its re-run, the current prediction, is not reviewed
    settled = case_with(False, True)  # only the superseded run lacks a review
    empty = case_with()
    untouched = case_with(False, status="awaiting_review")

    apps = migrate(AFTER)
    statuses = dict(apps.get_model("diagnosis", "Case").objects.values_list("pk", "status"))
    assert statuses == {
        waiting: "awaiting_review",
        settled: "open",
        empty: "open",
        untouched: "awaiting_review",
    }

    signed = apps.get_model("diagnosis", "Case").objects.create(patient_id=patient.pk, owner_id=user.pk)
    apps.get_model("diagnosis", "Case").objects.filter(pk=signed.pk).update(status="signed_off")
    apps = migrate(BEFORE)  # going back, a signed-off case is closed again
    statuses = dict(apps.get_model("diagnosis", "Case").objects.values_list("pk", "status"))
    assert statuses[signed.pk] == "closed" and statuses[waiting] == "awaiting_review"
    migrate_to_latest()
