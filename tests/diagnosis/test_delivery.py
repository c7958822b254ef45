"""An upload is never lost, in the test process: the prediction row is the outbox its task is sent from,
a broker fault leaves it owed for the dispatcher, a prediction whose pool process died is taken over, a
restarted worker queues again what it left running, a missing scan file is restored by a re-upload, and
a database fault during an upload answers 503 and leaves nothing behind."""

from __future__ import annotations

import logging
import os
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import OperationalError, connection
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError
from rest_framework.test import APIClient

from diagnosis.models import Prediction, Scan
from diagnosis.services import predictions
from diagnosis.services.predictions import (
    prediction_dispatch_owed,
    prediction_requeue_left_running,
    prediction_run,
)
from diagnosis.services.scans import scan_upload
from diagnosis.tasks import run_prediction
from tests.factories import PredictionFactory, ScanFactory, png_bytes

NODE = "celery@scanner-1"
SAMPLE_SCAN = next(Path(__file__).resolve().parents[1].glob("data/sudirman_sample/normal/*.png"))


@pytest.fixture
def broker(monkeypatch):
    """Records the prediction ids published, or refuses them like a broker that is down while `down`."""

    class Broker:
        down = False
        sent: list[int] = []

        def apply_async(self, args, **options):
            if self.down:
                raise BrokerError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
            self.sent.append(args[0])

    fake = Broker()
    fake.sent = []
    monkeypatch.setattr(run_prediction, "apply_async", fake.apply_async)
    return fake


def _upload(case, data: bytes):
    return scan_upload(user=case.owner, case=case, uploaded_file=SimpleUploadedFile("spine.png", data))


def _api_upload(case, data: bytes):
    client = APIClient()
    client.force_authenticate(case.owner)
    return client.post(
        f"/api/v1/cases/{case.pk}/scans/", {"file": SimpleUploadedFile("spine.png", data)}, format="multipart"
    )


def _dropping_the_connection_once(function, failures: list):
    """`function`, whose first call fails as if PostgreSQL had ended the connection (noted in failures)."""

    def drops_once(**kwargs):
        if not failures:
            failures.append(kwargs)
            raise OperationalError("terminating connection due to administrator command")
        return function(**kwargs)

    return drops_once


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_upload_while_the_broker_is_down_keeps_scan_file_and_an_owed_prediction(
    case, broker, django_capture_on_commit_callbacks, caplog
):
    broker.down = True
    with django_capture_on_commit_callbacks(execute=True), caplog.at_level(logging.WARNING):
        result = _upload(case, png_bytes(40, 30))

    prediction = Prediction.objects.get(pk=result.prediction.pk)
    assert result.created and Path(result.scan.file.path).is_file()
    assert (prediction.status, prediction.dispatched_at) == (Prediction.Status.QUEUED, None)
    assert f"Prediction {prediction.pk} not sent" in caplog.text

    broker.down = False
    assert prediction_dispatch_owed() == [prediction.pk] == broker.sent
    prediction.refresh_from_db()
    assert prediction.dispatched_at is not None
    assert prediction_dispatch_owed() == []


def test_sent_prediction_is_marked_dispatched(case, broker, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        result = _upload(case, png_bytes(40, 30))

    assert broker.sent == [result.prediction.pk]
    result.prediction.refresh_from_db()
    assert result.prediction.dispatched_at is not None


def test_dispatcher_sends_owed_predictions_oldest_first_and_stops_while_the_broker_is_down(db, broker):
    now = timezone.now()
    newer, older = PredictionFactory.create_batch(2)
    Prediction.objects.filter(pk=older.pk).update(queued_at=now - timedelta(minutes=5))
    PredictionFactory(dispatched_at=now)
    PredictionFactory(status=Prediction.Status.FAILED, error="no active model")

    broker.down = True
    assert prediction_dispatch_owed() == []
    broker.down = False
    assert prediction_dispatch_owed() == [older.pk, newer.pk] == broker.sent


def test_prediction_of_a_dead_pool_process_of_this_node_is_taken_over(active_model):
    started = timezone.now() - timedelta(seconds=5)
    prediction = PredictionFactory(
        scan=ScanFactory(content=SAMPLE_SCAN.read_bytes(), width=384, height=384),
        status=Prediction.Status.RUNNING,
        started_at=started,
        attempts=1,
        claimed_by=NODE,
        claimed_pid=_dead_pid(),
    )

    scan_folder = Path(prediction.scan.file.path).parent
    left_by_the_dead_run = scan_folder / f"{prediction.scan.sha256}-heatmap-{prediction.pk}.png"
    left_by_the_dead_run.write_bytes(b"half a heatmap")

    prediction = prediction_run(prediction_id=prediction.pk, worker=NODE)

    assert (prediction.status, prediction.attempts) == (Prediction.Status.DONE, 2)
    assert (prediction.claimed_by, prediction.claimed_pid) == (NODE, os.getpid())
    # The heatmap the killed run wrote is replaced, not left behind beside the new one.
    assert (
        sorted(scan_folder.glob("*-heatmap-*")) == [Path(prediction.heatmap.path)] == [left_by_the_dead_run]
    )
    assert left_by_the_dead_run.read_bytes().startswith(b"\x89PNG")


def test_prediction_whose_pool_process_died_each_time_fails_after_the_attempts_allowed(db, settings):
    prediction = PredictionFactory(
        status=Prediction.Status.RUNNING,
        started_at=timezone.now(),
        attempts=settings.LUMBAR_PREDICTION_MAX_ATTEMPTS,
        claimed_by=NODE,
        claimed_pid=_dead_pid(),
    )

    prediction = prediction_run(prediction_id=prediction.pk, worker=NODE)

    assert prediction.status == Prediction.Status.FAILED
    assert prediction.error.startswith(f"gave up after {settings.LUMBAR_PREDICTION_MAX_ATTEMPTS} attempts")


@pytest.mark.parametrize(
    ("claimed_by", "alive"), [(NODE, True), ("celery@scanner-2", False)], ids=["alive", "other-node"]
)
def test_prediction_of_a_live_process_or_another_node_is_left_alone(db, claimed_by, alive):
    pid = os.getpid() if alive else _dead_pid()
    prediction = PredictionFactory(
        status=Prediction.Status.RUNNING,
        started_at=timezone.now(),
        attempts=1,
        claimed_by=claimed_by,
        claimed_pid=pid,
    )

    assert prediction_run(prediction_id=prediction.pk, worker=NODE) is None
    prediction.refresh_from_db()
    assert (prediction.status, prediction.attempts, prediction.claimed_pid) == (
        Prediction.Status.RUNNING,
        1,
        pid,
    )


def test_started_worker_queues_again_what_its_node_left_running_or_may_hold_unstarted(
    db, broker, django_capture_on_commit_callbacks
):
    now = timezone.now()
    left = PredictionFactory(
        status=Prediction.Status.RUNNING,
        started_at=now,
        attempts=2,
        claimed_by=NODE,
        claimed_pid=1,
        dispatched_at=now,
    )
    elsewhere = PredictionFactory(
        status=Prediction.Status.RUNNING,
        started_at=now,
        attempts=1,
        claimed_by="celery@scanner-2",
        claimed_pid=1,
    )

    sent_not_taken = PredictionFactory(dispatched_at=now)
    owed = PredictionFactory(dispatched_at=None)  # the dispatcher's, not sent yet

    with django_capture_on_commit_callbacks(execute=True):
        assert prediction_requeue_left_running(worker=NODE) == [left.pk, sent_not_taken.pk]

    # A killed run may hold the message of a prediction it had not started yet: sent again too.
    assert broker.sent == [sent_not_taken.pk, left.pk]
    assert Prediction.objects.get(pk=owed.pk).dispatched_at is None
    left.refresh_from_db()
    assert (left.status, left.started_at, left.attempts) == (Prediction.Status.QUEUED, None, 2)
    assert left.dispatched_at is not None
    elsewhere.refresh_from_db()
    assert elsewhere.status == Prediction.Status.RUNNING


def test_reupload_restores_a_missing_file_and_queues_the_failed_prediction_again(
    case, broker, django_capture_on_commit_callbacks
):
    data = png_bytes(40, 30)
    with django_capture_on_commit_callbacks(execute=True):
        first = _upload(case, data)
    stored = Path(first.scan.file.path)
    stored_bytes = stored.read_bytes()
    stored.unlink()
    Prediction.objects.filter(pk=first.prediction.pk).update(
        status=Prediction.Status.FAILED, error="the stored scan file is missing"
    )

    with django_capture_on_commit_callbacks(execute=True):
        again = _upload(case, data)

    assert not again.created and again.scan.pk == first.scan.pk
    assert Scan.objects.get(pk=first.scan.pk).file.name == first.scan.file.name
    assert stored.read_bytes() == stored_bytes
    assert again.prediction.pk != first.prediction.pk
    assert again.prediction.status == Prediction.Status.QUEUED
    assert broker.sent == [first.prediction.pk, again.prediction.pk]


def test_reupload_restores_a_missing_file_of_a_finished_prediction_without_running_it_again(case, broker):
    data = png_bytes(40, 30)
    first = _upload(case, data)
    Prediction.objects.filter(pk=first.prediction.pk).update(status="done", label="normal", probability=0.1)
    Path(first.scan.file.path).unlink()

    again = _upload(case, data)

    assert Path(again.scan.file.path).is_file()
    assert again.prediction.pk == first.prediction.pk and Prediction.objects.count() == 1


def test_upload_while_the_database_fails_answers_503_and_leaves_no_file(case, media_root, monkeypatch):
    def database_gone(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(Prediction.objects, "create", database_gone)

    response = _api_upload(case, png_bytes(40, 30))

    assert response.status_code == 503, response.content
    assert response.json() == {"message": "The database is unavailable; try again in a moment.", "errors": {}}
    assert response["Retry-After"]
    assert not Scan.objects.exists()
    assert [path for path in media_root.rglob("*") if path.is_file()] == []


def test_a_fault_after_the_commit_never_reaches_the_upload(
    case, monkeypatch, django_capture_on_commit_callbacks
):
    def database_gone_after_commit(prediction_id):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(predictions, "_dispatch", database_gone_after_commit)
    with django_capture_on_commit_callbacks(execute=True):
        result = _upload(case, png_bytes(40, 30))

    assert result.created and Path(result.scan.file.path).is_file()
    assert Prediction.objects.get(pk=result.prediction.pk).dispatched_at is None


@pytest.mark.django_db(transaction=True)
def test_a_commit_that_drops_the_connection_after_writing_keeps_the_file_and_the_prediction_owed(
    case, broker, monkeypatch
):
    written_commit = connection.commit

    def commit_then_drop():
        written_commit()
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(connection, "commit", commit_then_drop)
    result = _upload(case, png_bytes(40, 30))  # the retry on a fresh connection finds the row written
    monkeypatch.undo()

    scan = Scan.objects.get()
    assert result.scan.pk == scan.pk and Path(scan.file.path).is_file()
    assert prediction_dispatch_owed() == [result.prediction.pk]


@pytest.mark.django_db(transaction=True)
def test_upload_whose_database_connection_drops_once_is_stored_on_a_fresh_one(case, broker, monkeypatch):
    failures = []
    monkeypatch.setattr(
        Prediction.objects, "create", _dropping_the_connection_once(Prediction.objects.create, failures)
    )
    result = _upload(case, png_bytes(40, 30))

    assert failures and result.created
    assert Scan.objects.get().pk == result.scan.pk and Path(result.scan.file.path).is_file()
    assert Prediction.objects.get().pk == result.prediction.pk


@pytest.mark.django_db(transaction=True)
def test_upload_api_answers_on_a_fresh_connection_when_the_database_drops_one_mid_request(
    case, broker, monkeypatch
):
    from diagnosis.api import views

    failures = []
    monkeypatch.setattr(views, "case_get", _dropping_the_connection_once(views.case_get, failures))

    response = _api_upload(case, png_bytes(40, 30))

    assert failures and response.status_code == 201, response.content
    assert Scan.objects.get().pk == response.json()["id"]


@pytest.mark.django_db(transaction=True)
def test_upload_api_survives_a_connection_dropped_while_its_token_is_checked(case, broker, monkeypatch):
    from knox.models import AuthToken

    from diagnosis.api.authentication import TokenAuthentication

    _, token = AuthToken.objects.create(user=case.owner)
    failures = []
    checked = TokenAuthentication.authenticate_credentials

    def drops_once(self, key):
        if not failures:
            failures.append(key)
            raise OperationalError("terminating connection due to administrator command")
        return checked(self, key)

    monkeypatch.setattr(TokenAuthentication, "authenticate_credentials", drops_once)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    response = client.post(
        f"/api/v1/cases/{case.pk}/scans/",
        {"file": SimpleUploadedFile("spine.png", png_bytes(40, 30))},
        format="multipart",
    )

    assert failures and response.status_code == 201, response.content
    assert Scan.objects.get().pk == response.json()["id"]
