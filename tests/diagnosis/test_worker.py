"""A real Celery worker process picks up queued predictions and records the outcome in the database."""

from __future__ import annotations

import time

import pytest
from kombu import Connection

from diagnosis.models import Prediction
from diagnosis.services.predictions import NO_ACTIVE_MODEL, prediction_request
from diagnosis.tasks import run_prediction
from ml.models import ModelVersion
from tests.factories import CaseFactory, PredictionFactory, ScanFactory

pytestmark = pytest.mark.worker


def wait_for_status(prediction: Prediction, statuses: set[str], worker, timeout: float = 120) -> Prediction:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        prediction.refresh_from_db()
        if prediction.status in statuses:
            return prediction
        time.sleep(0.3)
    raise AssertionError(f"prediction stayed {prediction.status}; worker log:\n{worker.output()}")


def test_worker_takes_queued_prediction_from_configured_broker(start_worker):
    ModelVersion.objects.update(is_active=False)
    worker = start_worker()
    case = CaseFactory()
    prediction = prediction_request(user=case.owner, scan=ScanFactory(case=case))
    prediction = wait_for_status(prediction, {Prediction.Status.FAILED, Prediction.Status.DONE}, worker)
    assert prediction.status == Prediction.Status.FAILED
    assert prediction.error == NO_ACTIVE_MODEL
    assert prediction.label == ""
    assert prediction.started_at is not None and prediction.finished_at >= prediction.started_at
    assert prediction.attempts == 1


def test_embedded_filesystem_broker_needs_no_server(start_worker, tmp_path):
    ModelVersion.objects.update(is_active=False)
    broker_dir = tmp_path / "broker"
    for sub in ("queue", "processed", "control"):
        (broker_dir / sub).mkdir(parents=True)
    worker = start_worker(CELERY_BROKER_URL="filesystem://", CELERY_FILESYSTEM_DIR=str(broker_dir))
    prediction = PredictionFactory(scan=ScanFactory())
    options = {
        "data_folder_in": str(broker_dir / "queue"),
        "data_folder_out": str(broker_dir / "queue"),
        "control_folder": str(broker_dir / "control"),
    }
    with Connection("filesystem://", transport_options=options) as connection:
        run_prediction.apply_async((prediction.pk,), connection=connection)
    prediction = wait_for_status(prediction, {Prediction.Status.FAILED, Prediction.Status.DONE}, worker)
    assert prediction.status == Prediction.Status.FAILED
    assert prediction.error == NO_ACTIVE_MODEL
