from __future__ import annotations

from diagnosis.models import Prediction, Review
from tests.api.conftest import assert_error
from tests.factories import ModelVersionFactory, PredictionFactory, ScanFactory


def test_prediction_detail_shows_result_timings_and_heatmap_url(api, prediction):
    prediction.preprocess_ms, prediction.inference_ms = 3.5, 12.0
    prediction.save()
    body = api.get(f"/api/v1/predictions/{prediction.pk}/").json()
    assert (body["status"], body["label"], body["probability"]) == ("done", "ddd", 0.8)
    assert (body["preprocess_ms"], body["inference_ms"]) == (3.5, 12.0)
    assert {"queued_at", "started_at", "finished_at", "model_version"} <= set(body)
    heatmap = api.get(body["heatmap_url"])
    assert heatmap.status_code == 200 and heatmap["Content-Type"] == "image/png"


def test_prediction_heatmap_is_404_while_there_is_none(api, case):
    queued = PredictionFactory(scan=ScanFactory(case=case))
    assert api.get(f"/api/v1/predictions/{queued.pk}/").json()["heatmap_url"] is None
    assert_error(api.get(f"/api/v1/predictions/{queued.pk}/heatmap"), 404)


def test_predictions_list_filters_by_status(api, prediction, case):
    PredictionFactory(scan=ScanFactory(case=case))
    assert api.get("/api/v1/predictions/").json()["count"] == 2
    done = api.get("/api/v1/predictions/", {"status": "done"}).json()["results"]
    assert [item["id"] for item in done] == [prediction.pk]
    assert_error(api.get("/api/v1/predictions/", {"status": "finished"}), 400, "status")
    assert_error(api.get("/api/v1/predictions/", {"case": "first"}), 400, "case")


def test_prediction_rerun_queues_a_new_prediction_with_the_named_model(api, prediction):
    model = ModelVersionFactory(name="vgg-v2")
    for reference in ["vgg-v2", str(model.pk), ""]:
        response = api.post(
            f"/api/v1/predictions/{prediction.pk}/rerun/", {"model": reference}, format="json"
        )
        assert response.status_code == 201
        rerun = Prediction.objects.get(pk=response.json()["id"])
        assert rerun.scan == prediction.scan and rerun.status == "queued"
        assert rerun.requested_model == (model if reference else None)
    unknown = api.post(f"/api/v1/predictions/{prediction.pk}/rerun/", {"model": "nope"}, format="json")
    assert_error(unknown, 400, "model")
    # Each re-run superseded the one before it; the last is the scan's current prediction.
    current = api.get("/api/v1/predictions/", {"current": "true"}).json()["results"]
    assert [item["id"] for item in current] == [rerun.pk] and current[0]["superseded_at"] is None
    earlier = api.get("/api/v1/predictions/", {"current": "false"}).json()["results"]
    assert len(earlier) == 3 and all(item["superseded_at"] for item in earlier)
    assert_error(api.get("/api/v1/predictions/", {"current": "maybe"}), 400, "current")


def test_prediction_review_records_the_decision(api, prediction, clinician):
    payload = {
        "decision": "override",
        "final_label": "normal",
        "comment": "Disc height preserved.",
        "levels": [{"level": "L4-L5", "grade": 2}],
    }
    response = api.post(f"/api/v1/predictions/{prediction.pk}/review/", payload, format="json")
    assert response.status_code == 201
    review = Review.objects.get(pk=response.json()["id"])
    assert (review.reviewer, review.final_label, review.comment) == (clinician, "normal", payload["comment"])
    assert api.get(f"/api/v1/predictions/{prediction.pk}/").json()["review"]["decision"] == "override"
    again = api.post(f"/api/v1/predictions/{prediction.pk}/review/", {"decision": "agree"}, format="json")
    assert again.status_code == 201
    assert (again.json()["version"], again.json()["reviewer"]) == (2, clinician.username)
    current = api.get(f"/api/v1/predictions/{prediction.pk}/").json()["review"]
    assert (current["decision"], current["version"]) == ("agree", 2)
    review.refresh_from_db()
    assert review.decision == "override", "the first version is kept as it was"


def test_prediction_review_validation_errors(api, case):
    """A prediction without levels is reviewed as a whole (tests/api/test_review_levels.py has the rest)."""
    prediction = PredictionFactory(scan=ScanFactory(case=case), status="done", label="ddd", probability=0.8)
    url = f"/api/v1/predictions/{prediction.pk}/review/"
    assert_error(api.post(url, {}, format="json"), 400, "decision")
    assert_error(api.post(url, {"decision": "maybe"}, format="json"), 400, "decision")
    assert_error(api.post(url, {"decision": "override"}, format="json"), 400, "final_label")
    assert_error(
        api.post(url, {"decision": "override", "final_label": "ddd"}, format="json"), 400, "final_label"
    )
    queued = PredictionFactory(scan=ScanFactory(case=case))
    not_done = api.post(f"/api/v1/predictions/{queued.pk}/review/", {"decision": "agree"}, format="json")
    assert_error(not_done, 400, "prediction")
    assert not Review.objects.exists()
