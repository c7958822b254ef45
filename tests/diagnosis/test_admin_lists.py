"""The admin lists of the big tables: counted once, estimated when a whole big table is listed on
PostgreSQL, and the scan list's modality filter without a scan of every row."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from diagnosis import admin as diagnosis_admin
from diagnosis.models import Scan
from tests.bulk import bulk_scans
from tests.factories import CaseFactory

pytestmark = pytest.mark.django_db

postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's row estimate")


def _counts(captured) -> list[str]:
    return [query["sql"] for query in captured.captured_queries if "COUNT(" in query["sql"].upper()]


def test_scan_modality_filter_offers_modalities_and_filters_without_distinct(client, staff, clinician):
    case = CaseFactory(owner=clinician)
    bulk_scans(case, 4)
    Scan.objects.filter(pk__in=Scan.objects.order_by("pk").values("pk")[:1]).update(modality="MR")
    client.force_login(staff)
    with CaptureQueriesContext(connection) as captured:
        listed = client.get("/admin/diagnosis/scan/")
    assert "?modality=MR" in listed.content.decode() and "?modality=none" in listed.content.decode()
    assert not [query for query in captured.captured_queries if "DISTINCT" in query["sql"].upper()]
    assert listed.context["cl"].result_count == 4
    assert client.get("/admin/diagnosis/scan/", {"modality": "MR"}).context["cl"].result_count == 1
    assert client.get("/admin/diagnosis/scan/", {"modality": "none"}).context["cl"].result_count == 3
    assert client.get("/admin/diagnosis/scan/", {"modality": "CT"}).context["cl"].result_count == 0


def test_prediction_list_counts_once(client, staff, clinician):
    bulk_scans(CaseFactory(owner=clinician), 3)
    client.force_login(staff)
    with CaptureQueriesContext(connection) as captured:
        response = client.get("/admin/diagnosis/prediction/", {"status__exact": "done"})
    assert response.context["cl"].result_count == 3
    assert len(_counts(captured)) == 1  # no second count of the whole table for "3 of N"


@postgres_only
def test_a_whole_big_table_is_counted_from_the_estimate_and_a_filtered_list_exactly(
    client, staff, clinician, monkeypatch
):
    bulk_scans(CaseFactory(owner=clinician), 3)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE diagnosis_prediction")
    monkeypatch.setattr(diagnosis_admin, "ESTIMATED_COUNT_FROM", 1)
    client.force_login(staff)
    with CaptureQueriesContext(connection) as captured:
        whole = client.get("/admin/diagnosis/prediction/")
    assert whole.context["cl"].result_count == 3
    assert not _counts(captured) and any("reltuples" in q["sql"] for q in captured.captured_queries)
    with CaptureQueriesContext(connection) as captured:
        filtered = client.get("/admin/diagnosis/prediction/", {"status__exact": "queued"})
    assert filtered.context["cl"].result_count == 0 and len(_counts(captured)) == 1


@postgres_only
def test_a_small_table_is_counted_exactly(client, staff, clinician):
    bulk_scans(CaseFactory(owner=clinician), 3)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE diagnosis_prediction")
    client.force_login(staff)
    with CaptureQueriesContext(connection) as captured:
        assert client.get("/admin/diagnosis/prediction/").context["cl"].result_count == 3
    assert len(_counts(captured)) == 1
