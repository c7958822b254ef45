"""The incoming list: series received for no case, shown with the identifiers in their files until someone
attaches them to a case (page and API)."""

from __future__ import annotations

from pathlib import Path

import pytest
from rest_framework.test import APIClient

from diagnosis.dicom.receiver import ReceivedFolder, mark_complete
from diagnosis.models import IncomingSeries, Series
from diagnosis.services.accounts import token_create
from diagnosis.services.receiving import received_folder_store
from tests.api.conftest import assert_error
from tests.dicom_data import mr_series, write_series
from tests.factories import CaseFactory, UserFactory


@pytest.fixture
def waiting(tmp_path, db) -> IncomingSeries:
    folder = ReceivedFolder(path=tmp_path / "spool" / "assoc-1", calling_ae_title="PACS")
    write_series(folder.path, mr_series(3, patient_id="NOBODY-1", patient_name="Doe^John"))
    mark_complete(folder)
    [received] = received_folder_store(folder=folder)
    return received.incoming


def test_unmatched_series_waits_with_its_files_as_received(waiting, media_root):
    assert (waiting.patient_id, waiting.patient_name, waiting.calling_ae_title) == (
        "NOBODY-1",
        "Doe John",
        "PACS",
    )
    assert len(list((Path(media_root) / waiting.folder).glob("*.dcm"))) == 3
    assert not Series.objects.exists()


def test_incoming_page_lists_it_and_attaching_stores_it_in_the_case(client, clinician, waiting, media_root):
    case = CaseFactory(owner=clinician)
    client.force_login(clinician)

    html = client.get("/incoming/").content.decode()
    assert "NOBODY-1" in html and "Doe John" in html and f"{case.patient.identifier}: case {case.pk}" in html

    response = client.post(f"/incoming/{waiting.pk}/attach/", {f"attach-{waiting.pk}-case": case.pk})

    series = Series.objects.get(case=case)
    assert response.status_code == 302 and response["Location"].endswith(f"#series-{series.pk}")
    assert series.slices.count() == 3 and series.patient_id_check == "mismatch"
    assert not IncomingSeries.objects.exists() and not (Path(media_root) / waiting.folder).exists()


def test_a_case_of_another_clinician_cannot_be_chosen(client, clinician, other_clinician, waiting):
    others = CaseFactory(owner=other_clinician)
    client.force_login(clinician)

    response = client.post(
        f"/incoming/{waiting.pk}/attach/", {f"attach-{waiting.pk}-case": others.pk}, follow=True
    )

    assert "Choose an open case of yours" in response.content.decode()
    assert IncomingSeries.objects.filter(pk=waiting.pk).exists()


def test_incoming_api_lists_and_attaches(clinician, waiting):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token_create(user=clinician).token}")
    case = CaseFactory(owner=clinician)

    listed = api.get("/api/v1/incoming/").json()["results"]
    assert [(item["id"], item["patient_id"], item["instance_count"]) for item in listed] == [
        (waiting.pk, "NOBODY-1", 3)
    ]
    assert_error(api.post(f"/api/v1/incoming/{waiting.pk}/attach/", {"case": 10**6}), 400, "case")

    response = api.post(f"/api/v1/incoming/{waiting.pk}/attach/", {"case": case.pk})

    assert response.status_code == 201 and response.json()["slice_count"] == 3
    assert_error(api.post(f"/api/v1/incoming/{waiting.pk}/attach/", {"case": case.pk}), 404)


def test_accounts_that_do_not_work_with_records_see_no_incoming_series(client, waiting):
    client.force_login(UserFactory())

    assert "NOBODY-1" not in client.get("/incoming/").content.decode()
