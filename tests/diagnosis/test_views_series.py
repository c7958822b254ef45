"""The case page's series: what the files say, the patient check, the viewer's slices and presets."""

from __future__ import annotations

import io

from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from diagnosis.models import Series
from tests.dicom_data import dicom_bytes, mr_series


def _upload(client, case, datasets):
    files = [SimpleUploadedFile(f"IM{i}.dcm", dicom_bytes(ds)) for i, ds in enumerate(datasets)]
    return client.post(f"/cases/{case.pk}/upload/", {"file": files}, HTTP_ACCEPT="application/json")


def test_case_page_shows_the_series_facts_the_patient_mismatch_and_the_chosen_slice(client, case, clinician):
    client.force_login(clinician)
    response = _upload(client, case, mr_series(5))
    assert response.status_code == 201
    results = response.json()["results"]
    assert all(r["ok"] and r["series"]["description"] == "T2 TSE SAG" for r in results)
    assert [r["prediction"] is not None for r in results] == [False, False, True, False, False]

    html = client.get(f"/cases/{case.pk}/").content.decode()

    series = Series.objects.get()
    assert "Series T2 TSE SAG" in html and "LSPINE" in html and "2026-11-02" in html and "Sagittal" in html
    assert "does not match this case's patient" in html and "patient ID" in html
    assert 'data-chosen-index="2"' in html and 'max="4"' in html
    ids = ",".join(str(pk) for pk in series.slices.order_by("slice_index").values_list("pk", flat=True))
    assert f'data-slice-ids="{ids}"' in html
    assert "/static/js/series.js" in html and "<script>" not in html


def test_non_sagittal_series_shows_why_it_is_not_assessable(client, case, clinician):
    client.force_login(clinician)
    _upload(client, case, mr_series(3, plane="axial"))

    html = client.get(f"/cases/{case.pk}/").content.decode()

    assert "Not assessable: The series is axial" in html and "Run the prediction on this slice" not in html


def test_slice_preview_applies_the_window_preset_and_refuses_an_unknown_one(client, case, clinician):
    client.force_login(clinician)
    _upload(client, case, mr_series(1))
    scan = Series.objects.get().slices.get()

    default = Image.open(io.BytesIO(client.get(f"/scans/{scan.pk}/preview").content))
    fluid = Image.open(io.BytesIO(client.get(f"/scans/{scan.pk}/preview?window=fluid").content))

    assert default.size == fluid.size == (96, 96)
    # The fluid window starts at the 60th percentile: most of the slice goes black.
    assert sum(fluid.histogram()[:1]) > sum(default.histogram()[:1])
    assert client.get(f"/scans/{scan.pk}/preview?window=bone").status_code == 404


def test_picking_a_slice_on_the_page_queues_its_prediction(client, case, clinician):
    client.force_login(clinician)
    _upload(client, case, mr_series(3))
    series = Series.objects.get()
    first = series.slices.get(slice_index=0)

    response = client.post(f"/series/{series.pk}/slice/", {"scan": first.pk}, follow=True)

    assert "A prediction on slice 1 is queued." in response.content.decode()
    assert first.predictions.get().status == "queued"
    series.refresh_from_db()
    assert series.chosen_scan == first and series.chosen_by == clinician


def test_another_clinicians_series_is_a_404(client, case, other_clinician):
    client.force_login(case.owner)
    _upload(client, case, mr_series(1))
    client.force_login(other_clinician)

    assert client.post(f"/series/{Series.objects.get().pk}/slice/", {"scan": 1}).status_code == 404
