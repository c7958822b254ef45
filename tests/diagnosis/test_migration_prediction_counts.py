"""Cases that existed before the worklist read their prediction counts get them counted by the migration."""

from __future__ import annotations

import pytest

from tests.migrations import legacy_owner_and_patient, legacy_scan, migrate, migrate_to_latest

BEFORE = [("diagnosis", "0017_prediction_superseded_at")]
AFTER = [("diagnosis", "0018_case_prediction_counts")]


@pytest.mark.django_db(transaction=True)
def test_each_case_gets_the_counts_of_its_current_predictions():
    apps = migrate(BEFORE)
    user, patient = legacy_owner_and_patient(apps)
    Case = apps.get_model("diagnosis", "Case")
    Prediction = apps.get_model("diagnosis", "Prediction")
    busy, quiet = (
        Case.objects.create(patient=patient, owner=user),
        Case.objects.create(patient=patient, owner=user),
    )

    def prediction(status: str, *, reviewed=False, not_used=False, superseded=False) -> None:
        scan = legacy_scan(apps, number=Prediction.objects.count(), case=busy, uploaded_by=user)
        result = {"done": {"label": "ddd", "probability": 0.7}, "failed": {"error": "no model"}}
        made = Prediction.objects.create(
            scan=scan,
            status=status,
            superseded_at="2026-01-01T00:00Z" if superseded else None,
            **result.get(status, {}),
        )
        if reviewed:
            apps.get_model("diagnosis", "Review").objects.create(
                prediction=made, reviewer=user, decision="agree", final_label="ddd"
            )
        if not_used:
            apps.get_model("diagnosis", "PredictionExclusion").objects.create(
                prediction=made, reason="Wrong slice.", excluded_by=user
            )

    prediction("done")  # awaiting review
    prediction("done", reviewed=True)
    prediction("done", not_used=True)
    prediction("done", superseded=True)
    prediction("queued")
    prediction("running")
    prediction("failed")
    prediction("failed", superseded=True)

    apps = migrate(AFTER)
    counts = {
        pk: rest
        for pk, *rest in apps.get_model("diagnosis", "Case").objects.values_list(
            "pk", "predictions_awaiting_review", "predictions_in_progress", "predictions_failed"
        )
    }
    assert counts == {busy.pk: [1, 2, 1], quiet.pk: [0, 0, 0]}
    migrate_to_latest()
