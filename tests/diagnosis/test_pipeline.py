"""prediction_run and the sweep, in the test process: the outcome stored for each architecture, failures
with their reasons, the claim undone for a retry, and stale work queued again."""

from __future__ import annotations

import hashlib
import io
import logging
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import OperationalError
from django.utils import timezone
from PIL import Image

from diagnosis import inference
from diagnosis.models import Case, Prediction
from diagnosis.services import predictions
from diagnosis.services.predictions import (
    NO_ACTIVE_MODEL,
    prediction_request,
    prediction_requeue_stale,
    prediction_run,
)
from diagnosis.services.scans import scan_upload
from diagnosis.tasks import run_prediction
from ml import registry
from ml.models import ModelVersion
from ml.registry import load_analyser
from tests.factories import PredictionFactory, ScanFactory

SAMPLE_SCAN = next(Path(__file__).resolve().parents[1].glob("data/sudirman_sample/ddd/*.png"))


def _uploaded_prediction(case: Case) -> Prediction:
    uploaded = SimpleUploadedFile(SAMPLE_SCAN.name, SAMPLE_SCAN.read_bytes())
    return scan_upload(user=case.owner, case=case, uploaded_file=uploaded).prediction


def _raising(exception: BaseException):
    def raise_it(**kwargs):
        raise exception

    return raise_it


def test_finished_prediction_has_result_timings_and_a_heatmap_beside_the_scan(case, active_model):
    model_version = active_model
    prediction = _uploaded_prediction(case)

    prediction = prediction_run(prediction_id=prediction.pk)

    scan = prediction.scan
    assert prediction.status == Prediction.Status.DONE, prediction.error
    assert prediction.model_version == model_version
    assert 0.0 <= prediction.probability <= 1.0 and prediction.reason == ""
    levels = list(prediction.levels.all())
    assert [level.level for level in levels] == ["L3-L4", "L4-L5", "L5-S1"]
    for level in levels:
        assert 1 <= level.grade <= 5 and len(level.grade_probabilities) == 5
        assert sum(level.grade_probabilities) == pytest.approx(1.0, abs=1e-3)
        assert 0.0 <= level.degenerated_probability <= 1.0
        x0, y0, x1, y1 = level.box
        assert 0 <= x0 < x1 <= scan.width and 0 <= y0 < y1 <= scan.height
    # The data's definition: DDD when any level is graded 3 or more.
    assert prediction.label == ("ddd" if max(level.grade for level in levels) >= 3 else "normal")
    assert [level.box[1] for level in levels] == sorted(level.box[1] for level in levels)  # L3-L4 on top
    # The model read the stored copy (re-encoded from the upload's pixels); the scan is known by the upload.
    assert prediction.input_sha256 == hashlib.sha256(Path(scan.file.path).read_bytes()).hexdigest()
    assert scan.sha256 == hashlib.sha256(SAMPLE_SCAN.read_bytes()).hexdigest()
    assert prediction.preprocess_ms > 0 and prediction.inference_ms > 0
    assert prediction.attempts == 1 and prediction.finished_at >= prediction.started_at
    assert Path(prediction.heatmap.path).parent == Path(scan.file.path).parent
    with Image.open(io.BytesIO(prediction.heatmap.read())) as heatmap:
        assert heatmap.format == "PNG" and heatmap.size == (scan.width, scan.height)
    case.refresh_from_db()
    assert case.status == Case.Status.AWAITING_REVIEW


@pytest.mark.parametrize(
    "pixels",
    [
        np.full((256, 256), 128, dtype=np.uint8),
        np.random.default_rng(3).integers(0, 256, (256, 256), dtype=np.uint8),
        np.flipud(np.asarray(Image.open(SAMPLE_SCAN).convert("L"))),
    ],
    ids=["flat", "noise", "upside-down-spine"],
)
def test_what_is_not_a_lumbar_mri_is_not_assessable_with_its_reason(case, active_model, pixels):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    uploaded = SimpleUploadedFile("not-a-spine.png", buffer.getvalue())
    prediction = scan_upload(user=case.owner, case=case, uploaded_file=uploaded).prediction

    prediction = prediction_run(prediction_id=prediction.pk)

    assert (prediction.status, prediction.label) == (Prediction.Status.DONE, "not_assessable")
    assert prediction.reason and prediction.probability is None
    assert not prediction.levels.exists() and not prediction.heatmap


def test_prediction_can_be_run_again_with_another_model_version(case, active_model, other_model):
    first = prediction_run(prediction_id=_uploaded_prediction(case).pk)

    again = prediction_request(user=case.owner, scan=first.scan, model_version=other_model)
    again = prediction_run(prediction_id=again.pk)

    assert (first.status, first.model_version) == (Prediction.Status.DONE, active_model)
    assert (again.status, again.model_version, again.requested_model) == (
        Prediction.Status.DONE,
        other_model,
        other_model,
    )
    assert again.heatmap.name != first.heatmap.name


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"not an image any more", "the stored scan cannot be read: The file is not a PNG, JPEG or DICOM"),
        (None, "the stored scan file is missing"),
    ],
    ids=["damaged", "missing"],
)
def test_unreadable_stored_scan_fails_with_its_reason(active_model, content, reason):
    scan = ScanFactory(content=content or b"gone")
    if content is None:
        scan.file.delete(save=False)
    prediction = PredictionFactory(scan=scan)

    prediction = prediction_run(prediction_id=prediction.pk)

    assert prediction.status == Prediction.Status.FAILED
    assert prediction.error.startswith(reason)
    assert prediction.model_version == active_model and not prediction.heatmap


def test_without_an_active_model_the_prediction_fails_with_that_reason(db):
    ModelVersion.objects.update(is_active=False)
    prediction = PredictionFactory()

    prediction = prediction_run(prediction_id=prediction.pk)

    assert (prediction.status, prediction.error) == (Prediction.Status.FAILED, NO_ACTIVE_MODEL)


def test_transient_database_fault_undoes_the_claim_so_the_retry_can_run(case, active_model, monkeypatch):
    prediction = _uploaded_prediction(case)
    monkeypatch.setattr(inference, "classify_scan", _raising(OperationalError("server closed")))

    with pytest.raises(OperationalError):
        prediction_run(prediction_id=prediction.pk)

    prediction.refresh_from_db()
    assert (prediction.status, prediction.started_at, prediction.attempts) == (
        Prediction.Status.QUEUED,
        None,
        0,
    )
    monkeypatch.undo()
    assert prediction_run(prediction_id=prediction.pk).status == Prediction.Status.DONE


def test_database_fault_while_recording_the_outcome_leaves_no_heatmap(
    case, active_model, media_root, monkeypatch
):
    prediction = _uploaded_prediction(case)
    monkeypatch.setattr(predictions, "case_refresh_status", _raising(OperationalError("server closed")))

    with pytest.raises(OperationalError):
        prediction_run(prediction_id=prediction.pk)

    prediction.refresh_from_db()
    assert (prediction.status, prediction.heatmap.name) == (Prediction.Status.QUEUED, "")
    assert [path.name for path in media_root.rglob("*.png")] == [prediction.scan.file.name.rsplit("/")[-1]]


def test_soft_time_limit_fails_the_prediction_with_that_reason(active_model, monkeypatch, settings):
    prediction = PredictionFactory()
    monkeypatch.setattr(inference, "classify_scan", _raising(SoftTimeLimitExceeded()))

    run_prediction(prediction.pk)

    prediction.refresh_from_db()
    assert prediction.status == Prediction.Status.FAILED
    assert prediction.error == f"the prediction took longer than {settings.CELERY_TASK_SOFT_TIME_LIMIT} s"


def test_prediction_running_elsewhere_or_finished_is_left_alone(db):
    running = PredictionFactory(status=Prediction.Status.RUNNING, started_at=timezone.now(), attempts=1)
    done = PredictionFactory(status=Prediction.Status.DONE, label="normal", probability=0.1)

    assert prediction_run(prediction_id=running.pk) is None
    assert prediction_run(prediction_id=done.pk) is None
    running.refresh_from_db()
    assert (running.status, running.attempts) == (Prediction.Status.RUNNING, 1)


def test_prediction_whose_worker_died_each_time_gives_up(active_model, settings):
    long_ago = timezone.now() - timedelta(hours=1)
    prediction = PredictionFactory(
        status=Prediction.Status.RUNNING,
        started_at=long_ago,
        attempts=settings.LUMBAR_PREDICTION_MAX_ATTEMPTS,
    )

    prediction = prediction_run(prediction_id=prediction.pk)

    assert prediction.status == Prediction.Status.FAILED
    assert prediction.error.startswith(f"gave up after {settings.LUMBAR_PREDICTION_MAX_ATTEMPTS} attempts")


def test_sweep_queues_again_only_what_is_stale(db, settings, django_capture_on_commit_callbacks, monkeypatch):
    sent = []
    monkeypatch.setattr(run_prediction, "apply_async", lambda args: sent.append(args[0]))
    long_ago = timezone.now() - timedelta(seconds=settings.LUMBAR_PREDICTION_STALE_SECONDS + 1)
    stale_queued, fresh_queued, old_done = PredictionFactory.create_batch(3)
    Prediction.objects.filter(pk__in=[stale_queued.pk, old_done.pk]).update(queued_at=long_ago)
    Prediction.objects.filter(pk=old_done.pk).update(status="done", label="normal", probability=0.2)
    stale_running = PredictionFactory(status=Prediction.Status.RUNNING, started_at=long_ago)
    PredictionFactory(status=Prediction.Status.RUNNING, started_at=timezone.now())

    with django_capture_on_commit_callbacks(execute=True):
        requeued = prediction_requeue_stale()

    assert sorted(requeued) == sorted(sent) == sorted([stale_queued.pk, stale_running.pk])
    assert Prediction.objects.filter(pk__in=requeued, dispatched_at__isnull=False).count() == 2


def test_model_is_loaded_and_traced_once_per_process(active_model, caplog, monkeypatch):
    monkeypatch.setattr(registry, "_loaded_analysers", {})
    with caplog.at_level(logging.INFO, logger="ml.registry"):
        first = load_analyser(active_model)
        second = load_analyser(ModelVersion.objects.get(pk=active_model.pk))

    assert first is second
    assert [r.getMessage().split(" in ")[0] for r in caplog.records] == [
        f"Loaded and traced model {active_model.name}"
    ]
