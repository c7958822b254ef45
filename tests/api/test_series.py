"""/api/v1/cases/{id}/series/, /api/v1/series/{id}/ and its slice choice."""

from __future__ import annotations

from django.core.files.uploadedfile import SimpleUploadedFile

from diagnosis.models import Prediction, Series
from tests.api.conftest import assert_error
from tests.dicom_data import dicom_bytes, mr_series
from tests.factories import CaseFactory


def _upload(api, case, datasets, extra=()):
    files = [SimpleUploadedFile(f"IM{i}", dicom_bytes(ds)) for i, ds in enumerate(datasets)] + list(extra)
    return api.post(f"/api/v1/cases/{case.pk}/series/", {"file": files}, format="multipart")


def test_series_upload_answers_each_file_and_the_series_with_what_the_files_say(api, case):
    datasets = mr_series(5)
    response = _upload(api, case, datasets, [SimpleUploadedFile("notes.txt", b"hello")])

    assert response.status_code == 201, response.json()
    body = response.json()
    assert [f["ok"] for f in body["files"]] == [True] * 5 + [False]
    assert "not a PNG, JPEG or DICOM" in body["files"][5]["error"]
    [series] = body["series"]
    assert {key: series[key] for key in ("modality", "series_description", "study_date", "body_part")} == {
        "modality": "MR",
        "series_description": "T2 TSE SAG",
        "study_date": "2026-11-02",
        "body_part": "LSPINE",
    }
    assert (series["plane"], series["slice_count"], series["assessable"]) == ("sagittal", 5, True)
    assert series["patient_mismatch"] is True and series["patient_id_check"] == "mismatch"
    assert [s["slice_index"] for s in series["slices"]] == [0, 1, 2, 3, 4]
    assert series["chosen_scan"] == series["slices"][2]["scan"] and series["chosen_by"] is None
    assert "WALK-0001" not in response.content.decode()

    again = _upload(api, case, datasets)
    assert again.status_code == 200 and [s["id"] for s in again.json()["series"]] == [series["id"]]


def test_series_upload_of_nothing_readable_is_a_400_in_the_error_shape(api, case):
    assert_error(_upload(api, case, [], [SimpleUploadedFile("notes.txt", b"hello")]), 400, "file")
    assert_error(api.post(f"/api/v1/cases/{case.pk}/series/", {}, format="multipart"), 400, "file")


def test_series_list_detail_and_filters_are_scoped_to_the_owner(api, case, other_clinician):
    _upload(api, case, mr_series(2))
    _upload(api, case, mr_series(2, plane="axial"))
    others = CaseFactory(owner=other_clinician)
    Series.objects.create(
        case=others,
        study_uid="1.2",
        series_uid="1.2.3",
        patient_id_check="absent",
        patient_name_check="absent",
    )

    listed = api.get(f"/api/v1/cases/{case.pk}/series/", {"plane": "axial"}).json()["results"]
    assert [s["plane"] for s in listed] == ["axial"] and listed[0]["not_assessable_reason"]
    assert api.get(f"/api/v1/series/{listed[0]['id']}/").json()["id"] == listed[0]["id"]
    assert_error(api.get(f"/api/v1/series/{Series.objects.get(case=others).pk}/"), 404)
    assert_error(api.get(f"/api/v1/cases/{case.pk}/series/", {"plane": "oblique"}), 400, "plane")


def test_slice_choice_queues_a_prediction_on_that_slice(api, case):
    series_id = _upload(api, case, mr_series(3)).json()["series"][0]["id"]
    first = Series.objects.get(pk=series_id).slices.get(slice_index=0)

    response = api.post(f"/api/v1/series/{series_id}/slice/", {"scan": first.pk}, format="json")

    assert response.status_code == 201, response.json()
    assert response.json()["scan"] == first.pk and response.json()["status"] == "queued"
    assert Prediction.objects.filter(scan=first).count() == 1
    body = api.get(f"/api/v1/series/{series_id}/").json()
    assert body["chosen_scan"] == first.pk and body["chosen_by"]


def test_the_slice_chosen_before_is_superseded_and_runs_again_only_once_chosen_again(api, case):
    series_id = _upload(api, case, mr_series(3)).json()["series"][0]["id"]
    middle = Prediction.objects.get(scan__series_id=series_id)
    first = Series.objects.get(pk=series_id).slices.get(slice_index=0)
    chosen = api.post(f"/api/v1/series/{series_id}/slice/", {"scan": first.pk}, format="json").json()

    assert api.get(f"/api/v1/predictions/{middle.pk}/").json()["superseded_at"] is not None
    current = api.get("/api/v1/predictions/", {"current": "true", "case": case.pk}).json()["results"]
    assert [p["id"] for p in current] == [chosen["id"]]
    body = assert_error(api.post(f"/api/v1/predictions/{middle.pk}/rerun/", {}, format="json"), 409, "scan")
    assert "chosen" in body["message"]
    assert api.post(f"/api/v1/predictions/{chosen['id']}/rerun/", {}, format="json").status_code == 201
    again = api.post(f"/api/v1/series/{series_id}/slice/", {"scan": middle.scan_id}, format="json")
    assert again.status_code == 201 and again.json()["scan"] == middle.scan_id


def test_slice_choice_refuses_a_slice_of_another_series_and_a_non_assessable_series(api, case):
    sagittal = _upload(api, case, mr_series(2)).json()["series"][0]["id"]
    axial = _upload(api, case, mr_series(2, plane="axial")).json()["series"][0]["id"]
    axial_slice = Series.objects.get(pk=axial).slices.first()

    assert_error(api.post(f"/api/v1/series/{sagittal}/slice/", {"scan": axial_slice.pk}), 400, "scan")
    body = assert_error(api.post(f"/api/v1/series/{axial}/slice/", {"scan": axial_slice.pk}), 400, "scan")
    assert "axial" in body["message"]
