"""Series uploads: the instances of a series become one series, ordered by position, whose mid-sagittal slice
gets the one prediction; what the file says is kept and checked against the case's patient."""

from __future__ import annotations

import datetime
import io
import random
import zipfile

import pydicom
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from diagnosis.errors import ApplicationError
from diagnosis.models import Prediction, Scan, Series
from diagnosis.selectors import case_current_predictions, case_sign_off_blockers
from diagnosis.services.cases import case_refresh_status
from diagnosis.services.scans import scan_upload
from diagnosis.services.series import series_choose_slice, series_upload
from tests.dicom_data import dicom_bytes, mr_series
from tests.factories import CaseFactory, PatientFactory, png_bytes


def _files(datasets, prefix="slice"):
    return [SimpleUploadedFile(f"{prefix}-{i}.dcm", dicom_bytes(ds)) for i, ds in enumerate(datasets)]


def _upload(case, files):
    return series_upload(user=case.owner, case=case, uploaded_files=files)


def test_sagittal_series_uploaded_at_once_becomes_one_series_with_one_prediction_on_the_middle_slice(
    case, django_capture_on_commit_callbacks
):
    datasets = mr_series(7)
    shuffled = random.Random(3).sample(datasets, len(datasets))

    with django_capture_on_commit_callbacks() as callbacks:
        result = _upload(case, _files(shuffled))

    series = Series.objects.get(case=case)
    assert [r.series for r in result.series] == [series] and result.created
    slices = list(series.slices.order_by("slice_index"))
    # Ordered along the normal of ImageOrientationPatient (here -x), whatever the upload order.
    assert [s.instance_uid for s in slices] == [ds.SOPInstanceUID for ds in reversed(datasets)]
    assert [s.slice_position for s in slices] == [104.0 + 4 * i for i in range(7)]  # mm along the normal
    assert series.chosen_scan.instance_uid == datasets[3].SOPInstanceUID
    assert series.ordered_by_geometry and series.plane == Series.Plane.SAGITTAL and series.assessable
    assert list(Prediction.objects.filter(scan__case=case).values_list("scan", "status")) == [
        (series.chosen_scan_id, Prediction.Status.QUEUED)
    ]
    assert len(callbacks) == 1
    assert (series.modality, series.series_description, series.body_part) == ("MR", "T2 TSE SAG", "LSPINE")
    assert series.study_date == datetime.date(2026, 11, 2)


def test_file_patient_id_that_differs_from_the_case_patient_is_flagged_and_not_stored(case):
    _upload(case, _files(mr_series(3, patient_id="WALK-0001")))

    series = Series.objects.get(case=case)
    assert series.patient_id_check == Series.PatientCheck.MISMATCH and series.patient_mismatch
    stored = pydicom.dcmread(series.chosen_scan.file.path)
    assert stored.PatientID == "" and stored.PatientName == ""


def test_file_naming_the_case_patient_matches(clinician):
    patient = PatientFactory(identifier="MRN-100234", name="Ann Walker", created_by=clinician)
    case = CaseFactory(owner=clinician, patient=patient)

    _upload(case, _files(mr_series(3, patient_id="mrn-100234", patient_name="WALKER^ANN")))

    series = Series.objects.get(case=case)
    assert (series.patient_id_check, series.patient_name_check) == ("match", "match")
    assert not series.patient_mismatch


def test_second_upload_of_the_same_series_creates_no_duplicate_and_no_second_prediction(case):
    files = mr_series(5)
    _upload(case, _files(files))

    again = _upload(case, _files(files, prefix="again"))

    assert Series.objects.filter(case=case).count() == 1
    assert Scan.objects.filter(case=case).count() == 5
    assert Prediction.objects.filter(scan__case=case).count() == 1
    assert not again.created and again.series[0].added == []


def test_same_instances_exported_again_in_another_encoding_are_recognised_by_their_uids(case):
    datasets = mr_series(3)
    _upload(case, _files(datasets))
    for dataset in datasets:
        dataset.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian

    again = _upload(case, _files(datasets, prefix="implicit"))

    assert Scan.objects.filter(case=case).count() == 3
    assert [(f.created, f.scan.instance_uid) for f in again.files] == [
        (False, ds.SOPInstanceUID) for ds in datasets
    ]


def test_series_sent_in_two_parts_is_one_series_whose_middle_follows_the_slices(case):
    datasets = mr_series(6)
    _upload(case, _files(datasets[:2]))
    _upload(case, _files(datasets[2:]))

    series = Series.objects.get(case=case)
    assert series.slices.count() == 6
    # Six slices 4 mm apart: the two nearest the centre are equally near; the first along the normal wins.
    assert series.chosen_scan.instance_uid in {datasets[2].SOPInstanceUID, datasets[3].SOPInstanceUID}
    assert series.chosen_scan.predictions.count() == 1


@pytest.mark.parametrize("plane", ["axial", "coronal"])
def test_non_sagittal_series_is_kept_and_recorded_not_assessable_with_its_reason(
    case, plane, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        _upload(case, _files(mr_series(4, plane=plane)))

    series = Series.objects.get(case=case)
    assert series.plane == plane and not series.assessable
    prediction = Prediction.objects.get(scan__case=case)
    assert (prediction.status, prediction.label) == ("done", "not_assessable")
    assert plane in prediction.reason and "sagittal" in prediction.reason
    assert callbacks == []  # nothing for the worker to do
    with pytest.raises(ApplicationError, match=plane):
        series_choose_slice(user=case.owner, series=series, scan=series.slices.first())


def test_series_without_geometry_is_ordered_by_instance_number_and_its_middle_instance_chosen(case):
    datasets = mr_series(5, geometry=False)

    _upload(case, _files(list(reversed(datasets))))

    series = Series.objects.get(case=case)
    assert not series.ordered_by_geometry and series.plane == Series.Plane.UNKNOWN
    assert [s.instance_number for s in series.slices.order_by("slice_index")] == [1, 2, 3, 4, 5]
    assert series.chosen_scan.instance_number == 3


def _zip(members: dict[str, bytes]) -> SimpleUploadedFile:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return SimpleUploadedFile("study.zip", buffer.getvalue())


def test_zip_of_a_study_folder_becomes_one_series_per_series_and_names_the_file_it_could_not_read(case):
    sagittal, axial = mr_series(3), mr_series(3, plane="axial")
    members = {f"STUDY/SER{i // 3}/IM{i}": dicom_bytes(ds) for i, ds in enumerate(sagittal + axial)}
    members["DICOMDIR"] = b"not an image"
    members["STUDY/notes.bin"] = b"\x00garbage"

    result = _upload(case, [_zip(members)])

    assert {s.plane for s in Series.objects.filter(case=case)} == {"sagittal", "axial"}
    errors = [f for f in result.files if f.error]
    assert [f.name for f in errors] == ["study.zip/STUDY/notes.bin"]
    assert "not a PNG, JPEG or DICOM" in errors[0].error


def test_bad_zip_is_reported_and_the_other_files_are_stored(case):
    result = _upload(case, [SimpleUploadedFile("broken.zip", b"PK\x03\x04broken"), *_files(mr_series(2))])

    assert [f.name for f in result.files if f.error] == ["broken.zip"]
    assert Series.objects.filter(case=case).count() == 1


def test_png_in_a_multi_file_upload_is_stored_as_a_single_scan(case):
    result = _upload(case, [SimpleUploadedFile("spine.png", png_bytes(40, 30)), *_files(mr_series(3))])

    loose, in_series = result.files[0], result.files[1:]
    assert loose.scan.series is None and loose.prediction.status == "queued" and loose.created
    assert {f.series for f in in_series} == {Series.objects.get()} and all(f.created for f in in_series)
    assert [f.prediction is not None for f in in_series] == [False, True, False]  # the middle slice
    assert Prediction.objects.filter(scan__case=case).count() == 2


def test_clinician_picks_another_slice_and_the_prediction_runs_on_it(case):
    _upload(case, _files(mr_series(5)))
    series = Series.objects.get(case=case)
    other = series.slices.get(slice_index=0)

    prediction = series_choose_slice(user=case.owner, series=series, scan=other)

    series.refresh_from_db()
    assert (series.chosen_scan, series.chosen_by) == (other, case.owner)
    assert prediction.scan == other and prediction.status == "queued"
    # More slices arriving later keep the clinician's choice.
    _upload(case, _files(mr_series(1, series_uid=series.series_uid, study_uid=series.study_uid)))
    series.refresh_from_db()
    assert series.chosen_scan == other and Prediction.objects.filter(scan__case=case).count() == 2


def test_a_slice_chosen_instead_supersedes_the_first_slices_finished_prediction(case):
    """The first slice's result no longer waits for review or keeps the case from its sign-off; a scan
    outside any series still counts by its latest prediction."""
    _upload(case, _files(mr_series(5)))
    loose = scan_upload(user=case.owner, case=case, uploaded_file=SimpleUploadedFile("a.png", png_bytes()))
    series = Series.objects.get(case=case)
    first = Prediction.objects.get(scan=series.chosen_scan)
    case.refresh_from_db()
    assert (case.predictions_awaiting_review, case.predictions_in_progress) == (0, 2)
    Prediction.objects.filter(pk__in=[first.pk, loose.prediction.pk]).update(
        status="done", label="ddd", probability=0.8
    )
    case_refresh_status(case_id=case.pk)
    case.refresh_from_db()
    assert case.status == "awaiting_review"
    assert set(case_current_predictions(case=case)) == {first, loose.prediction}

    chosen = series_choose_slice(user=case.owner, series=series, scan=series.slices.get(slice_index=0))

    assert set(case_current_predictions(case=case)) == {chosen, loose.prediction}
    case.refresh_from_db()
    assert (case.predictions_awaiting_review, case.predictions_in_progress) == (1, 1)
    assert case_sign_off_blockers(case=case) == [
        "1 prediction not reviewed: review or mark not used.",
        "1 prediction still running: wait for the result or mark not used.",
    ]
    Prediction.objects.filter(pk=loose.prediction.pk).update(status="failed", error="x")
    case_refresh_status(case_id=case.pk)
    case.refresh_from_db()
    assert case.status == "open"  # the first slice's finished result no longer awaits review


def test_slice_of_another_series_cannot_be_picked(case):
    _upload(case, _files(mr_series(2)))
    _upload(case, _files(mr_series(2)))
    first, second = Series.objects.filter(case=case)

    with pytest.raises(ApplicationError, match="not in this series"):
        series_choose_slice(user=case.owner, series=first, scan=second.slices.first())


def test_single_file_upload_of_a_dicom_instance_stays_a_single_scan_as_before(case):
    dataset = mr_series(1)[0]
    upload = SimpleUploadedFile("one.dcm", dicom_bytes(dataset))

    result = scan_upload(user=case.owner, case=case, uploaded_file=upload)

    assert result.created and result.prediction.scan == result.scan and result.scan.series is None
    assert result.scan.instance_uid == dataset.SOPInstanceUID and not Series.objects.exists()


def test_single_dicom_file_uploaded_on_the_page_becomes_a_one_slice_series_with_its_prediction(case):
    result = _upload(case, _files(mr_series(1)))

    [outcome] = result.files
    assert outcome.series.chosen_scan == outcome.scan and outcome.prediction.scan == outcome.scan


def test_upload_to_a_signed_off_case_is_refused(case):
    case.status = "signed_off"
    case.save()

    with pytest.raises(ApplicationError, match="signed off"):
        _upload(case, _files(mr_series(2)))
    assert not Scan.objects.exists()
