"""Every /api/v1/ list runs the same few queries for a page of 25 at 5 rows as at 200: each row's related
records come in with the page (select_related, prefetch_related), never one query per row."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from diagnosis.api.pagination import CachedCountPaginator, Pagination
from diagnosis.models import Prediction
from diagnosis.services.accounts import token_create
from tests.bulk import Hospital
from tests.factories import PredictionFactory, ScanFactory

LISTS = [
    ("/api/v1/patients/", 5),
    ("/api/v1/patients/?search=bulk", 6),
    ("/api/v1/cases/", 6),
    ("/api/v1/cases/?ordering=-updated_at", 6),
    (lambda hospital: f"/api/v1/cases/?patient={hospital.patient.pk}", 6),
    (lambda hospital: f"/api/v1/cases/{hospital.case.pk}/scans/", 8),
    (lambda hospital: f"/api/v1/cases/{hospital.case.pk}/series/", 7),
    ("/api/v1/incoming/", 5),
    # a prediction's model versions, levels, reviews, review levels and exclusion each come in one query of
    # their own: joined into the page's query they cost PostgreSQL more planning than these queries in all
    ("/api/v1/predictions/", 10),
    ("/api/v1/predictions/?status=done&ordering=-queued_at", 10),
    (lambda hospital: f"/api/v1/predictions/?case={hospital.case.pk}", 10),
    ("/api/v1/models/", 4),
]


@pytest.mark.parametrize(("path", "bound"), LISTS)
def test_api_lists_run_as_many_queries_at_200_rows_as_at_5(
    api, clinician, other_clinician, path, bound, django_assert_max_num_queries
):
    hospital = Hospital(clinician, other_clinician)
    for size in (5, 200):
        hospital.grow(size)
        url = path(hospital) if callable(path) else path
        with django_assert_max_num_queries(bound):
            response = api.get(url)
        assert response.status_code == 200, response.content
        assert len(response.json()["results"]) == min(25, response.json()["count"])


def test_case_scans_list_gives_each_scans_uploader_and_predictions(api, clinician, other_clinician):
    hospital = Hospital(clinician, other_clinician).grow(5)
    scans = api.get(f"/api/v1/cases/{hospital.case.pk}/scans/").json()["results"]
    assert len(scans) == 6
    assert {scan["uploaded_by"] for scan in scans} == {clinician.username}
    assert all(len(scan["predictions"]) == 1 and scan["predictions"][0]["label"] == "ddd" for scan in scans)


def test_a_large_count_is_counted_once_for_a_few_seconds_and_a_small_one_always(
    api, clinician, other_clinician, monkeypatch
):
    monkeypatch.setattr(CachedCountPaginator, "LARGE_COUNT", 10)
    hospital = Hospital(clinician, other_clinician)
    hospital.grow(12)
    large = api.get("/api/v1/predictions/").json()["count"]
    with CaptureQueriesContext(connection) as again:
        assert api.get("/api/v1/predictions/").json()["count"] == large >= 10
    assert not any("COUNT(" in query["sql"] for query in again.captured_queries)
    small = api.get("/api/v1/predictions/?status=failed").json()["count"]
    assert small < 10
    PredictionFactory(scan=ScanFactory(case=hospital.case), status="failed", error="Out of memory.")
    assert api.get("/api/v1/predictions/?status=failed").json()["count"] == small + 1


def test_a_cached_count_is_kept_per_user_and_filter_and_shared_by_the_pages_of_one_list(
    api, clinician, other_clinician, monkeypatch
):
    monkeypatch.setattr(CachedCountPaginator, "LARGE_COUNT", 10)
    monkeypatch.setattr(Pagination, "page_size", 5)
    hospital = Hospital(clinician, other_clinician)
    hospital.grow(12)
    assert api.get("/api/v1/predictions/").json()["count"] >= 10
    with CaptureQueriesContext(connection) as second_page:
        api.get("/api/v1/predictions/?page=2")
    assert not any("COUNT(" in query["sql"] for query in second_page.captured_queries)
    # The colleague's own count, not the clinician's cached one: they see only their own predictions.
    colleague = APIClient()
    colleague.credentials(HTTP_AUTHORIZATION=f"Token {token_create(user=other_clinician).token}")
    own = Prediction.objects.filter(scan__case__owner=other_clinician).count()
    assert colleague.get("/api/v1/predictions/").json()["count"] == own
    # A filter counts its own rows.
    case_count = Prediction.objects.filter(scan__case=hospital.case).count()
    assert case_count >= 10
    assert api.get(f"/api/v1/predictions/?case={hospital.case.pk}").json()["count"] == case_count
