"""What the DICOM receiver hands over: each series is stored like an upload in the case its PatientID
points to, or waits in the incoming list until staff or a clinician attach it to a case."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from diagnosis.dicom.receiver import ReceivedFolder, instance_files, safe_uid_name
from diagnosis.errors import ApplicationError
from diagnosis.imaging import ImageRejected, inspect_upload
from diagnosis.models import Case, IncomingSeries, Patient, Series
from diagnosis.services.access import ensure_can_work
from diagnosis.services.scans import InspectedUpload, ensure_can_add_scans
from diagnosis.services.series import SeriesResult, dicom_date, series_store

logger = logging.getLogger(__name__)

INCOMING_FOLDER = "dicom-incoming"


@dataclass(frozen=True)
class ReceivedSeries:
    series_uid: str
    series: SeriesResult | None  # stored in a case
    incoming: IncomingSeries | None  # waiting to be attached


def receiving_user() -> AbstractBaseUser | None:
    """The account that owns the cases the receiver opens; configuration errors stop the receiver."""
    username = settings.LUMBAR_DICOM_RECEIVING_USER
    if not username:
        return None
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise ApplicationError(f"LUMBAR_DICOM_RECEIVING_USER names no active account: {username!r}.")
    ensure_can_work(user)
    return user


def _read(paths: list[Path]) -> dict[str, list[tuple[Path, InspectedUpload]]]:
    """The folder's instances by series UID. The receiver checked each before acknowledging it, so one
    that cannot be read now (a disk fault since) is logged and left out, never stops the others."""
    by_series: dict[str, list[tuple[Path, InspectedUpload]]] = {}
    for path in paths:
        try:
            inspected = inspect_upload(
                path.read_bytes(),
                max_bytes=settings.LUMBAR_MAX_UPLOAD_BYTES,
                max_pixels=settings.LUMBAR_MAX_IMAGE_PIXELS,
            )
        except (OSError, ImageRejected) as exc:
            logger.error("Received instance %s cannot be read (%s); left out", path.name, exc)
            continue
        upload = InspectedUpload(original_name=path.name, inspected=inspected)
        by_series.setdefault(inspected.dicom.series_uid, []).append((path, upload))  # type: ignore[union-attr]
    return by_series


def received_folder_store(*, folder: ReceivedFolder) -> list[ReceivedSeries]:
    """Store what one association delivered, then remove its spool folder. Safe to repeat after a fault
    half-way: series already stored recognise their instances, incoming ones keep their files."""
    user = receiving_user()
    results = []
    for series_uid, items in _read(instance_files(folder.path)).items():
        info = items[0][1].inspected.dicom
        case = _case_for(info.patient_id, user)  # type: ignore[union-attr]
        if case is None:
            incoming = _hold(series_uid, items, folder.calling_ae_title)
            results.append(ReceivedSeries(series_uid=series_uid, series=None, incoming=incoming))
            continue
        stored = series_store(
            user=user or case.owner,
            case=case,
            uploads=[upload for _, upload in items],
            source=Series.Source.NETWORK,
        )
        logger.info("Received series %s stored in case %s", stored.series.pk, case.pk)
        results.append(ReceivedSeries(series_uid=series_uid, series=stored, incoming=None))
    shutil.rmtree(folder.path, ignore_errors=True)
    return results


def _case_for(patient_id: str | None, user: AbstractBaseUser | None) -> Case | None:
    """The open case of the registered patient the PatientID names, or a new one for the receiving account."""
    if not patient_id:
        return None
    patient = Patient.objects.filter(identifier__iexact=patient_id.strip()).first()
    if patient is None:
        return None
    with transaction.atomic():
        Patient.objects.select_for_update().filter(pk=patient.pk).first()  # one new case, not two at once
        case = patient.cases.exclude(status=Case.Status.SIGNED_OFF).order_by("-created_at").first()
        if case is None and user is not None:
            case = Case.objects.create(
                patient=patient, owner=user, notes="Opened for a study received from the DICOM network."
            )
    return case


def _hold(series_uid: str, items: list[tuple[Path, InspectedUpload]], calling_ae: str) -> IncomingSeries:
    """Move the files as received to the incoming folder and list the series there."""
    relative = f"{INCOMING_FOLDER}/{safe_uid_name(series_uid)}"
    target = Path(settings.MEDIA_ROOT) / relative
    target.mkdir(parents=True, exist_ok=True)
    for path, _ in items:
        shutil.copy2(path, target / path.name)
    info = items[0][1].inspected.dicom
    incoming, _ = IncomingSeries.objects.update_or_create(
        series_uid=series_uid[:64],
        defaults={
            "study_uid": (info.study_uid or "")[:64],
            "patient_id": (info.patient_id or "")[:64],
            "patient_name": (info.patient_name or "").replace("^", " ").strip()[:200],
            "modality": (info.modality or "")[:16],
            "series_description": (info.series_description or "")[:255],
            "study_date": dicom_date(info.study_date),
            "instance_count": len(instance_files(target)),
            "folder": relative,
            "calling_ae_title": calling_ae[:16],
        },
    )
    logger.info("Received series %s waits in the incoming list (no case for it)", incoming.pk)
    return incoming


def incoming_attach(*, user: AbstractBaseUser, incoming: IncomingSeries, case: Case) -> SeriesResult:
    """Attach a waiting series to a case: de-identified and stored like an upload, and checked against the
    case's patient; the waiting files and the record with the identifiers are then deleted."""
    ensure_can_work(user)
    ensure_can_add_scans(user, case)
    folder = Path(settings.MEDIA_ROOT) / incoming.folder
    items = [item for group in _read(instance_files(folder)).values() for item in group]
    if not items:
        raise ApplicationError(
            "The received files of this series are missing.", {"incoming": ["No readable files."]}
        )
    stored = series_store(
        user=user, case=case, uploads=[upload for _, upload in items], source=Series.Source.NETWORK
    )
    incoming.delete()
    shutil.rmtree(folder, ignore_errors=True)
    return stored
