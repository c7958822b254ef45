"""A real Celery worker process picks up queued predictions and records the outcome in the database."""

from __future__ import annotations

import io
import signal
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from kombu import Connection
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from diagnosis.models import Prediction
from diagnosis.services.predictions import NO_ACTIVE_MODEL, prediction_request
from diagnosis.services.scans import scan_upload
from diagnosis.tasks import run_prediction
from ml.models import ModelVersion
from ml.registry import model_version_register
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
    start_worker, active_model, model_artifacts
):
    worker = start_worker()
    case = CaseFactory()
    uploads = [
        scan_upload(user=case.owner, case=case, uploaded_file=SimpleUploadedFile(name, data))
        for name, data in _scan_files().items()
    ]

    for upload in uploads:
        prediction = wait_for_status(upload.prediction, FINISHED, worker)
        scan = prediction.scan
        assert prediction.status == Prediction.Status.DONE, f"{scan.original_name}: {prediction.error}"
        assert prediction.model_version == active_model
        assert prediction.label in Prediction.Label.values and 0.0 <= prediction.probability <= 1.0
        assert prediction.input_sha256 and prediction.preprocess_ms > 0 and prediction.inference_ms > 0
        with Image.open(prediction.heatmap.path) as heatmap:
            heatmap.load()
            assert heatmap.size == (scan.width, scan.height), scan.original_name
    assert {upload.scan.format for upload in uploads} == {"png", "dicom"}

    vgg = model_version_register(artifact_dir=model_artifacts["vgg"])
    rerun = prediction_request(user=case.owner, scan=uploads[0].scan, model_version=vgg)
    rerun = wait_for_status(rerun, FINISHED, worker)
    assert (rerun.status, rerun.model_version) == (Prediction.Status.DONE, vgg)

    log = worker.output()
    assert log.count(f"Loaded model {active_model.name} ") == 1
    assert log.count(f"Loaded model {vgg.name} ") == 1
    # Keras lives only in the pool process that ran the tasks, never in the parent that forks it.
    assert not _maps_tensorflow(worker.process.pid)
    assert all(_maps_tensorflow(pid) for pid in worker.pool_pids())


def test_prediction_of_a_killed_worker_is_finished_after_a_restart(start_worker, active_model, case):
    worker = start_worker()
    prediction = prediction_request(user=case.owner, scan=ScanFactory(case=case))
    # The first task of a fresh pool process loads Keras and the model after claiming the prediction:
    # seconds in which it is certainly running.
    wait_for_status(prediction, {Prediction.Status.RUNNING, *FINISHED}, worker)
    worker.kill(signal.SIGKILL)
    prediction.refresh_from_db()
    assert prediction.status == Prediction.Status.RUNNING, worker.output()

    restarted = start_worker(
        beat=True, LUMBAR_PREDICTION_STALE_SECONDS="3", LUMBAR_SWEEP_INTERVAL_SECONDS="1"
    )
    prediction = wait_for_status(prediction, FINISHED, restarted)

    assert prediction.status == Prediction.Status.DONE, prediction.error
    assert prediction.attempts == 2 and prediction.heatmap


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
