"""The case lifecycle: open (awaiting review while predictions wait) -> signed off, with its report version
-> reopened with a reason -> signed off again, as the next version that amends the last."""

from __future__ import annotations

import logging

from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from diagnosis.errors import ApplicationError, Conflict
from diagnosis.models import Case, CaseReport, Prediction, PredictionExclusion
from diagnosis.selectors import case_current_predictions, case_sign_off_blockers
from diagnosis.services.access import ensure_can_change_case
from diagnosis.services.cases import case_lock_open, case_refresh_status
from diagnosis.services.reports import report_render

logger = logging.getLogger(__name__)


def _required_text(value: str, field: str, message: str) -> str:
    value = (value or "").strip()
    if not value:
        raise ApplicationError(message, {field: ["This field is required."]})
    return value


def case_sign_off(*, user: AbstractBaseUser, case: Case, conclusion: str) -> CaseReport:
    """Sign the case off with a conclusion, once every current prediction is reviewed or marked not used.
    The report is rendered here, in the request, and committed with the sign-off: a signed-off case
    always has its report, and a failed rendering leaves the case open with nothing written."""
    ensure_can_change_case(user, case)
    conclusion = _required_text(conclusion, "conclusion", "A sign-off needs a conclusion.")
    report = None
    try:
        with transaction.atomic():
            case = case_lock_open(case_id=case.pk)
            if blockers := case_sign_off_blockers(case=case):
                raise Conflict("The case cannot be signed off yet.", {"predictions": blockers})
            latest = case.reports.aggregate(latest=Max("version"))["latest"] or 0
            report = CaseReport(
                case=case, version=latest + 1, conclusion=conclusion, signed_by=user, signed_at=timezone.now()
            )
            pdf = report_render(report=report, amends=case.reports.filter(version=latest).first())
            report.file.save(f"case-{case.pk}-report-v{report.version}.pdf", ContentFile(pdf), save=False)
            report.save()
            case.status = Case.Status.SIGNED_OFF
            case.save(update_fields=["status", "updated_at"])
    except BaseException:
        # Nothing committed, so the file would be an orphan.
        if report is not None and report.file:
            report.file.delete(save=False)
        raise
    logger.info("Case %s signed off by %s as report version %s", case.pk, user.pk, report.version)
    return report


def case_reopen(*, user: AbstractBaseUser, case: Case, reason: str) -> Case:
    """Reopen a signed-off case to amend it; the reason stays with the report version it reopens."""
    ensure_can_change_case(user, case)
    reason = _required_text(reason, "reason", "Reopening needs a reason.")
    with transaction.atomic():
        case = Case.objects.select_for_update().get(pk=case.pk)
        if case.status != Case.Status.SIGNED_OFF:
            raise Conflict("Only a signed-off case can be reopened.", {"case": ["The case is open."]})
        report = case.reports.order_by("-version").first()
        report.reopened_by = user
        report.reopened_at = timezone.now()
        report.reopen_reason = reason
        report.save(update_fields=["reopened_by", "reopened_at", "reopen_reason"])
        case.status = Case.Status.OPEN
        case.save(update_fields=["status", "updated_at"])
        case_refresh_status(case_id=case.pk)
    case.refresh_from_db()
    logger.info("Case %s reopened by %s (report version %s)", case.pk, user.pk, report.version)
    return case


def prediction_mark_not_used(
    *, user: AbstractBaseUser, prediction: Prediction, reason: str
) -> PredictionExclusion:
    """Leave a current prediction out of the sign-off (a failed run, an unreadable scan), saying why."""
    ensure_can_change_case(user, prediction.scan.case)
    reason = _required_text(reason, "reason", "Say why the prediction is not used.")
    with transaction.atomic():
        case = case_lock_open(case_id=prediction.scan.case_id)
        if not case_current_predictions(case=case).filter(pk=prediction.pk).exists():
            raise Conflict(
                "Only the current prediction of a scan can be marked not used.",
                {"prediction": ["A later run of this scan supersedes it."]},
            )
        try:
            with transaction.atomic():
                exclusion = PredictionExclusion.objects.create(
                    prediction=prediction, reason=reason, excluded_by=user
                )
        except IntegrityError:
            raise Conflict(
                "This prediction is already marked not used.", {"prediction": ["Already not used."]}
            ) from None
        case_refresh_status(case_id=case.pk)
    return exclusion


def prediction_use_again(*, user: AbstractBaseUser, prediction: Prediction) -> None:
    """Undo "not used": the prediction counts for the sign-off again."""
    ensure_can_change_case(user, prediction.scan.case)
    with transaction.atomic():
        case = case_lock_open(case_id=prediction.scan.case_id)
        deleted, _ = PredictionExclusion.objects.filter(prediction=prediction).delete()
        if not deleted:
            raise Conflict("This prediction is not marked not used.", {"prediction": ["It is in use."]})
        case_refresh_status(case_id=case.pk)
