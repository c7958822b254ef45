"""Every clinician page and admin list runs the same few queries at 5 rows as at 200: nothing is loaded
per row, so the count cannot grow with a hospital's data."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.bulk import Hospital

SIZES = (5, 200)


@pytest.fixture
def hospital(clinician, other_clinician) -> Hospital:
    return Hospital(clinician, other_clinician)


def assert_constant_queries(client, hospital: Hospital, path, bound: int, django_assert_max_num_queries):
    """GET the path (a string, or a function of the hospital) at each size under the same bound."""
    for size in SIZES:
        hospital.grow(size)
        url = path(hospital) if callable(path) else path
        with django_assert_max_num_queries(bound):
            response = client.get(url)
        assert response.status_code == 200, url


CLINICIAN_PAGES = [
    ("/", 10),
    ("/patients/", 6),
    ("/patients/?q=bulk", 7),
    (lambda hospital: f"/patients/{hospital.patient.pk}/", 8),
    (lambda hospital: f"/patients/{hospital.patient.pk}/?page=2", 8),
    ("/models/", 6),
    (lambda hospital: f"/models/{hospital.model_version.pk}/", 6),
]


@pytest.mark.parametrize(("path", "bound"), CLINICIAN_PAGES)
def test_clinician_pages_run_as_many_queries_at_200_rows_as_at_5(
    client, clinician, hospital, path, bound, django_assert_max_num_queries
):
    client.force_login(clinician)
    assert_constant_queries(client, hospital, path, bound, django_assert_max_num_queries)


@pytest.mark.parametrize(("path", "bound"), [("/", 10), ("/patients/", 5), ("/models/", 6)])
def test_staff_pages_run_as_many_queries_at_200_rows_as_at_5(
    client, staff, hospital, path, bound, django_assert_max_num_queries
):
    client.force_login(staff)
    assert_constant_queries(client, hospital, path, bound, django_assert_max_num_queries)


ADMIN_CHANGELISTS = sorted(
    f"{model._meta.app_label}_{model._meta.model_name}" for model in admin.site._registry
)


@pytest.mark.parametrize("name", ADMIN_CHANGELISTS)
def test_admin_changelists_run_as_many_queries_at_200_rows_as_at_5(
    client, staff, hospital, name, django_assert_max_num_queries
):
    client.force_login(staff)
    path = reverse(f"admin:{name}_changelist")
    assert_constant_queries(client, hospital, path, 8, django_assert_max_num_queries)


def test_patient_page_pages_through_the_cases(client, clinician, hospital):
    hospital.grow(30)  # the patient's case, 30 more, and 30 of a colleague's referred to the clinician
    client.force_login(clinician)
    pages = [client.get(f"/patients/{hospital.patient.pk}/", {"page": number}) for number in (1, 2, 3)]
    cases = [list(response.context["page"].object_list) for response in pages]
    assert [len(page) for page in cases] == [25, 25, 11]
    assert len({case.pk for page in cases for case in page}) == 61
    assert "Page 1 of 3 (61 cases)" in pages[0].content.decode()
    scan_counts = {case.pk: case.scan_count for page in cases for case in page}
    assert scan_counts[hospital.case.pk] == 31 and sorted(set(scan_counts.values())) == [0, 31]


def test_patient_list_counts_the_cases_the_clinician_sees(client, clinician, hospital):
    hospital.grow(5)
    client.force_login(clinician)
    page = client.get("/patients/").context["page"]
    counts = {patient.identifier: patient.case_count for patient in page.object_list}
    # Their first patient: its own case, 5 more, and 5 of a colleague: all, since they registered it.
    assert counts == {"BULK-0000": 11, "BULK-0001": 1, "BULK-0002": 1, "BULK-0003": 1, "BULK-0004": 1}


def test_models_page_counts_reviews_and_overrides_again_after_a_new_review(client, clinician, hospital):
    from tests.bulk import bulk_scans

    hospital.grow(5)
    client.force_login(clinician)
    version = client.get("/models/").context["versions"]
    counts = {v.pk: (v.review_count, v.override_count) for v in version}
    # The five patients' single predictions, and every other one of the big case's five more.
    assert counts[hospital.model_version.pk] == (8, 8)
    bulk_scans(hospital.case, 2, start=100, model_version=hospital.model_version)
    version = client.get("/models/").context["versions"]
    counts = {v.pk: (v.review_count, v.override_count) for v in version}
    assert counts[hospital.model_version.pk] == (9, 9)


@pytest.mark.parametrize("path", ["/", "/patients/", "/api/v1/predictions/"])
def test_the_clinicians_group_is_looked_up_once_per_request(client, clinician, hospital, path):
    hospital.grow(5)
    client.force_login(clinician)
    with CaptureQueriesContext(connection) as captured:
        assert client.get(path).status_code == 200
    assert sum("auth_user_groups" in query["sql"] for query in captured.captured_queries) == 1
