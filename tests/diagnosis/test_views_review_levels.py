"""The per-level review on the case page (a grade select per level, preset to the model's grade), what the
page shows once reviewed, and the models page's count of levels reviewed and grades changed."""

from __future__ import annotations

from django.db import connection
from django.test.utils import CaptureQueriesContext

from diagnosis.models import Review
from diagnosis.selectors import model_level_review_counts
from diagnosis.services.reviews import review_create
from ml.models import ModelVersion
from tests.factories import ModelVersionFactory, done_prediction


def grade_select(prediction, level: str) -> str:
    return f'name="review-{prediction.pk}-grade-{level}"'


def test_the_review_form_has_a_grade_select_per_level_preset_to_the_models_grade(client, clinician):
    prediction = done_prediction(clinician)
    client.force_login(clinician)
    html = client.get(f"/cases/{prediction.scan.case_id}/").content.decode()
    for level, grade in [("L3-L4", 2), ("L4-L5", 3), ("L5-S1", 2)]:
        start = html.index(grade_select(prediction, level))
        select = html[start : html.index("</select>", start)]
        assert f'data-model-grade="{grade}"' in select and f'<option value="{grade}" selected>' in select
    assert f'name="review-{prediction.pk}-decision"' not in html, "the decision follows the grades"


def test_a_corrected_grade_is_saved_and_the_image_decision_follows(client, clinician):
    prediction = done_prediction(clinician)
    client.force_login(clinician)
    data = {
        f"review-{prediction.pk}-grade-L3-L4": "2",
        f"review-{prediction.pk}-grade-L4-L5": "2",
        f"review-{prediction.pk}-grade-L5-S1": "2",
        f"review-{prediction.pk}-comment": "Disc hydrated.",
    }
    response = client.post(f"/predictions/{prediction.pk}/review/", data)
    assert response.status_code == 302, response.content.decode()[-2000:]
    review = Review.objects.get()
    assert (review.decision, review.final_label) == ("override", "normal")
    html = client.get(f"/cases/{prediction.scan.case_id}/").content.decode()
    assert "L4-L5: grade <strong>2</strong> (model 3, corrected)" in html
    assert "L3-L4: grade <strong>2</strong> (model's grade confirmed)" in html
    # Amending starts from one's own grades.
    start = html.index(grade_select(prediction, "L4-L5"))
    assert '<option value="2" selected>' in html[start : html.index("</select>", start)]


def test_a_bad_grade_is_told_with_the_level_and_kept_in_the_form(client, clinician):
    prediction = done_prediction(clinician)
    client.force_login(clinician)
    data = {f"review-{prediction.pk}-grade-L4-L5": "9"}
    response = client.post(f"/predictions/{prediction.pk}/review/", data)
    assert response.status_code == 400
    assert "Choose a Pfirrmann grade from 1 to 5 for L4-L5." in response.content.decode()
    assert not Review.objects.exists()


def test_models_page_counts_levels_reviewed_and_grades_changed_per_model(client, clinician):
    ModelVersion.objects.update(is_active=False)
    model = ModelVersionFactory(name="invgg-levels", is_active=True)
    for corrected in (2, 3):  # L4-L5: changed once, confirmed once
        prediction = done_prediction(clinician, model_version=model)
        review_create(user=clinician, prediction=prediction, levels=[{"level": "L4-L5", "grade": corrected}])
    amended = done_prediction(clinician, model_version=model)
    review_create(user=clinician, prediction=amended, levels=[{"level": "L3-L4", "grade": 5}])
    review_create(user=clinician, prediction=amended, decision="agree")  # only the current version counts
    with CaptureQueriesContext(connection) as queries:
        counts = model_level_review_counts()
    assert len(queries) == 1
    assert [(row.level, row.reviewed, row.changed) for row in counts[model.pk]] == [
        ("L3-L4", 3, 0),
        ("L4-L5", 3, 1),
        ("L5-S1", 3, 0),
    ]
    client.force_login(clinician)
    html = client.get("/models/").content.decode()
    assert '<th scope="row">L4-L5</th><td>3</td><td>1</td><td>33%</td>' in html
    assert "<td>1 of 9</td>" in html


def test_the_case_history_lists_the_grade_given_at_each_level(client, clinician):
    prediction = done_prediction(clinician)
    review = review_create(user=clinician, prediction=prediction, levels=[{"level": "L4-L5", "grade": 2}])
    client.force_login(clinician)
    html = client.get(f"/cases/{prediction.scan.case_id}/history/").content.decode()
    assert f"Review {review.pk}: grade 2 at L4-L5 created" in html
    assert f"Review {review.pk}: grade 2 at L3-L4 created" in html
    timeline = client.get(f"/cases/{prediction.scan.case_id}/").content.decode()
    assert f"Review {review.pk}: grade" not in timeline, "the timeline tells the review, not each grade"
