from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from diagnosis.errors import ApplicationError
from diagnosis.models import Prediction, Scan
from diagnosis.services.access import ensure_can_change_case
from diagnosis.services.cases import case_refresh_status
from ml.models import ModelVersion

logger = logging.getLogger(__name__)

NO_ACTIVE_MODEL = "no active model"


def _queue(prediction: Prediction) -> None:
    from diagnosis.tasks import run_prediction

    transaction.on_commit(lambda: run_prediction.delay(prediction.pk))


def prediction_create(*, scan: Scan, model_version: ModelVersion | None = None) -> Prediction:
    """A queued prediction whose task is sent once the surrounding transaction commits."""
    prediction = Prediction.objects.create(scan=scan, requested_model=model_version)
    _queue(prediction)
    return prediction


def prediction_request(
    *, user: AbstractBaseUser, scan: Scan, model_version: ModelVersion | None = None
) -> Prediction:
    """Run a scan (again), with the active model or the one asked for."""
    ensure_can_change_case(user, scan.case)
    with transaction.atomic():
        return prediction_create(scan=scan, model_version=model_version)


def _stale_before() -> timezone.datetime:
    return timezone.now() - timedelta(seconds=settings.LUMBAR_PREDICTION_STALE_SECONDS)


def _claim(prediction_id: int) -> Prediction | None:
    """Mark the prediction running, unless it is finished or another worker is still on it."""
    with transaction.atomic():
        prediction = (
            Prediction.objects.select_for_update().filter(pk=prediction_id).select_related("scan").first()
        )
        if prediction is None:
            logger.warning("Prediction %s no longer exists; nothing to do.", prediction_id)
            return None
        running_elsewhere = (
            prediction.status == Prediction.Status.RUNNING
            and prediction.started_at is not None
            and prediction.started_at > _stale_before()
        )
        if prediction.status in (Prediction.Status.DONE, Prediction.Status.FAILED) or running_elsewhere:
            return None
        prediction.status = Prediction.Status.RUNNING
        prediction.started_at = timezone.now()
        prediction.attempts += 1
        prediction.save(update_fields=["status", "started_at", "attempts"])
    return prediction


def _finish(prediction: Prediction, **fields) -> Prediction:
    fields["finished_at"] = timezone.now()
    for name, value in fields.items():
        setattr(prediction, name, value)
    prediction.save(update_fields=[*fields, "heatmap"] if "heatmap" in fields else list(fields))
    case_refresh_status(case_id=prediction.scan.case_id)
    return prediction


def prediction_fail(*, prediction: Prediction, reason: str) -> Prediction:
    return _finish(prediction, status=Prediction.Status.FAILED, error=reason or "unknown error")


def prediction_run(*, prediction_id: int) -> Prediction | None:
    """The worker's job: classify the scan with the requested or active model and store the outcome.
    Bad input fails the prediction with its reason; database and broker faults propagate for a retry."""
    prediction = _claim(prediction_id)
    if prediction is None:
        return None
    model_version = prediction.requested_model or ModelVersion.objects.filter(is_active=True).first()
    if model_version is None:
        return prediction_fail(prediction=prediction, reason=NO_ACTIVE_MODEL)
    from diagnosis.inference import InferenceError, classify_scan

    try:
        outcome = classify_scan(scan=prediction.scan, model_version=model_version)
    except InferenceError as exc:
        prediction.model_version = model_version
        return prediction_fail(prediction=prediction, reason=str(exc))
    heatmap = ContentFile(outcome.heatmap_png, name=f"prediction-{prediction.pk}.png")
    prediction.heatmap.save(heatmap.name, heatmap, save=False)
    return _finish(
        prediction,
        status=Prediction.Status.DONE,
        model_version=model_version,
        label=outcome.label,
        probability=outcome.probability,
        input_sha256=outcome.input_sha256,
        preprocess_ms=outcome.preprocess_ms,
        inference_ms=outcome.inference_ms,
        error="",
        heatmap=prediction.heatmap,
    )


def prediction_requeue_stale() -> list[int]:
    """Queue again what a crashed worker or a lost message left behind."""
    stale_before = _stale_before()
    stale = Prediction.objects.filter(
        Q(status=Prediction.Status.QUEUED, queued_at__lt=stale_before)
        | Q(status=Prediction.Status.RUNNING, started_at__lt=stale_before)
    )
    requeued = []
    for prediction in stale:
        with transaction.atomic():
            _queue(prediction)
        requeued.append(prediction.pk)
    if requeued:
        logger.info("Re-queued stale predictions %s", requeued)
    return requeued


def ensure_done(prediction: Prediction) -> None:
    if prediction.status != Prediction.Status.DONE:
        raise ApplicationError(
            "Only a finished prediction can be reviewed.", {"prediction": ["The prediction is not done yet."]}
        )
