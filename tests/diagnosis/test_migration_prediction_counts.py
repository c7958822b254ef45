"""Cases that existed before the worklist read their prediction counts get them counted by the migration."""

from __future__ import annotations

import pytest

from tests.migrations import migrate, migrate_to_latest

BEFORE = [("diagnosis", "0017_prediction_superseded_at")]
AFTER = [("diagnosis", "0018_case_prediction_counts")]


@pytest.mark.django_db(transaction=True)
def test_each_case_gets_the_counts_of_its_current_predictions():
    apps = migrate(BEFORE)
    user = apps.get_model("auth", "User").objects.create(username="legacy")
    Patient = apps.get_model("diagnosis", "Patient")
    Case = apps.get_model("diagnosis", "Case")
    Scan = apps.get_model("diagnosis", "Scan")
    Prediction = apps.get_model("diagnosis", "Prediction")
    patient = Patient.objects.create(identifier="LEGACY-1", created_by=user)
    busy, quiet = (
        Case.objects.create(patient=patient, owner=user),
        Case.objects.create(patient=patient, owner=user),
    )

    def prediction(status: str, *, reviewed=False, not_used=False, superseded=False) -> None:
        scan = Scan.objects.create(
            case=busy, file="x.png", original_name="x.png", sha256=f"{Scan.objects.count():064d}",
            format="png", width=1, height=1, uploaded_by=user,
        )  # fmt: skip
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
