"""DICOM series: the instances of one series in a case become one record, ordered by position, whose
mid-sagittal slice gets the prediction. Uploads (several files or a ZIP) and the network receiver both end
in `series_store`."""

from __future__ import annotations

import io
import logging
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile, File
from django.db import IntegrityError, connection, transaction

from diagnosis.dicom.geometry import SliceGeometry, order_slices, series_plane
from diagnosis.errors import ApplicationError
from diagnosis.imaging import DicomInfo
from diagnosis.models import Case, Patient, Prediction, Scan, Series
from diagnosis.services.access import ensure_can_change_case
from diagnosis.services.cases import case_lock_open, case_refresh_status
from diagnosis.services.database import TRANSIENT_DATABASE_ERRORS, once_more_on_a_fresh_connection
from diagnosis.services.predictions import (
    prediction_create,
    prediction_record_not_assessable,
    prediction_supersede,
)
from diagnosis.services.scans import (
    EXTENSIONS,
    InspectedUpload,
    UploadResult,
    ensure_can_add_scans,
    scan_fields,
    scan_inspect,
    scan_store,
)

logger = logging.getLogger(__name__)

ZIP_SIGNATURE = b"PK\x03\x04"
# A study folder of a few series of 12 to 20 slices; anything far beyond is not a lumbar MRI study.
ZIP_MAX_MEMBERS = 2000
# Names a DICOM export puts beside the images that are not images.
_ZIP_IGNORED = re.compile(r"(^|/)(__MACOSX/|\.|DICOMDIR$|.*\.(txt|html?|xml|json|pdf|exe|inf|ini)$)", re.I)


@dataclass(frozen=True)
class SeriesResult:
    series: Series
    created: bool  # a new series; False: the instances joined (or all were already in) the case's series
    added: list[Scan]
    prediction: Prediction | None  # queued (or recorded not assessable) by this call


@dataclass
class FileOutcome:
    name: str
    error: str = ""
    scan: Scan | None = None  # the scan stored from this file (or found holding its bytes already)
    created: bool = False
    prediction: Prediction | None = None  # the scan's latest; none for a slice the model does not read
    series: Series | None = None
    sha256: str = ""
    instance_uid: str = ""


@dataclass
class SeriesUploadResult:
    files: list[FileOutcome] = field(default_factory=list)
    series: list[SeriesResult] = field(default_factory=list)

    @property
    def created(self) -> bool:
        return any(result.added for result in self.series) or any(f.created for f in self.files)

    @property
    def stored_anything(self) -> bool:
        return bool(self.series) or any(f.scan is not None for f in self.files)


def series_upload(
    *, user: AbstractBaseUser, case: Case, uploaded_files: Iterable[File]
) -> SeriesUploadResult:
    """Several files at once, or ZIPs of a study folder: the DICOM instances of each series become one
    series; PNG, JPEG and DICOM files without a series are stored as single scans, as `scan_upload` does.
    A file that cannot be read is reported by name and stops nothing else."""
    ensure_can_add_scans(user, case)
    result = SeriesUploadResult()
    by_series: dict[str, list[InspectedUpload]] = {}
    for uploaded_file in _expand_zips(uploaded_files, result):
        try:
            upload = scan_inspect(uploaded_file=uploaded_file)
        except ApplicationError as exc:
            result.files.append(FileOutcome(name=_name(uploaded_file), error=_message(exc)))
            continue
        info = upload.inspected.dicom
        if info is not None and info.series_uid:
            by_series.setdefault(info.series_uid, []).append(upload)
            result.files.append(
                FileOutcome(
                    name=upload.original_name,
                    sha256=upload.inspected.sha256,
                    instance_uid=info.instance_uid or "",
                )
            )
            continue
        stored: UploadResult = scan_store(user=user, case=case, upload=upload)
        result.files.append(
            FileOutcome(
                name=upload.original_name,
                scan=stored.scan,
                created=stored.created,
                prediction=stored.prediction,
            )
        )
    if not result.files:
        message = "Choose at least one file to upload."
        raise ApplicationError(message, {"file": [message]})
    for uploads in by_series.values():
        result.series.append(series_store(user=user, case=case, uploads=uploads))
    _describe_series_files(case, result)
    return result


def _describe_series_files(case: Case, result: SeriesUploadResult) -> None:
    """Each file's scan: the one holding its bytes or, for other bytes of an instance the series already
    holds (the same instance exported again), that instance."""
    added = {scan.pk for stored in result.series for scan in stored.added}
    scans = Scan.objects.filter(case=case, sha256__in=[f.sha256 for f in result.files if f.sha256])
    by_bytes = {scan.sha256: scan for scan in scans.select_related("series")}
    by_instance = {
        scan.instance_uid: scan
        for stored in result.series
        for scan in stored.series.slices.select_related("series")
    }
    for outcome in result.files:
        if not outcome.sha256:
            continue  # a single scan, described when stored, or a file that could not be read
        scan = by_bytes.get(outcome.sha256) or by_instance.get(outcome.instance_uid)
        if scan is None:
            continue
        outcome.scan, outcome.series, outcome.created = scan, scan.series, scan.pk in added
        outcome.prediction = scan.predictions.order_by("-queued_at").first()


def _name(uploaded_file: File) -> str:
    return str(getattr(uploaded_file, "name", "") or "upload")


def _message(error: ApplicationError) -> str:
    return " ".join(message for messages in error.errors.values() for message in messages) or error.message


def _expand_zips(uploaded_files: Iterable[File], result: SeriesUploadResult) -> Iterable[File]:
    """Each file as it is, a ZIP as its members (each within the upload limit)."""
    for uploaded_file in uploaded_files:
        uploaded_file.seek(0)
        if uploaded_file.read(4) != ZIP_SIGNATURE:
            uploaded_file.seek(0)
            yield uploaded_file
            continue
        try:
            members = _zip_members(uploaded_file)
        except ApplicationError as exc:
            result.files.append(FileOutcome(name=_name(uploaded_file), error=_message(exc)))
            continue
        yield from members


def _zip_members(uploaded_file: File) -> list[File]:
    name = _name(uploaded_file)
    limit = settings.LUMBAR_MAX_UPLOAD_BYTES
    if (uploaded_file.size or 0) > limit:
        raise ApplicationError(f"{name}: the ZIP is larger than the upload limit.", {"file": ["Too large."]})
    uploaded_file.seek(0)
    try:
        archive = zipfile.ZipFile(io.BytesIO(uploaded_file.read()))
        entries = [entry for entry in archive.infolist() if not entry.is_dir()]
        entries = [entry for entry in entries if not _ZIP_IGNORED.search(entry.filename)]
        if len(entries) > ZIP_MAX_MEMBERS:
            raise ApplicationError(
                f"{name}: the ZIP holds {len(entries)} files; the limit is {ZIP_MAX_MEMBERS}.",
                {"file": ["Too many files in the ZIP."]},
            )
        members, total = [], 0
        for entry in entries:
            # The sizes in the directory can lie: read at most one byte past the limit to find out.
            with archive.open(entry) as handle:
                data = handle.read(limit + 1)
            total += len(data)
            if len(data) > limit or total > 4 * limit:
                raise ApplicationError(
                    f"{name}: the ZIP expands beyond the upload limit.", {"file": ["The ZIP is too large."]}
                )
            members.append(ContentFile(data, name=f"{name}/{entry.filename}"))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, OSError) as exc:
        raise ApplicationError(f"{name}: the ZIP cannot be read ({exc}).", {"file": ["Bad ZIP."]}) from None
    return members


# Storing ------------------------------------------------------------------------------------------------


def series_store(
    *,
    user: AbstractBaseUser,
    case: Case,
    uploads: list[InspectedUpload],
    source: str = Series.Source.UPLOAD,
) -> SeriesResult:
    """Store checked instances of one series in the case: a new series, or the instances it lacks added to
    the case's series with the same UID. Slices are ordered again and, unless a clinician picked one, the
    mid-sagittal slice is chosen and gets a prediction (recorded not assessable for a series the model
    cannot read). Safe to repeat: instances already stored are recognised by their bytes or SOP UID.
    Callers check that `user` may add to the case (uploads) or choose the case by their rules (receiver)."""

    def store() -> SeriesResult:
        return once_more_on_a_fresh_connection(
            lambda: _store(user=user, case=case, uploads=uploads, source=source)
        )

    try:
        return store()
    except IntegrityError:
        # The receiver and an upload (or two uploads) stored the same series or bytes at the same moment:
        # once more, and what the other stored is found.
        return store()


def _store(
    *, user: AbstractBaseUser, case: Case, uploads: list[InspectedUpload], source: str
) -> SeriesResult:
    infos = [upload.inspected.dicom for upload in uploads]
    first: DicomInfo = infos[0]  # type: ignore[assignment]
    if any(info is None or info.series_uid != first.series_uid for info in infos):
        raise ValueError("series_store takes the instances of one series")
    new_scans = _new_scans(case, uploads, user)
    try:
        with transaction.atomic():
            # The case before the series, in the order every change to a case takes its locks: the case's
            # prediction counts and status follow what is stored here (case_refresh_status).
            Case.objects.select_for_update().get(pk=case.pk)
            series, created = _lock_series(case, first, infos, source)
            known = set(series.slices.values_list("instance_uid", flat=True))
            known_bytes = set(Scan.objects.filter(case=case).values_list("sha256", flat=True))
            added = []
            for scan in new_scans:
                if scan.instance_uid in known or scan.sha256 in known_bytes:
                    continue
                scan.series = series
                scan.save()
                known.add(scan.instance_uid)
                known_bytes.add(scan.sha256)
                added.append(scan)
            prediction = _order_and_choose(series) if added or created else None
    except BaseException:
        _delete_files(new_scans)
        raise
    _delete_files([scan for scan in new_scans if scan.pk is None])
    if added:
        logger.info("Series %s: %d instances added to case %s", series.pk, len(added), case.pk)
    return SeriesResult(series=series, created=created, added=added, prediction=prediction)


def _new_scans(case: Case, uploads: list[InspectedUpload], user: AbstractBaseUser) -> list[Scan]:
    """Unsaved scans, their de-identified files written, for the uploads the case does not hold yet."""
    held = set(
        Scan.objects.filter(case=case, sha256__in=[u.inspected.sha256 for u in uploads]).values_list(
            "sha256", flat=True
        )
    )
    scans, seen = [], set()
    for upload in uploads:
        inspected = upload.inspected
        if inspected.sha256 in held or inspected.sha256 in seen:
            continue
        seen.add(inspected.sha256)
        scan = Scan(
            case=case,
            original_name=upload.original_name[:255],
            sha256=inspected.sha256,
            uploaded_by=user,
            **scan_fields(inspected),
        )
        name = f"{inspected.sha256}.{EXTENSIONS[inspected.format]}"
        scan.file.save(name, ContentFile(inspected.stored_bytes), save=False)
        scans.append(scan)
    return scans


def _delete_files(scans: list[Scan]) -> None:
    """Files of scans whose rows were not stored; when the database cannot say, they are kept (an orphan
    file costs disk space, a row without its file would cost the scan)."""
    for scan in scans:
        try:
            if not connection.in_atomic_block:
                connection.close_if_unusable_or_obsolete()
            stored = scan.pk is not None and Scan.objects.filter(pk=scan.pk).exists()
        except TRANSIENT_DATABASE_ERRORS:
            continue
        if not stored:
            scan.file.delete(save=False)


def _lock_series(case: Case, first: DicomInfo, infos: list, source: str) -> tuple[Series, bool]:
    id_check = _combined(_patient_id_check(case.patient, info.patient_id) for info in infos)
    name_check = _combined(_patient_name_check(case.patient, info.patient_name) for info in infos)
    series = Series.objects.select_for_update().filter(case=case, series_uid=first.series_uid).first()
    if series is not None:
        # Once a mismatch, always a mismatch: a later upload that matches does not clear it.
        series.patient_id_check = _combined([series.patient_id_check, id_check])
        series.patient_name_check = _combined([series.patient_name_check, name_check])
        series.save(update_fields=["patient_id_check", "patient_name_check"])
        return series, False
    series = Series.objects.create(
        case=case,
        study_uid=(first.study_uid or "")[:64],
        series_uid=first.series_uid[:64],  # type: ignore[index]
        modality=(first.modality or "")[:16],
        series_description=(first.series_description or "")[:255],
        study_date=dicom_date(first.study_date),
        body_part=(first.body_part or "")[:64],
        patient_id_check=id_check,
        patient_name_check=name_check,
        source=source,
    )
    return series, True


def _order_and_choose(series: Series) -> Prediction | None:
    slices = list(series.slices.order_by("pk"))
    geometry = [
        SliceGeometry(
            position=tuple(scan.image_position) if scan.image_position else None,
            orientation=tuple(scan.image_orientation) if scan.image_orientation else None,
            instance_number=scan.instance_number,
        )
        for scan in slices
    ]
    order = order_slices(geometry)
    for index, position in enumerate(order.order):
        slices[position].slice_index = index
        slices[position].slice_position = order.positions[position]
    Scan.objects.bulk_update(slices, ["slice_index", "slice_position"])
    series.plane = series_plane(geometry).value
    series.ordered_by_geometry = order.by_geometry
    series.not_assessable_reason = _not_assessable_reason(series)
    middle = slices[order.middle]
    prediction = None
    if series.chosen_by_id is None and series.chosen_scan_id != middle.pk:
        series.chosen_scan = middle
        prediction_supersede(predictions=Prediction.objects.filter(scan__series=series).exclude(scan=middle))
        if not middle.predictions.filter(superseded_at__isnull=True).exists():
            if series.not_assessable_reason:
                prediction = prediction_record_not_assessable(
                    scan=middle, reason=series.not_assessable_reason
                )
            else:
                prediction = prediction_create(scan=middle)
        else:
            # Superseded without a new prediction, which would have refreshed the case's counts and status.
            case_refresh_status(case_id=series.case_id)
    series.save(update_fields=["plane", "ordered_by_geometry", "not_assessable_reason", "chosen_scan"])
    return prediction


def _not_assessable_reason(series: Series) -> str:
    if series.modality and series.modality != "MR":
        return f"The series is {series.modality}; the model reads MRI only."
    if series.plane in (Series.Plane.AXIAL, Series.Plane.CORONAL):
        return (
            f"The series is {series.plane} (from ImageOrientationPatient); the model reads a mid-sagittal "
            "slice. Upload or send the sagittal series of the study."
        )
    return ""


def series_choose_slice(*, user: AbstractBaseUser, series: Series, scan: Scan) -> Prediction:
    """The clinician picks another slice of the series; the prediction runs on it."""
    ensure_can_change_case(user, series.case)
    if scan.series_id != series.pk:
        raise ApplicationError("That slice is not in this series.", {"scan": ["Not a slice of the series."]})
    if not series.assessable:
        raise ApplicationError(series.not_assessable_reason, {"scan": [series.not_assessable_reason]})
    with transaction.atomic():
        case_lock_open(case_id=series.case_id)
        Series.objects.filter(pk=series.pk).update(chosen_scan=scan, chosen_by=user)
        # The slice chosen before no longer counts: its finished prediction waits for no review now.
        prediction_supersede(predictions=Prediction.objects.filter(scan__series=series))
        prediction = prediction_create(scan=scan)
    series.chosen_scan, series.chosen_by = scan, user
    return prediction


# Checking the file against the case's patient --------------------------------------------------------------


def _combined(checks: Iterable[str]) -> str:
    checks = set(checks)
    for check in (Series.PatientCheck.MISMATCH, Series.PatientCheck.MATCH):
        if check in checks:
            return check
    return Series.PatientCheck.ABSENT


def _patient_id_check(patient: Patient, patient_id: str | None) -> str:
    if not patient_id:
        return Series.PatientCheck.ABSENT
    same = patient_id.strip().casefold() == patient.identifier.strip().casefold()
    return Series.PatientCheck.MATCH if same else Series.PatientCheck.MISMATCH


def _name_words(name: str) -> set[str]:
    # PN: family^given^middle^prefix^suffix, then "=" and the ideographic and phonetic forms.
    return {word for word in re.split(r"[\^\s,.]+", name.split("=")[0].casefold()) if word}


def _patient_name_check(patient: Patient, patient_name: str | None) -> str:
    file_words, record_words = _name_words(patient_name or ""), _name_words(patient.name)
    if not file_words or not record_words:
        return Series.PatientCheck.ABSENT
    return Series.PatientCheck.MATCH if file_words == record_words else Series.PatientCheck.MISMATCH


def dicom_date(value: str | None) -> date | None:
    try:
        return datetime.strptime((value or "").strip(), "%Y%m%d").date()
    except ValueError:
        return None
