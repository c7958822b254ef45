from __future__ import annotations

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_init, worker_process_init, worker_ready
from django.conf import settings
from django.db import connections
from kombu.exceptions import OperationalError as BrokerError

from diagnosis.services.accounts import token_purge_expired
from diagnosis.services.database import TRANSIENT_DATABASE_ERRORS
from diagnosis.services.predictions import (
    prediction_abandon,
    prediction_dispatch_owed,
    prediction_requeue_left_running,
    prediction_requeue_stale,
    prediction_run,
)
from ml.models import ModelVersion

TRANSIENT_ERRORS = (*TRANSIENT_DATABASE_ERRORS, BrokerError)


# Time limits come from CELERY_TASK_SOFT_TIME_LIMIT and CELERY_TASK_TIME_LIMIT. Past the hard limit the
# pool kills the process and the prediction stays running until the sweep queues it again.
@shared_task(
    bind=True,
    acks_late=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=8,
)
def run_prediction(self, prediction_id: int) -> None:
    try:
        prediction_run(prediction_id=prediction_id, worker=self.request.hostname or "")
    except SoftTimeLimitExceeded:
        limit = settings.CELERY_TASK_SOFT_TIME_LIMIT
        prediction_abandon(prediction_id=prediction_id, reason=f"the prediction took longer than {limit} s")


@shared_task(acks_late=True, autoretry_for=TRANSIENT_ERRORS, max_retries=3, soft_time_limit=50, time_limit=60)
def sweep_stale_predictions() -> None:
    prediction_requeue_stale()


# No retry: beat sends the next one within LUMBAR_DISPATCH_INTERVAL_SECONDS.
@shared_task(soft_time_limit=50, time_limit=60)
def dispatch_predictions() -> None:
    prediction_dispatch_owed()


@shared_task(autoretry_for=TRANSIENT_DATABASE_ERRORS, max_retries=3, soft_time_limit=50, time_limit=60)
def purge_expired_tokens() -> None:
    token_purge_expired()


@worker_ready.connect
def requeue_what_this_node_left_running(sender, **kwargs) -> None:
    """Celery logs what this raises (a database still away: the sweep is left to recover those)."""
    try:
        prediction_requeue_left_running(worker=sender.hostname)
    finally:
        # This runs in the worker's parent process: pool processes it forks later must not share its
        # connection.
        connections.close_all()


# The active model when the worker started, read in its parent (before the pool forks) so that each pool
# process loads and traces it at its own start, without a database connection of its own yet.
_model_at_start = []


@worker_init.connect
def note_the_active_model(**kwargs) -> None:
    if not settings.LUMBAR_WORKER_WARM_UP:
        return
    try:
        _model_at_start[:] = ModelVersion.objects.filter(is_active=True)
    finally:
        connections.close_all()


@worker_process_init.connect
def load_the_active_model(**kwargs) -> None:
    """Load and trace the model before the first task: the first upload is then as fast as the next.
    (CELERY_WORKER_PROC_ALIVE_TIMEOUT gives a pool process the time this takes.)"""
    from ml.registry import warm_up

    for model_version in _model_at_start:
        warm_up(model_version)
