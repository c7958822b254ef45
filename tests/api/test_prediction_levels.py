"""The per-level findings and the not-assessable outcome in the prediction API."""

from __future__ import annotations

from diagnosis.models import Prediction
from tests.factories import PredictionFactory, ScanFactory


def test_prediction_detail_lists_each_level_with_grade_probabilities_and_box(
    api, prediction, django_assert_num_queries
):
    # The token with the requester's group, the prediction with its scan and case, the access log line,
    # its levels, reviews and exclusion (no model version here): the levels are read once.
    with django_assert_num_queries(6):
        body = api.get(f"/api/v1/predictions/{prediction.pk}/").json()

    assert (body["label"], body["reason"]) == ("ddd", "")
    assert [level["level"] for level in body["levels"]] == ["L3-L4", "L4-L5", "L5-S1"]
    first = body["levels"][1]
    assert set(first) == {"level", "grade", "grade_probabilities", "degenerated_probability", "box"}
    assert first["grade"] == 3 and len(first["grade_probabilities"]) == 5
    assert first["degenerated_probability"] == 0.9 and first["box"] == [8, 13, 24, 19]


def test_levels_come_with_every_prediction_of_a_list(api, prediction, case, django_assert_max_num_queries):
    for _ in range(3):
        PredictionFactory(scan=ScanFactory(case=case))
    with django_assert_max_num_queries(8):
        body = api.get("/api/v1/predictions/").json()
    levels = {item["id"]: item["levels"] for item in body["results"]}
    assert len(levels[prediction.pk]) == 3 and all(not v for k, v in levels.items() if k != prediction.pk)


def test_a_refused_scan_is_not_assessable_with_its_reason_and_no_probability(api, case):
    refused = PredictionFactory(
        scan=ScanFactory(case=case),
        status=Prediction.Status.DONE,
        label=Prediction.Label.NOT_ASSESSABLE,
        reason="the image has almost no contrast: no anatomy to assess",
    )

    body = api.get(f"/api/v1/predictions/{refused.pk}/").json()

    assert (body["label"], body["probability"], body["levels"]) == ("not_assessable", None, [])
    assert body["reason"].startswith("the image has almost no contrast")
    assert api.get("/api/v1/predictions/", {"label": "not_assessable"}).json()["count"] == 1
