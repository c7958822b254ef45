from __future__ import annotations

from diagnosis.models import Prediction, PredictionExclusion
from diagnosis.services.cases import case_refresh_status
from diagnosis.services.predictions import prediction_request
from tests.factories import CaseFactory, PredictionFactory, ScanFactory


def test_worklist_shows_my_open_cases_waiting_reviews_failures_and_counts(client, clinician):
    case = CaseFactory(owner=clinician, patient__identifier="P-OPEN")
    CaseFactory(owner=clinician, status="signed_off", patient__identifier="P-SIGNED")
    others = CaseFactory(patient__identifier="P-OTHERS")
    for status in ("done", "failed", "queued"):  # another clinician's: in none of the counts
        scan = ScanFactory(case=others)
        PredictionFactory(scan=scan, status=status, label="ddd", probability=0.7, error="x")
    waiting = PredictionFactory(
        scan=ScanFactory(case=case, original_name="waiting.png"), status="done", label="ddd", probability=0.8
    )
    PredictionFactory(
        scan=ScanFactory(case=case, original_name="broken.png"), status="failed", error="no active model"
    )
    set_aside = PredictionFactory(scan=ScanFactory(case=case), status="done", label="normal", probability=0.1)
    PredictionExclusion.objects.create(prediction=set_aside, reason="Wrong slice.", excluded_by=clinician)
    for written_directly in (case, others):  # the services count a case's predictions as they change them
        case_refresh_status(case_id=written_directly.pk)
    client.force_login(clinician)
    response = client.get("/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "P-OPEN" in html and "P-SIGNED" not in html and "P-OTHERS" not in html
    assert f'href="/predictions/{waiting.pk}/"' in html and "no active model" in html
    assert f'href="/predictions/{set_aside.pk}/"' not in html  # marked not used: nothing to review
    counts = response.context["counts"]
    assert counts == {"open_cases": 1, "awaiting_review": 1, "in_progress": 0, "failed": 1}


def test_a_rerun_takes_its_earlier_results_off_the_worklist(client, clinician):
    """A failure run again, or a finished result run again, is history: the worklist shows and counts the
    scan's current prediction only."""
    case = CaseFactory(owner=clinician)
    broken = PredictionFactory(scan=ScanFactory(case=case), status="failed", error="no active model")
    finished = PredictionFactory(scan=ScanFactory(case=case), status="done", label="ddd", probability=0.8)
    case_refresh_status(case_id=case.pk)  # as the services do when they change a case's predictions
    client.force_login(clinician)
    before = client.get("/").context["counts"]
    assert (before["failed"], before["awaiting_review"]) == (1, 1)

    again = [prediction_request(user=clinician, scan=p.scan) for p in (broken, finished)]

    response = client.get("/")
    html = response.content.decode()
    assert response.context["counts"] == {
        "open_cases": 1,
        "awaiting_review": 0,
        "in_progress": 2,
        "failed": 0,
    }
    assert "no active model" not in html and f'href="/predictions/{finished.pk}/"' not in html
    assert all(
        p.superseded_at is not None for p in Prediction.objects.filter(pk__in=[broken.pk, finished.pk])
    )
    assert not any(p.superseded_at for p in Prediction.objects.filter(pk__in=[p.pk for p in again]))
