"""A real Celery worker process picks up queued predictions and records the outcome in the database."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import time
from pathlib import Path

import numpy as np
import psycopg2
import pydicom
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.handlers.wsgi import WSGIHandler
from django.db import connection
from django.test import Client, RequestFactory
from kombu import Connection
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from rest_framework.test import APIClient

from diagnosis.models import Prediction
from diagnosis.services.predictions import NO_ACTIVE_MODEL, prediction_request
from diagnosis.services.scans import scan_upload
from diagnosis.tasks import run_prediction
from ml.models import ModelVersion
from tests.factories import CaseFactory, PredictionFactory, ScanFactory

pytestmark = pytest.mark.worker

FINISHED = {Prediction.Status.FAILED, Prediction.Status.DONE}
SAMPLE_PNG = next(Path(__file__).resolve().parents[1].glob("data/sudirman_sample/normal/*.png"))
PYDICOM_MR_SAMPLES = ["MR_small.dcm", "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "emri_small.dcm"]


def wait_for_status(prediction: Prediction, statuses: set[str], worker, timeout: float = 120) -> Prediction:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        prediction.refresh_from_db()
        if prediction.status in statuses:
            return prediction
        time.sleep(0.1)
    raise AssertionError(f"prediction stayed {prediction.status}; worker log:\n{worker.output()}")


def _spine_phantom(rows: int = 96, columns: int = 80, maximum: int = 3000) -> np.ndarray:
    """A bright vertical band with darker discs across it, in 12 bits."""
    image = np.full((rows, columns), 300, dtype=np.uint16)
    image[:, columns // 3 : 2 * columns // 3] = maximum
    image[rows // 8 :: rows // 4, columns // 3 : 2 * columns // 3] = maximum // 3
    return image


def _generated_dicom(pixels: np.ndarray, photometric: str, **attributes: object) -> bytes:
    dataset = pydicom.dcmread(get_testdata_file("MR_small.dcm", download=False))
    for keyword in ("WindowCenter", "WindowWidth", "RescaleIntercept", "RescaleSlope"):
        dataset.pop(keyword, None)
    dataset.set_pixel_data(pixels, photometric, 12)
    dataset.SOPInstanceUID = generate_uid()
    for keyword, value in attributes.items():
        setattr(dataset, keyword, value)
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _scan_files() -> dict[str, bytes]:
    phantom = _spine_phantom()
    files = {
        SAMPLE_PNG.name: SAMPLE_PNG.read_bytes(),
        "windowed-16bit.dcm": _generated_dicom(phantom, "MONOCHROME2", WindowCenter=1500, WindowWidth=2000),
        "monochrome1.dcm": _generated_dicom(phantom.max() - phantom, "MONOCHROME1"),
    }
    for name in PYDICOM_MR_SAMPLES:
        path = get_testdata_file(name, download=False)
        if path is not None:
            files[name] = Path(path).read_bytes()
    return files


def _maps_tensorflow(pid: int) -> bool:
    return "tensorflow" in Path(f"/proc/{pid}/maps").read_text()


def test_uploads_are_classified_with_a_heatmap_and_the_model_loads_once(
    start_worker, active_model, other_model
):
    worker = start_worker()
    case = CaseFactory()
    uploads = [
        scan_upload(user=case.owner, case=case, uploaded_file=SimpleUploadedFile(name, data))
        for name, data in _scan_files().items()
    ]

    outcomes = {}
    for upload in uploads:
        prediction = wait_for_status(upload.prediction, FINISHED, worker)
        scan = prediction.scan
        assert prediction.status == Prediction.Status.DONE, f"{scan.original_name}: {prediction.error}"
        assert prediction.model_version == active_model
        assert prediction.input_sha256 and prediction.preprocess_ms > 0 and prediction.inference_ms > 0
        outcomes[scan.original_name] = prediction.label
        if prediction.label == Prediction.Label.NOT_ASSESSABLE:
            assert prediction.reason and not prediction.heatmap and not prediction.levels.exists()
            continue
        assert 0.0 <= prediction.probability <= 1.0 and prediction.levels.count() == 3
        with Image.open(prediction.heatmap.path) as heatmap:
            heatmap.load()
            assert heatmap.size == (scan.width, scan.height), scan.original_name
    assert {upload.scan.format for upload in uploads} == {"png", "dicom"}
    # The real lumbar slice is graded (phantoms and pydicom's test images may well be refused).
    assert outcomes[SAMPLE_PNG.name] in {"normal", "ddd"}, outcomes

    rerun = prediction_request(user=case.owner, scan=uploads[0].scan, model_version=other_model)
    rerun = wait_for_status(rerun, FINISHED, worker)
    assert (rerun.status, rerun.model_version) == (Prediction.Status.DONE, other_model)

    log = worker.output()
    # The active model was loaded and traced when the pool process started, before its first task ran, so
    # the first upload took no longer than the next ones; the other model was loaded when first asked for.
    assert log.count(f"Loaded and traced model {active_model.name} ") == 1
    assert log.index(f"Loaded and traced model {active_model.name} ") < log.index("succeeded in")
    durations = [float(d) for d in re.findall(r"run_prediction\[[^]]+\] succeeded in ([0-9.]+)s", log)]
    assert durations[0] < max(durations[1 : len(uploads)]) + 2.0, durations
    assert log.count(f"Loaded and traced model {other_model.name} ") == 1
    # Keras lives only in the pool process that ran the tasks, never in the parent that forks it.
    assert not _maps_tensorflow(worker.process.pid)
    assert all(_maps_tensorflow(pid) for pid in worker.pool_pids())


def _running(prediction: Prediction, worker) -> Prediction:
    """The first task of a fresh pool process that did not warm up loads Keras and the model after
    claiming the prediction: seconds in which it is certainly running."""
    prediction = wait_for_status(prediction, {Prediction.Status.RUNNING, *FINISHED}, worker)
    assert prediction.status == Prediction.Status.RUNNING, worker.output()
    return prediction


# Well under LUMBAR_PREDICTION_STALE_SECONDS (600): the sweep has no part in these recoveries.
PROMPTLY = 60


def test_predictions_of_a_killed_worker_are_finished_at_once_after_a_restart(
    start_worker, active_model, case
):
    worker = start_worker(LUMBAR_WORKER_WARM_UP="false")
    running, *waiting = [prediction_request(user=case.owner, scan=ScanFactory(case=case)) for _ in range(3)]
    running = _running(running, worker)
    worker.kill(signal.SIGKILL)
    running.refresh_from_db()
    assert running.status == Prediction.Status.RUNNING, worker.output()

    restarted = start_worker(LUMBAR_WORKER_WARM_UP="false")
    finished = [wait_for_status(p, FINISHED, restarted, timeout=PROMPTLY) for p in (running, *waiting)]

    assert [p.status for p in finished] == [Prediction.Status.DONE] * 3, [p.error for p in finished]
    # All promptly: the killed worker held no message it had not started (Redis would give that back only
    # after the visibility timeout), and only the one it was running counts an attempt more.
    assert [p.attempts for p in finished] == [2, 1, 1]
    assert f"Re-queued predictions [{running.pk}] left running by an earlier run" in restarted.output()


def test_prediction_of_a_killed_pool_process_is_taken_over_by_the_next_one(start_worker, active_model, case):
    worker = start_worker(LUMBAR_WORKER_WARM_UP="false")
    prediction = _running(prediction_request(user=case.owner, scan=ScanFactory(case=case)), worker)
    (pool_pid,) = worker.pool_pids()
    os.kill(pool_pid, signal.SIGKILL)

    prediction = wait_for_status(prediction, FINISHED, worker, timeout=PROMPTLY)

    assert prediction.status == Prediction.Status.DONE, prediction.error
    assert prediction.attempts == 2 and prediction.claimed_pid != pool_pid
    assert f"pool process {pool_pid} of {prediction.claimed_by} died running it" in worker.output()


@pytest.fixture
def unreachable_broker(start_worker, monkeypatch):
    """This process publishes to a port nothing listens on, as a web process whose broker is down; a
    worker started by the test still uses the real one."""
    from lumbar_platform.celery import app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setitem(app.conf, "broker_write_url", f"redis://127.0.0.1:{port}/0")
    monkeypatch.setattr(app, "_pool", None)
    monkeypatch.setattr(app.amqp, "_producer_pool", None)


def test_upload_while_the_broker_is_down_is_accepted_and_dispatched_once_a_worker_sees_it(
    start_worker, unreachable_broker, active_model, case
):
    client = APIClient()
    client.force_authenticate(case.owner)

    response = client.post(
        f"/api/v1/cases/{case.pk}/scans/",
        {"file": SimpleUploadedFile(SAMPLE_PNG.name, SAMPLE_PNG.read_bytes())},
        format="multipart",
    )

    assert response.status_code == 201, response.content
    prediction = Prediction.objects.get(pk=response.json()["prediction"]["id"])
    assert (prediction.status, prediction.dispatched_at) == (Prediction.Status.QUEUED, None)
    assert Path(prediction.scan.file.path).is_file()

    worker = start_worker(beat=True, LUMBAR_DISPATCH_INTERVAL_SECONDS="1")
    prediction = wait_for_status(prediction, FINISHED, worker, timeout=PROMPTLY)

    assert prediction.status == Prediction.Status.DONE, prediction.error
    assert prediction.dispatched_at is not None and prediction.attempts == 1


def _served_status(path: str, cookie: str) -> int:
    """Through Django's WSGI handler, as a server calls it: unlike the test client, it sends the
    request_started signal on which a kept database connection is checked."""
    environ = RequestFactory().get(path, HTTP_COOKIE=cookie).environ
    statuses = []
    response = WSGIHandler()(environ, lambda status, headers, exc_info=None: statuses.append(status))
    response.close()
    return int(statuses[0].split()[0])


def _terminate_other_backends() -> int:
    """pg_terminate_backend on every other connection to the test database, this process's included."""
    db = connection.settings_dict
    with (
        psycopg2.connect(
            dbname=db["NAME"],
            user=db["USER"],
            password=db["PASSWORD"],
            host=db["HOST"],
            port=db["PORT"] or 5432,
        ) as admin,
        admin.cursor() as cursor,
    ):
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def test_terminated_database_connections_cost_no_request_and_no_task(start_worker, case, settings):
    if connection.vendor != "postgresql":
        pytest.skip("pg_terminate_backend needs PostgreSQL; SQLite has no server connection to lose")
    ModelVersion.objects.update(is_active=False)
    worker = start_worker()
    first = prediction_request(user=case.owner, scan=ScanFactory(case=case))
    wait_for_status(first, FINISHED, worker)
    browser = Client()
    browser.force_login(case.owner, backend="diagnosis.backends.ClinicianModelBackend")
    cookie = f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}"
    assert _served_status(f"/api/v1/cases/{case.pk}/", cookie) == 200

    assert _terminate_other_backends() >= 1

    assert _served_status(f"/api/v1/cases/{case.pk}/", cookie) == 200
    second = prediction_request(user=case.owner, scan=ScanFactory(case=case))
    second = wait_for_status(second, FINISHED, worker)
    assert (second.status, second.error, second.attempts) == (Prediction.Status.FAILED, NO_ACTIVE_MODEL, 1)
    assert "Retry in" not in worker.output()


def test_worker_takes_queued_prediction_from_configured_broker(start_worker):
    ModelVersion.objects.update(is_active=False)
    worker = start_worker()
    case = CaseFactory()
    prediction = prediction_request(user=case.owner, scan=ScanFactory(case=case))
    prediction = wait_for_status(prediction, FINISHED, worker)
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
    prediction = wait_for_status(prediction, FINISHED, worker)
    assert prediction.status == Prediction.Status.FAILED
    assert prediction.error == NO_ACTIVE_MODEL
