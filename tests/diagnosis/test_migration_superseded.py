"""Predictions already stored get their superseded_at: each scan keeps its latest as the current one (the
earlier ones superseded from when the re-run was queued), and a series only its chosen slice's."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.migrations import legacy_owner_and_patient, legacy_scan, migrate, migrate_to_latest

BEFORE = [("diagnosis", "0016_level_orderings_by_column")]
AFTER = [("diagnosis", "0017_prediction_superseded_at")]


@pytest.mark.django_db(transaction=True)
def test_each_scan_keeps_its_latest_prediction_and_a_series_its_chosen_slices():
    apps = migrate(BEFORE)
    user, patient = legacy_owner_and_patient(apps)
    case = apps.get_model("diagnosis", "Case").objects.create(patient=patient, owner=user)
    Prediction = apps.get_model("diagnosis", "Prediction")
    series = apps.get_model("diagnosis", "Series").objects.create(
        case=case, study_uid="1.2", series_uid="1.2.3"
    )

    def scan(number, in_series=False):
        return legacy_scan(
            apps, number=number, case=case, uploaded_by=user, series=series if in_series else None
        )

    def prediction(on, minutes_ago):
        made = Prediction.objects.create(scan=on, status="failed", error="x")
        queued = timezone.now() - timedelta(minutes=minutes_ago)
        Prediction.objects.filter(pk=made.pk).update(queued_at=queued)
        return made.pk, queued

    loose = scan(1)
    (first, _), (rerun, rerun_queued) = prediction(loose, 30), prediction(loose, 10)
    only, _ = prediction(scan(2), 20)
    old_slice, chosen_slice = scan(3, in_series=True), scan(4, in_series=True)
    (on_old_slice, _), (on_chosen, _) = prediction(old_slice, 25), prediction(chosen_slice, 5)
    series.chosen_scan = chosen_slice
    series.save()

    apps = migrate(AFTER)
    superseded = dict(apps.get_model("diagnosis", "Prediction").objects.values_list("pk", "superseded_at"))
    assert superseded[first] == rerun_queued
    assert superseded[rerun] is None and superseded[only] is None and superseded[on_chosen] is None
    assert superseded[on_old_slice] is not None
    migrate_to_latest()
