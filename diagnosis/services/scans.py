from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile, File
from django.db import IntegrityError, connection, transaction

from diagnosis.errors import ApplicationError
from diagnosis.imaging import ImageRejected, InspectedImage, inspect_upload
from diagnosis.models import Case, Prediction, Scan
from diagnosis.services.access import ensure_can_change_case, ensure_case_open
from diagnosis.services.cases import case_lock_open
from diagnosis.services.database import TRANSIENT_DATABASE_ERRORS, once_more_on_a_fresh_connection
from diagnosis.services.predictions import prediction_create

logger = logging.getLogger(__name__)

EXTENSIONS = {"png": "png", "jpeg": "jpg", "dicom": "dcm"}


@dataclass(frozen=True)
class UploadResult:
    scan: Scan
    prediction: Prediction | None
    created: bool


def _refuse(message: str, code: str) -> ApplicationError:
    return ApplicationError(message, {"file": [message]}, code=code)


def _read_limited(uploaded_file: File, max_bytes: int) -> bytes:
    size = getattr(uploaded_file, "size", None)
    if size is not None and size > max_bytes:
        raise _refuse(f"The file is larger than the limit of {max_bytes // (1024 * 1024)} MB.", "too_large")
    uploaded_file.seek(0)
    chunks, total = [], 0
    for chunk in uploaded_file.chunks():
        total += len(chunk)
        if total > max_bytes:
            raise _refuse(
                f"The file is larger than the limit of {max_bytes // (1024 * 1024)} MB.", "too_large"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _clean_name(name: str | None) -> str:
    name = os.path.basename((name or "").replace("\\", "/")).strip()
    return (name or "upload")[:255]


def _existing(case: Case, sha256: str) -> UploadResult | None:
    scan = Scan.objects.filter(case=case, sha256=sha256).first()
    if scan is None:
        return None
    return UploadResult(scan=scan, prediction=scan.predictions.order_by("-queued_at").first(), created=False)


def _restore_missing_file(found: UploadResult, stored_bytes: bytes) -> UploadResult:
    """A scan whose stored file is gone (an earlier version deleted it after a broker fault, after its row
    was committed) gets it back from the same bytes, and a prediction that failed for want of it is queued
    again: otherwise these bytes could never be classified in this case."""
    storage = found.scan.file.storage
    if storage.exists(found.scan.file.name):
        return found
    with transaction.atomic():
        scan = Scan.objects.select_for_update().get(pk=found.scan.pk)
        if not storage.exists(scan.file.name):
            restored_name = storage.save(scan.file.name, ContentFile(stored_bytes))
            if restored_name != scan.file.name:
                scan.file.name = restored_name
                scan.save(update_fields=["file"])
        prediction = scan.predictions.order_by("-queued_at").first()
        if prediction is None or prediction.status == Prediction.Status.FAILED:
            prediction = prediction_create(scan=scan)
    logger.warning("Scan %s: its missing file was restored by a re-upload", scan.pk)
    return UploadResult(scan=scan, prediction=prediction, created=False)


def _row_committed(scan: Scan) -> bool:
    """Whether the row of a scan whose transaction failed is in the database anyway. A row never inserted
    is not; when the database cannot be asked, the file is kept: an orphan file costs disk space, a row
    without its file would cost the scan."""
    if scan.pk is None:
        return False
    try:
        if not connection.in_atomic_block:  # a dropped connection is replaced before asking
            connection.close_if_unusable_or_obsolete()
        return Scan.objects.filter(pk=scan.pk).exists()
    except TRANSIENT_DATABASE_ERRORS:
        return True


def scan_fields(inspected: InspectedImage) -> dict:
    fields = {"format": inspected.format, "width": inspected.width, "height": inspected.height}
    if inspected.dicom is not None:
        info = inspected.dicom
        fields.update(
            study_uid=info.study_uid or "",
            series_uid=info.series_uid or "",
            instance_uid=info.instance_uid or "",
            modality=(info.modality or "")[:16],
            series_description=(info.series_description or "")[:255],
            pixel_spacing=info.pixel_spacing,
            note=(info.note or "")[:255],
            instance_number=info.instance_number,
            image_position=list(info.image_position) if info.image_position else None,
            image_orientation=list(info.image_orientation) if info.image_orientation else None,
        )
    return fields


@dataclass(frozen=True)
class InspectedUpload:
    original_name: str
    inspected: InspectedImage


def ensure_can_add_scans(user: AbstractBaseUser, case: Case) -> None:
    ensure_can_change_case(user, case)
    ensure_case_open(case)


def scan_inspect(*, uploaded_file: File) -> InspectedUpload:
    """Read and check one file completely (DICOM de-identified in memory); nothing is stored yet."""
    original_name = _clean_name(getattr(uploaded_file, "name", None))
    data = _read_limited(uploaded_file, settings.LUMBAR_MAX_UPLOAD_BYTES)
    try:
        inspected = inspect_upload(
            data, max_bytes=settings.LUMBAR_MAX_UPLOAD_BYTES, max_pixels=settings.LUMBAR_MAX_IMAGE_PIXELS
        )
    except ImageRejected as exc:
        raise _refuse(f"{original_name}: {exc.message}", exc.code) from None
    return InspectedUpload(original_name=original_name, inspected=inspected)


def scan_upload(*, user: AbstractBaseUser, case: Case, uploaded_file: File) -> UploadResult:
    """Check the file completely, store it (DICOM de-identified) and queue its prediction, all or nothing.
    The same bytes uploaded to the same case again return the existing scan. One file is one scan, DICOM
    included; the files of a series uploaded together become a series (diagnosis.services.series)."""
    ensure_can_add_scans(user, case)
    return scan_store(user=user, case=case, upload=scan_inspect(uploaded_file=uploaded_file))


def scan_store(*, user: AbstractBaseUser, case: Case, upload: InspectedUpload) -> UploadResult:
    """Store one checked file as a loose scan with its prediction queued."""
    # Safe to repeat: the same bytes in the same case are found again as a re-upload.
    return once_more_on_a_fresh_connection(
        lambda: _store(user=user, case=case, original_name=upload.original_name, inspected=upload.inspected)
    )


def _store(
    *, user: AbstractBaseUser, case: Case, original_name: str, inspected: InspectedImage
) -> UploadResult:
    existing = _existing(case, inspected.sha256)
    if existing:
        return _restore_missing_file(existing, inspected.stored_bytes)
    scan = Scan(
        case=case,
        original_name=original_name,
        sha256=inspected.sha256,
        uploaded_by=user,
        **scan_fields(inspected),
    )
    scan.file.save(
        f"{inspected.sha256}.{EXTENSIONS[inspected.format]}", ContentFile(inspected.stored_bytes), save=False
    )
    try:
        with transaction.atomic():
            case_lock_open(case_id=case.pk)
            scan.save()
            prediction = prediction_create(scan=scan)
    except IntegrityError:
        scan.file.delete(save=False)
        existing = _existing(case, inspected.sha256)
        if existing:
            return existing
        raise
    except BaseException:
        # The prediction's task is sent only after the commit, and a failure to send it is not raised, so
        # this is a failed transaction: its file would be an orphan, unless the connection dropped during
        # the COMMIT itself and the row made it after all.
        if not _row_committed(scan):
            scan.file.delete(save=False)
        raise
    logger.info("Scan %s uploaded to case %s by %s", scan.pk, case.pk, user.pk)
    return UploadResult(scan=scan, prediction=prediction, created=True)
