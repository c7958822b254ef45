"""bench/scale.py at a tiny size: its seeding satisfies the models, its routes cover every page and list,
and its figures have the shape the issue names (timings themselves are never asserted)."""

from __future__ import annotations

import os

import pytest

from bench import scale
from diagnosis.models import Case, Prediction, PredictionExclusion, PredictionLevel, Review
from diagnosis.selectors import case_prediction_counts
from tests.conftest import database_url

TINY = {"patients": 4, "cases": 8, "scans": 20, "reviews": 6}
BIG_CASES = (1, 2, 4)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def population():
    return scale.seed(counts=TINY, big_cases=BIG_CASES)


def test_seed_writes_the_requested_rows(population):
    assert population.counts == {
        "patients": 4,
        "cases": 8,
        "scans": 1 + 2 + 4 + 20 - 7,
        "predictions": 20,
        "reviews": 6,
        "exclusions": PredictionExclusion.objects.count(),
    }
    assert {size: Case.objects.get(pk=pk).scans.count() for size, pk in population.big_cases.items()} == {
        1: 1,
        2: 2,
        4: 4,
    }
    assessable = Prediction.objects.filter(status=Prediction.Status.DONE, probability__isnull=False)
    assert PredictionLevel.objects.count() == 3 * assessable.count()
    assert not Review.objects.exclude(prediction__status=Prediction.Status.DONE).exists()
    assert Case.objects.filter(owner=population.clinician).count() >= 3


def test_seeded_exclusions_and_case_counts_follow_the_platform_rules():
    population = scale.seed(
        counts={"patients": 20, "cases": 40, "scans": 400, "reviews": 60}, big_cases=BIG_CASES
    )

    exclusions = PredictionExclusion.objects.select_related("prediction__scan__case")
    assert population.counts["exclusions"] == exclusions.count() > 0
    for exclusion in exclusions:
        prediction = exclusion.prediction
        assert prediction.status == Prediction.Status.FAILED or (
            prediction.label == Prediction.Label.NOT_ASSESSABLE
        )
        assert not prediction.reviews.exists() and exclusion.reason
        assert exclusion.excluded_by_id == prediction.scan.case.owner_id
    # The counts the seed writes in bulk are the ones the platform's own rule gives.
    for case in Case.objects.all():
        counts = case_prediction_counts(case=case)
        assert {name: getattr(case, name) for name in counts} == counts


def test_routes_cover_pages_api_lists_and_admin(population):
    keys = {route.key for route in scale.all_routes(population)}
    assert {"/", "/patients/", "/patients/<id>/", "/models/", "/cases/<id>/ (4 scans)"} <= keys
    assert {"/patients/<id>/edit/", "/models/<id>/", "/cases/<id>/edit/ (2 scans)"} <= keys
    assert {
        "/cases/<id>/status.json (1 scans)",
        "/api/v1/predictions/",
        "/admin/diagnosis/prediction/",
    } <= keys
    assert {"/api/v1/predictions/?ordering=-queued_at", "/api/v1/predictions/?status=done"} <= keys
    assert "/api/v1/cases/<id>/scans/?ordering=uploaded_at (4 scans)" in keys


def test_figures_have_the_issue_shape(population):
    measured = ("/", "/api/v1/cases/", "/cases/<id>/upload/ (1 scans)")
    routes = [route for route in scale.all_routes(population) if route.key in measured]
    assert len(routes) == 3
    routes += scale.admin_routes()[:1]
    pages = scale.measure_pages(population, routes, "S", repeats=1)
    # The upload route takes only POST: left out, not a failure.
    assert set(pages) == {
        "clinician /",
        "clinician /api/v1/cases/",
        "staff /",
        "staff /api/v1/cases/",
        f"staff {routes[-1].key}",
    }
    for figures in pages.values():
        assert set(figures) == {"S"}
        assert set(figures["S"]) == {"queries", "ms"}
        assert figures["S"]["queries"] > 0 and figures["S"]["ms"] > 0

    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DJANGO_SETTINGS_MODULE": "lumbar_platform.settings.base",
    }
    lists = [route for route in scale.api_list_routes(population) if route.plain_list]
    assert {route.key for route in lists} >= {"/api/v1/predictions/", "/api/v1/cases/<id>/scans/ (4 scans)"}
    load = scale.measure_load(population, env, seconds=0.5, workers=1, routes=lists[:2])
    assert set(load) == {route.key for route in lists[:2]}
    for figures in load.values():
        assert set(figures) == {"rps", "p50_ms", "p95_ms"}
        assert figures["rps"] > 0 and 0 < figures["p50_ms"] <= figures["p95_ms"]
