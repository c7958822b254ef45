"""Patient search by part of the identifier or name, whatever the case; on PostgreSQL answered from the
trigram indexes rather than by reading every patient."""

from __future__ import annotations

import pytest
from django.db import connection

from diagnosis.models import Patient
from diagnosis.selectors import patient_search
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db


def test_search_finds_part_of_the_identifier_or_the_name_whatever_the_case():
    PatientFactory(identifier="MRN-77120", name="Dewi Lestari")
    PatientFactory(identifier="MRN-88000", name="Budi Santoso")
    found = patient_search(queryset=Patient.objects.all(), search="7712")
    assert [patient.identifier for patient in found] == ["MRN-77120"]
    found = patient_search(queryset=Patient.objects.all(), search="santOS")
    assert [patient.name for patient in found] == ["Budi Santoso"]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="trigram indexes are PostgreSQL's")
def test_search_on_postgresql_uses_the_trigram_indexes():
    PatientFactory(identifier="MRN-77120", name="Dewi Lestari")
    # Unordered, as the list's page count asks (a page in identifier order may walk that index instead).
    query = patient_search(queryset=Patient.objects.order_by(), search="lestari")
    sql, params = query.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a table this small would be read whole
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "diagnosis_patient_identifier_trgm" in plan and "diagnosis_patient_name_trgm" in plan
