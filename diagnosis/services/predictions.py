from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from diagnosis.errors import ApplicationError, Conflict
from diagnosis.models import Prediction, PredictionLevel, Scan
from diagnosis.services.access import ensure_can_change_case
from diagnosis.services.cases import case_lock_open, case_refresh_status
from diagnosis.services.database import TRANSIENT_DATABASE_ERRORS
from ml.models import ModelVersion

if TYPE_CHECKING:
    from diagnosis.inference import Outcome

logger = logging.getLogger(__name__)

NO_ACTIVE_MODEL = "no active model"


def _dispatch(prediction_id: int) -> bool:
    """Send the prediction's task and note that the broker has it. A broker that is down or refusing
    is logged, not raised: the prediction stays owed and the dispatcher sends it later."""
    from diagnosis.tasks import run_prediction

    try:
        # CELERY_TASK_PUBLISH_RETRY_POLICY bounds how long this waits for a broker that is away.
        run_prediction.apply_async((prediction_id,))
    except Exception as exc:  # whatever the broker or its client raised: the prediction stays owed
        logger.warning("Prediction %s not sent (%s); the dispatcher will send it.", prediction_id, exc)
        return False
    Prediction.objects.filter(pk=prediction_id, dispatched_at__isnull=True).update(
        dispatched_at=timezone.now()
    )
    return True


def _queue(prediction_id: int) -> None:
    """The prediction row is the outbox: its task is sent once the surrounding transaction commits, and
    `dispatched_at` stays empty until the broker accepted it. robust: a fault after the commit is logged,
    never raised into the upload whose rows are already committed."""
    transaction.on_commit(lambda: _dispatch(prediction_id), robust=True)


def prediction_supersede(*, predictions: QuerySet[Prediction]) -> None:
    """These predictions are no longer their scan's current one (see Prediction.superseded_at): they leave
    the worklist, the sign-off's blockers and the report, and stay in the history."""
    predictions.filter(superseded_at__isnull=True).update(superseded_at=timezone.now())


def prediction_create(*, scan: Scan, model_version: ModelVersion | None = None) -> Prediction:
    """A queued prediction whose task is sent once the surrounding transaction commits; it supersedes the
    scan's earlier ones."""
    prediction_supersede(predictions=Prediction.objects.filter(scan=scan))
    prediction = Prediction.objects.create(scan=scan, requested_model=model_version)
    case_refresh_status(case_id=scan.case_id)
    _queue(prediction.pk)
    return prediction


def prediction_dispatch_owed() -> list[int]:
    """The dispatcher: send the tasks of queued predictions the broker never accepted (it was down when
    they were queued or queued again), oldest first, until the broker refuses one."""
    owed = Prediction.objects.filter(status=Prediction.Status.QUEUED, dispatched_at__isnull=True)
    sent = []
    for prediction_id in list(owed.order_by("queued_at").values_list("pk", flat=True)):
        if not _dispatch(prediction_id):
            break
        sent.append(prediction_id)
    if sent:
        logger.info("Dispatched predictions %s", sent)
    return sent


def _queue_again(predictions: QuerySet[Prediction], **fields) -> list[int]:
    """Mark them owed (and whatever else `fields` resets) and send their tasks after the commit."""
    with transaction.atomic():
        ids = list(predictions.select_for_update().values_list("pk", flat=True))
        Prediction.objects.filter(pk__in=ids).update(dispatched_at=None, **fields)
        for prediction_id in ids:
            _queue(prediction_id)
    return ids


def prediction_request(
    *, user: AbstractBaseUser, scan: Scan, model_version: ModelVersion | None = None
) -> Prediction:
    """Run a scan (again), with the active model or the one asked for. A slice of a series runs only while
    it is the series' chosen slice: the series counts by that one (series_choose_slice picks another)."""
    ensure_can_change_case(user, scan.case)
    if scan.series_id is not None and scan.series.chosen_scan_id not in (None, scan.pk):
        raise Conflict(
            "This slice is no longer the one chosen for its series; choose it for the series to run the "
            "model on it.",
            {"scan": ["Not the series' chosen slice."]},
        )
    with transaction.atomic():
        case_lock_open(case_id=scan.case_id)
        prediction = prediction_create(scan=scan, model_version=model_version)
    return prediction


def _stale_before() -> datetime:
    return timezone.now() - timedelta(seconds=settings.LUMBAR_PREDICTION_STALE_SECONDS)


def _process_is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _claimant_died(prediction: Prediction, worker: str) -> bool:
    """A pool process of this same worker node claimed the prediction and is gone (killed, out of memory):
    the worker gave its message back, so the prediction can be taken over at once instead of waiting for
    the sweep. A claimant on another node cannot be checked from here; the sweep covers it."""
    return (
        bool(worker)
        and prediction.claimed_by == worker
        and prediction.claimed_pid is not None
        and _process_is_gone(prediction.claimed_pid)
    )


def _claim(prediction_id: int, worker: str) -> Prediction | None:
    """Mark the prediction running in this process, unless it is finished or a live process is on it."""
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
        if running_elsewhere and _claimant_died(prediction, worker):
            logger.warning(
                "Prediction %s: pool process %s of %s died running it; taking it over.",
                prediction.pk,
                prediction.claimed_pid,
                worker,
            )
            running_elsewhere = False
        if prediction.status in (Prediction.Status.DONE, Prediction.Status.FAILED) or running_elsewhere:
            return None
        prediction.status = Prediction.Status.RUNNING
        prediction.started_at = timezone.now()
        prediction.attempts += 1
        prediction.claimed_by = worker
        prediction.claimed_pid = os.getpid()
        prediction.save(update_fields=["status", "started_at", "attempts", "claimed_by", "claimed_pid"])
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
    heatmap_name = _heatmap_name(prediction)
    # Only an earlier run of this same prediction, killed before it recorded its result, can have written
    # this name: replace its file rather than leave it behind under another name.
    if storage.exists(heatmap_name):
        storage.delete(heatmap_name)
    if outcome.heatmap_png is not None:
        heatmap_name = storage.save(heatmap_name, ContentFile(outcome.heatmap_png))
    else:
        heatmap_name = ""
    try:
        with transaction.atomic():
            PredictionLevel.objects.filter(prediction=prediction).delete()
            PredictionLevel.objects.bulk_create(
                PredictionLevel(
                    prediction=prediction,
                    level=finding.level,
                    box=list(finding.box),
                    grade=finding.grade,
                    grade_probabilities=list(finding.grade_probabilities),
                    degenerated_probability=finding.degenerated_probability,
                )
                for finding in outcome.levels
            )
            return _finish(
                prediction,
                status=Prediction.Status.DONE,
                model_version=model_version,
                label=outcome.label,
                reason=outcome.reason,
                probability=outcome.probability,
                input_sha256=outcome.input_sha256,
                preprocess_ms=outcome.preprocess_ms,
                inference_ms=outcome.inference_ms,
                heatmap=heatmap_name,
                error="",
            )
    except BaseException:
        if heatmap_name:
            storage.delete(heatmap_name)
        raise


def _model_for(prediction: Prediction) -> ModelVersion | None:
    return prediction.requested_model or ModelVersion.objects.filter(is_active=True).first()


def prediction_run(*, prediction_id: int, worker: str = "") -> Prediction | None:
    """The worker's job: classify the scan with the requested or active model and store the outcome.
    `worker` is the Celery node running it, recorded with this process id on the claim.

    Bad input fails the prediction with its reason. Transient database faults undo the claim and propagate
    for the task to retry. A pool process that dies leaves the prediction running until its message comes
    back to a process of the same node, which takes it over. Anything else propagates and leaves the
    prediction running: the sweep queues it again. After LUMBAR_PREDICTION_MAX_ATTEMPTS claims it fails."""
    prediction = _claim(prediction_id, worker)
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
    """The last resort: queue again what a lost message or a worker on another node left behind."""
    stale_before = _stale_before()
    requeued = _queue_again(
        Prediction.objects.filter(
            Q(status=Prediction.Status.QUEUED, queued_at__lt=stale_before)
            | Q(status=Prediction.Status.RUNNING, started_at__lt=stale_before)
        )
    )
    if requeued:
        logger.info("Re-queued stale predictions %s", requeued)
    return requeued


def prediction_requeue_left_running(*, worker: str) -> list[int]:
    """At a worker's start, queue again at once what an earlier run of the same node left behind: the
    predictions it left running (that run is over: killed, its host restarted), and every prediction whose
    task was sent but not yet taken, since a killed run may hold such a message without having started it.
    The broker gives either back only after the visibility timeout. A message that was not lost is then
    delivered twice; the second finds its prediction taken or finished and does nothing. The attempts the
    earlier run made still count."""
    waiting = _queue_again(
        Prediction.objects.filter(status=Prediction.Status.QUEUED, dispatched_at__isnull=False)
    )
    requeued = _queue_again(
        Prediction.objects.filter(status=Prediction.Status.RUNNING, claimed_by=worker),
        status=Prediction.Status.QUEUED,
        started_at=None,
    )
    if requeued:
        logger.warning("Re-queued predictions %s left running by an earlier run of %s", requeued, worker)
    if waiting:
        logger.info("Sent the tasks of queued predictions %s again at the start of %s", waiting, worker)
    return requeued + waiting


def ensure_done(prediction: Prediction) -> None:
    if prediction.status != Prediction.Status.DONE:
        raise ApplicationError(
            "Only a finished prediction can be reviewed.", {"prediction": ["The prediction is not done yet."]}
        )


def prediction_record_not_assessable(*, scan: Scan, reason: str) -> Prediction:
    """A finished prediction that says why the model was not run on this scan (e.g. an axial series):
    the clinician sees the reason where the result would be, and reviews it like any other."""
    prediction_supersede(predictions=Prediction.objects.filter(scan=scan))
    prediction = Prediction.objects.create(
        scan=scan,
        status=Prediction.Status.DONE,
        label=Prediction.Label.NOT_ASSESSABLE,
        reason=reason,
        dispatched_at=timezone.now(),
        finished_at=timezone.now(),
    )
    case_refresh_status(case_id=scan.case_id)
    return prediction
