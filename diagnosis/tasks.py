from __future__ import annotations

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from kombu.exceptions import OperationalError as BrokerError

from diagnosis.services.predictions import (
    TRANSIENT_DATABASE_ERRORS,
    prediction_abandon,
    prediction_requeue_stale,
    prediction_run,
)

TRANSIENT_ERRORS = (*TRANSIENT_DATABASE_ERRORS, BrokerError)


# Time limits come from CELERY_TASK_SOFT_TIME_LIMIT and CELERY_TASK_TIME_LIMIT. Past the hard limit the
# pool kills the process and the prediction stays running until the sweep queues it again.
@shared_task(
    acks_late=True, autoretry_for=TRANSIENT_ERRORS, retry_backoff=2, retry_backoff_max=60, max_retries=8
)
def run_prediction(prediction_id: int) -> None:
    try:
        prediction_run(prediction_id=prediction_id)
    except SoftTimeLimitExceeded:
        limit = settings.CELERY_TASK_SOFT_TIME_LIMIT
        prediction_abandon(prediction_id=prediction_id, reason=f"the prediction took longer than {limit} s")


@shared_task(acks_late=True, autoretry_for=TRANSIENT_ERRORS, max_retries=3, soft_time_limit=50, time_limit=60)
def sweep_stale_predictions() -> None:
    prediction_requeue_stale()
