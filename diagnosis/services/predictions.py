from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F, Q
from django.utils import timezone

from diagnosis.errors import ApplicationError
from diagnosis.models import Prediction, Scan
from diagnosis.services.access import ensure_can_change_case
from diagnosis.services.cases import case_refresh_status
from ml.models import ModelVersion

if TYPE_CHECKING:
    from diagnosis.inference import Outcome

logger = logging.getLogger(__name__)

NO_ACTIVE_MODEL = "no active model"
# A database that is restarting or unreachable: the task retries, so the claim on the prediction is undone.
TRANSIENT_DATABASE_ERRORS = (OperationalError, InterfaceError)


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


def _stale_before() -> datetime:
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


def _release(prediction: Prediction) -> None:
    """Undo a claim after a transient fault, so the retried task can take the prediction again at once.
    If the database is still away, the sweep queues the prediction again once the claim is stale."""
    try:
        Prediction.objects.filter(
            pk=prediction.pk, status=Prediction.Status.RUNNING, started_at=prediction.started_at
        ).update(status=Prediction.Status.QUEUED, started_at=None, attempts=F("attempts") - 1)
    except TRANSIENT_DATABASE_ERRORS:
        logger.warning("Could not release prediction %s; the sweep will queue it again.", prediction.pk)


def _finish(prediction: Prediction, **fields) -> Prediction:
    fields["finished_at"] = timezone.now()
    for name, value in fields.items():
        setattr(prediction, name, value)
    with transaction.atomic():
        prediction.save(update_fields=list(fields))
        case_refresh_status(case_id=prediction.scan.case_id)
    return prediction


def prediction_fail(
    *, prediction: Prediction, reason: str, model_version: ModelVersion | None = None
) -> Prediction:
    fields = {"model_version": model_version} if model_version else {}
    return _finish(prediction, status=Prediction.Status.FAILED, error=reason or "unknown error", **fields)


def prediction_abandon(*, prediction_id: int, reason: str) -> Prediction | None:
    """Fail a prediction a worker gave up on (e.g. its time limit), unless it finished meanwhile."""
    with transaction.atomic():
        prediction = (
            Prediction.objects.select_for_update()
            .filter(pk=prediction_id, status=Prediction.Status.RUNNING)
            .select_related("scan")
            .first()
        )
        if prediction is None:
            return None
        return prediction_fail(prediction=prediction, reason=reason)


def _heatmap_name(prediction: Prediction) -> str:
    """Beside the scan: scans/<case>/<scan sha256>-heatmap-<prediction>.png."""
    scan_folder = prediction.scan.file.name.rsplit("/", 1)[0]
    return f"{scan_folder}/{prediction.scan.sha256}-heatmap-{prediction.pk}.png"


def _record_outcome(prediction: Prediction, model_version: ModelVersion, outcome: Outcome) -> Prediction:
    storage = prediction.heatmap.storage
    heatmap_name = storage.save(_heatmap_name(prediction), ContentFile(outcome.heatmap_png))
    try:
        return _finish(
            prediction,
            status=Prediction.Status.DONE,
            model_version=model_version,
            label=outcome.label,
            probability=outcome.probability,
            input_sha256=outcome.input_sha256,
            preprocess_ms=outcome.preprocess_ms,
            inference_ms=outcome.inference_ms,
            heatmap=heatmap_name,
            error="",
        )
    except BaseException:
        storage.delete(heatmap_name)
        raise


def _model_for(prediction: Prediction) -> ModelVersion | None:
    return prediction.requested_model or ModelVersion.objects.filter(is_active=True).first()


def prediction_run(*, prediction_id: int) -> Prediction | None:
    """The worker's job: classify the scan with the requested or active model and store the outcome.

    Bad input fails the prediction with its reason. Transient database faults undo the claim and propagate
    for the task to retry. Anything else propagates and leaves the prediction running: the sweep queues it
    again, and after LUMBAR_PREDICTION_MAX_ATTEMPTS claims it fails."""
    prediction = _claim(prediction_id)
    if prediction is None:
        return None
    max_attempts = settings.LUMBAR_PREDICTION_MAX_ATTEMPTS
    if prediction.attempts > max_attempts:
        return prediction_fail(
            prediction=prediction,
            reason=f"gave up after {max_attempts} attempts: the worker stopped before finishing each time",
        )
    from diagnosis.inference import InferenceError, classify_scan

    try:
        model_version = _model_for(prediction)
        if model_version is None:
            return prediction_fail(prediction=prediction, reason=NO_ACTIVE_MODEL)
        try:
            outcome = classify_scan(scan=prediction.scan, model_version=model_version)
        except InferenceError as exc:
            return prediction_fail(prediction=prediction, reason=str(exc), model_version=model_version)
        return _record_outcome(prediction, model_version, outcome)
    except TRANSIENT_DATABASE_ERRORS:
        _release(prediction)
        raise


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
