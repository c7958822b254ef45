"""GET /api/v1/cases/{id}/history/: the case's changes and accesses, paginated, newest first."""

from __future__ import annotations

import pytest

from diagnosis.models import AccessEvent
from tests.api.conftest import assert_error

pytestmark = pytest.mark.django_db


def test_history_lists_changes_with_who_and_what(api, prediction, clinician):
    case = prediction.scan.case
    api.patch(f"/api/v1/cases/{case.pk}/", {"notes": "Seen in clinic"}, format="json")
    api.post(f"/api/v1/predictions/{prediction.pk}/review/", {"decision": "agree"}, format="json")
    api.get(f"/api/v1/scans/{prediction.scan_id}/file")

    body = api.get(f"/api/v1/cases/{case.pk}/history/").json()
    entries = body["results"]
    assert body["count"] == len(entries)
    assert set(entries[0]) == {
        "at",
        "user",
        "kind",
        "object_type",
        "object_id",
        "action",
        "summary",
        "changes",
    }
    assert [(e["kind"], e["action"], e["user"]) for e in entries[:2]] == [
        ("access", "view_history", clinician.username),
        ("access", "download_scan", clinician.username),
    ]
    change = next(e for e in entries if e["object_type"] == "case" and e["action"] == "changed")
    assert change["user"] == clinician.username
    assert {"field": "notes", "old": "", "new": "Seen in clinic"} in change["changes"]
    review = next(e for e in entries if e["object_type"] == "review")
    assert (review["action"], review["user"]) == ("created", clinician.username)
    assert AccessEvent.objects.filter(action=AccessEvent.Action.VIEW_HISTORY, case=case).count() == 1


def test_history_is_paginated(api, case):
    for _ in range(30):
        api.get(f"/api/v1/cases/{case.pk}/")
    first = api.get(f"/api/v1/cases/{case.pk}/history/", {"page_size": 10}).json()
    assert len(first["results"]) == 10 and first["next"]
    assert first["count"] >= 31
    assert_error(api.get(f"/api/v1/cases/{case.pk}/history/", {"page": 99}), 404)


def test_history_of_someone_elses_case_is_404(api, others_prediction):
    assert_error(api.get(f"/api/v1/cases/{others_prediction.scan.case_id}/history/"), 404)
    assert not AccessEvent.objects.exists()


@pytest.mark.parametrize(
    "url, action",
    [
        ("/api/v1/cases/{case}/", "view_case"),
        ("/api/v1/cases/{case}/scans/", "view_case"),
        ("/api/v1/predictions/{prediction}/", "view_prediction"),
        ("/api/v1/scans/{scan}/", "view_scan"),
        ("/api/v1/scans/{scan}/file", "download_scan"),
        ("/api/v1/predictions/{prediction}/heatmap", "view_heatmap"),
        ("/api/v1/patients/{patient}/", "view_patient"),
    ],
)
def test_every_view_and_download_is_in_the_access_log(api, prediction, clinician, url, action):
    scan = prediction.scan
    ids = {
        "case": scan.case_id,
        "scan": scan.pk,
        "prediction": prediction.pk,
        "patient": scan.case.patient_id,
    }
    assert api.get(url.format(**ids)).status_code == 200
    event = AccessEvent.objects.get()
    assert (event.user, event.action, event.patient_id) == (clinician, action, scan.case.patient_id)


def test_a_patient_search_is_in_the_access_log(api, clinician):
    api.get("/api/v1/patients/", {"search": "MRN-1"})
    api.get("/api/v1/patients/")
    event = AccessEvent.objects.get()
    assert (event.action, event.detail) == ("search_patients", "MRN-1")
