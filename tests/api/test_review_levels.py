"""POST /api/v1/predictions/{id}/review/ with "levels": the clinician's grade per disc level, the image
decision that follows from the grades, the clear 400s, 404 for anyone without access and 409 once the case
is signed off."""

from __future__ import annotations

from diagnosis.models import Case, Review, ReviewLevel
from tests.api.conftest import assert_error
from tests.factories import PredictionFactory, ScanFactory


def review(api, prediction, **payload):
    return api.post(f"/api/v1/predictions/{prediction.pk}/review/", payload, format="json")


def grades(body: dict) -> dict[str, tuple[int, int, bool]]:
    return {row["level"]: (row["grade"], row["model_grade"], row["changed"]) for row in body["levels"]}


def test_confirming_every_level_agrees_with_the_model(api, prediction):
    """done_prediction's model graded L3-L4 2, L4-L5 3, L5-S1 2: DDD."""
    levels = [{"level": "L3-L4", "grade": 2}, {"level": "L4-L5", "grade": 3}, {"level": "L5-S1", "grade": 2}]
    response = review(api, prediction, levels=levels)
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["decision"], body["final_label"]) == ("agree", "ddd")
    assert grades(body) == {"L3-L4": (2, 2, False), "L4-L5": (3, 3, False), "L5-S1": (2, 2, False)}


def test_correcting_the_only_degenerated_level_makes_the_image_normal(api, prediction):
    response = review(api, prediction, levels=[{"level": "L4-L5", "grade": 2}], comment="Hydrated.")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["decision"], body["final_label"]) == ("override", "normal")
    assert grades(body) == {"L3-L4": (2, 2, False), "L4-L5": (2, 3, True), "L5-S1": (2, 2, False)}
    shown = api.get(f"/api/v1/predictions/{prediction.pk}/").json()["review"]
    assert shown["final_label"] == "normal" and grades(shown)["L4-L5"] == (2, 3, True)


def test_a_corrected_grade_that_keeps_the_image_degenerated_still_agrees(api, prediction):
    body = review(api, prediction, levels=[{"level": "L3-L4", "grade": 4}]).json()
    assert (body["decision"], body["final_label"]) == ("agree", "ddd")
    assert grades(body)["L3-L4"] == (4, 2, True)


def test_decision_agree_alone_confirms_the_models_grades(api, prediction):
    body = review(api, prediction, decision="agree").json()
    assert body["decision"] == "agree"
    assert all(not changed for _, _, changed in grades(body).values())


def test_an_amendment_grades_again_and_keeps_the_earlier_version(api, prediction, clinician):
    first = review(api, prediction, levels=[{"level": "L4-L5", "grade": 2}]).json()
    second = review(api, prediction, levels=[{"level": "L4-L5", "grade": 4}]).json()
    assert (second["version"], second["final_label"]) == (2, "ddd")
    assert ReviewLevel.objects.filter(review_id=first["id"], finding__level="L4-L5").get().grade == 2
    assert ReviewLevel.history.filter(history_user=clinician).count() == 6


def test_level_validation_errors_are_400_and_write_nothing(api, prediction, case):
    for payload, field, text in [
        ({}, "decision", "Give each level a grade"),
        ({"levels": [{"level": "L2-L3", "grade": 2}]}, "levels", "L2-L3 is not a level of this prediction"),
        ({"levels": [{"level": "L4-L5", "grade": 6}]}, "levels", "from 1 to 5"),
        ({"levels": [{"level": "L4-L5", "grade": 0}]}, "levels", "from 1 to 5"),
        (
            {"levels": [{"level": "L4-L5", "grade": 2}, {"level": "L4-L5", "grade": 3}]},
            "levels",
            "L4-L5 is given more than once",
        ),
        ({"levels": [{"level": "L4-L5", "grade": 2}], "decision": "agree"}, "decision", "Override"),
        ({"levels": [{"level": "L4-L5", "grade": 2}], "final_label": "ddd"}, "final_label", "Normal"),
        ({"levels": [{"level": "L4-L5", "grade": "three"}]}, "levels", ""),
        ({"levels": [{"grade": 2}]}, "levels", ""),
    ]:
        body = assert_error(review(api, prediction, **payload), 400, field)
        assert text in str(body["errors"][field]), (payload, body)
    scan = ScanFactory(case=case)
    without_levels = PredictionFactory(scan=scan, status="done", label="ddd", probability=0.7)
    body = assert_error(review(api, without_levels, levels=[{"level": "L4-L5", "grade": 2}]), 400, "levels")
    assert "review it as a whole" in body["errors"]["levels"][0]
    assert not Review.objects.exists() and not ReviewLevel.objects.exists()


def test_a_prediction_without_levels_is_still_reviewed_as_a_whole(api, case):
    prediction = PredictionFactory(scan=ScanFactory(case=case), status="done", label="ddd", probability=0.7)
    body = review(api, prediction, decision="override", final_label="normal").json()
    assert (body["decision"], body["final_label"], body["levels"]) == ("override", "normal", [])


def test_someone_elses_prediction_is_404_and_a_signed_off_case_409(api, prediction, others_prediction):
    levels = [{"level": "L4-L5", "grade": 2}]
    assert_error(review(api, others_prediction, levels=levels), 404)
    Case.objects.filter(pk=prediction.scan.case_id).update(status=Case.Status.SIGNED_OFF)
    assert_error(review(api, prediction, levels=levels), 409)
    assert not ReviewLevel.objects.exists()
