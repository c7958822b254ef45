"""The case page at scale: one page of scans at a time, the same number of queries whatever the case
holds, superseded runs folded away with the current one marked, and status.json answering only what
changed since the last poll."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from diagnosis.models import Prediction, Referral, Review
from diagnosis.services.reviews import review_create
from diagnosis.views import CASE_PAGE_SCANS
from tests.dicom_data import dicom_bytes, mr_series
from tests.factories import (
    CaseFactory,
    ModelVersionFactory,
    PredictionFactory,
    ScanFactory,
    add_levels,
)


def fill(case, clinician, count: int) -> list[Prediction]:
    """`count` scans, each with a finished prediction with levels; every other one reviewed, every third
    one re-run (its first run superseded), and a second opinion on the first."""
    model = ModelVersionFactory()
    predictions = []
    for index in range(count):
        scan = ScanFactory(case=case)
        prediction = PredictionFactory(
            scan=scan, status="done", label="ddd", probability=0.7, model_version=model
        )
        add_levels(prediction)
        if index % 2 == 0:
            review_create(user=clinician, prediction=prediction, levels=[{"level": "L4-L5", "grade": 2}])
        if index % 3 == 0:
            prediction = PredictionFactory(scan=scan, status="done", label="normal", probability=0.2)
        predictions.append(prediction)
    return predictions


def page_queries(client, case, django_assert_max_num_queries, limit: int) -> str:
    with django_assert_max_num_queries(limit):
        response = client.get(f"/cases/{case.pk}/")
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.parametrize("count", [5, 30])
def test_the_case_page_uses_the_same_bounded_number_of_queries(
    client, case, clinician, other_clinician, count, django_assert_max_num_queries
):
    predictions = fill(case, clinician, count)
    referral = Referral.objects.create(case=case, clinician=other_clinician, referred_by=clinician)
    first = Prediction.objects.filter(scan=predictions[0].scan).order_by("queued_at").first()
    Review.objects.create(
        prediction=first,
        reviewer=other_clinician,
        kind=Review.Kind.SECOND_OPINION,
        referral=referral,
        decision="agree",
        final_label="ddd",
    )
    client.force_login(clinician)
    client.get(f"/cases/{case.pk}/")  # the session and the clinicians group settle on the first request
    # 13 whatever the case holds: session, user (with the clinicians-group check), case (with its count
    # of scans and whether it has series or reports), the access log, the page of scans, their
    # predictions, reviews, review grades and levels, the unsettled predictions (sign-off blockers and
    # the next result to review), model versions, the timeline (one UNION of the history tables) and
    # referrals.
    html = page_queries(client, case, django_assert_max_num_queries, 13)
    shown = min(count, CASE_PAGE_SCANS)
    assert html.count('class="scan-card card"') == shown
    assert html.count('data-field="current"') == shown
    assert f"of {count}" in html or count <= CASE_PAGE_SCANS


def test_a_series_adds_two_queries_to_the_case_page(client, case, clinician, django_assert_max_num_queries):
    fill(case, clinician, 5)
    client.force_login(clinician)
    files = [SimpleUploadedFile(f"IM{i}.dcm", dicom_bytes(ds)) for i, ds in enumerate(mr_series(5))]
    client.post(f"/cases/{case.pk}/upload/", {"file": files}, HTTP_ACCEPT="application/json")
    # The series and its slices; the slices' predictions come with those of the page's scans.
    html = page_queries(client, case, django_assert_max_num_queries, 15)
    assert "Series T2 TSE SAG" in html and html.count('class="scan-card card"') == 5


def test_query_count_does_not_grow_with_the_predictions(client, clinician):
    counts = []
    for count in (5, 30):
        case = CaseFactory(owner=clinician)
        fill(case, clinician, count)
        client.force_login(clinician)
        client.get(f"/cases/{case.pk}/")
        with CaptureQueriesContext(connection) as queries:
            assert client.get(f"/cases/{case.pk}/").status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1], counts


def test_later_pages_hold_older_scans_and_a_review_lands_on_its_page(client, case, clinician):
    predictions = fill(case, clinician, CASE_PAGE_SCANS + 3)
    client.force_login(clinician)
    second = client.get(f"/cases/{case.pk}/?page=2").content.decode()
    assert second.count('class="scan-card card"') == 3
    assert f"Scans {CASE_PAGE_SCANS + 1}–{CASE_PAGE_SCANS + 3} of {CASE_PAGE_SCANS + 3}" in second
    oldest = predictions[1]  # not re-run, not reviewed
    assert f'id="prediction-{oldest.pk}"' in second
    response = client.post(f"/predictions/{oldest.pk}/review/", {f"review-{oldest.pk}-decision": "agree"})
    assert response["Location"] == f"/cases/{case.pk}/?page=2#prediction-{oldest.pk}"
    bad = client.post(f"/predictions/{oldest.pk}/review/", {f"review-{oldest.pk}-grade-L4-L5": "7"})
    assert bad.status_code == 400 and f'id="prediction-{oldest.pk}"' in bad.content.decode()


def test_superseded_runs_are_folded_away_and_the_current_one_marked(client, case, clinician):
    scan = ScanFactory(case=case)
    vgg, invgg = ModelVersionFactory(name="vgg-a"), ModelVersionFactory(name="invgg-b")
    old = PredictionFactory(scan=scan, status="done", label="ddd", probability=0.8, model_version=vgg)
    PredictionFactory(scan=scan, status="done", label="normal", probability=0.3, model_version=invgg)
    client.force_login(clinician)
    html = client.get(f"/cases/{case.pk}/").content.decode()
    folded = html[html.index('data-field="superseded"') :]
    assert "Earlier runs (1)" in folded and f'id="prediction-{old.pk}"' in folded
    assert html.count('data-field="current">current<') == 1
    assert "Models disagree on this scan:" in html
    assert "invgg-b says Normal; vgg-a says Degenerative disc disease" in html


def test_status_json_answers_only_what_changed_since_the_cursor(
    client, case, clinician, django_assert_max_num_queries
):
    done = PredictionFactory(scan=ScanFactory(case=case), status="done", label="ddd", probability=0.7)
    running = PredictionFactory(scan=ScanFactory(case=case), status="running")
    Prediction.objects.update(queued_at=timezone.now() - timedelta(minutes=10))
    Prediction.objects.filter(pk=done.pk).update(finished_at=timezone.now() - timedelta(minutes=9))
    client.force_login(clinician)
    url = f"/cases/{case.pk}/status.json"
    client.get(url)  # the session settles
    # Session, user, case, sign-off blockers, predictions, their reviews with reviewers.
    with django_assert_max_num_queries(6):
        everything = client.get(url).json()
    assert {row["id"] for row in everything["predictions"]} == {done.pk, running.pk}
    since = client.get(url, {"since": (timezone.now() - timedelta(minutes=1)).isoformat()}).json()
    assert since["predictions"] == [] and since["cursor"]
    Prediction.objects.filter(pk=running.pk).update(
        status="done", label="normal", probability=0.1, finished_at=timezone.now()
    )
    changed = client.get(url, {"since": since["cursor"]}).json()
    assert [(row["id"], row["status"]) for row in changed["predictions"]] == [(running.pk, "done")]
    review_create(user=clinician, prediction=done, decision="agree")
    reviewed = client.get(url, {"since": changed["cursor"]}).json()
    assert {row["id"] for row in reviewed["predictions"]} >= {done.pk}
    assert client.get(url, {"since": "yesterday"}).status_code == 400
