from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError
from kombu.exceptions import OperationalError as BrokerError

from diagnosis.services.predictions import prediction_requeue_stale, prediction_run

TRANSIENT_ERRORS = (OperationalError, InterfaceError, BrokerError)


@shared_task(
    acks_late=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=8,
    soft_time_limit=120,
    time_limit=180,
)
def run_prediction(prediction_id: int) -> None:
    prediction_run(prediction_id=prediction_id)


@shared_task(acks_late=True, autoretry_for=TRANSIENT_ERRORS, max_retries=3, time_limit=60)
def sweep_stale_predictions() -> None:
    prediction_requeue_stale()
