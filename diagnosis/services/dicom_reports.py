"""Results back as DICOM: a finished prediction as a Structured Report (and its heatmap as a Secondary
Capture) to download or to send to the configured PACS."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import numpy as np
import pydicom
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from PIL import Image

from diagnosis.dicom.report import (
    LevelFinding,
    PatientIdentity,
    PredictionResult,
    ReviewDecision,
    heatmap_secondary_capture,
    structured_report,
)
from diagnosis.dicom.sender import Destination, SendError, send_instances
from diagnosis.errors import ApplicationError
from diagnosis.models import Prediction, Scan
from diagnosis.selectors import prediction_opinions
from diagnosis.services.access import ensure_can_work

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DicomResults:
    report: pydicom.Dataset
    heatmap: pydicom.Dataset | None


def _refuse(message: str) -> ApplicationError:
    return ApplicationError(message, {"prediction": [message]})


def _result(prediction: Prediction) -> PredictionResult:
    review = prediction_opinions(prediction).review
    model = prediction.model_version
    return PredictionResult(
        prediction_id=prediction.pk,
        label=prediction.label,
        probability=prediction.probability,
        reason=prediction.reason,
        model_name=model.name if model else "",
        model_version=model.version if model else "",
        finished_at=prediction.finished_at,
        levels=[
            LevelFinding(
                level=level.level,
                grade=level.grade,
                grade_probabilities=list(level.grade_probabilities),
                degenerated_probability=level.degenerated_probability,
                box=list(level.box) if level.box else None,
            )
            for level in prediction.levels.order_by("level")
        ],
        review=ReviewDecision(
            decision=review.decision,
            final_label=review.final_label,
            reviewer=review.reviewer.get_full_name() or review.reviewer.get_username(),
            comment=review.comment,
        )
        if review
        else None,
    )


def prediction_dicom_results(*, prediction: Prediction) -> DicomResults:
    """The SR (and the heatmap image, when there is one) of a finished prediction on a DICOM slice."""
    if prediction.status != Prediction.Status.DONE:
        raise _refuse("Only a finished prediction has a DICOM report.")
    scan = prediction.scan
    if scan.format != Scan.Format.DICOM:
        raise _refuse("A DICOM report references a DICOM image; this prediction was made on a PNG or JPEG.")
    try:
        with scan.file.open("rb") as handle:
            source = pydicom.dcmread(handle)
    except (FileNotFoundError, pydicom.errors.InvalidDicomError):
        raise _refuse("The stored scan file cannot be read.") from None
    patient = scan.case.patient
    identity = PatientIdentity(
        identifier=patient.identifier, name=patient.name, birth_date=patient.birth_date, sex=patient.sex
    )
    result = _result(prediction)
    report = structured_report(source=source, patient=identity, result=result)
    heatmap = None
    if prediction.heatmap:
        with prediction.heatmap.open("rb") as handle:
            pixels = np.asarray(Image.open(handle).convert("RGB"))
        heatmap = heatmap_secondary_capture(
            source=source, patient=identity, result=result, heatmap_rgb=pixels
        )
    return DicomResults(report=report, heatmap=heatmap)


def dicom_bytes(dataset: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def pacs_destination() -> Destination | None:
    if not settings.LUMBAR_PACS_HOST:
        return None
    return Destination(
        host=settings.LUMBAR_PACS_HOST,
        port=settings.LUMBAR_PACS_PORT,
        ae_title=settings.LUMBAR_PACS_AE_TITLE,
        calling_ae_title=settings.LUMBAR_DICOM_AE_TITLE,
    )


def prediction_send_to_pacs(
    *, user: AbstractBaseUser | None, prediction: Prediction, destination: Destination | None = None
) -> DicomResults:
    """C-STORE the SR and the heatmap image to the PACS (the configured one unless another is given)."""
    if user is not None:
        ensure_can_work(user)
    destination = destination or pacs_destination()
    if destination is None:
        raise _refuse("No PACS is configured (LUMBAR_PACS_HOST).")
    results = prediction_dicom_results(prediction=prediction)
    instances = [results.report] + ([results.heatmap] if results.heatmap is not None else [])
    try:
        send_instances(destination, instances)
    except SendError as exc:
        raise _refuse(f"Not sent: {exc}") from None
    logger.info("Prediction %s sent to %s as DICOM SR", prediction.pk, destination.ae_title)
    return results
