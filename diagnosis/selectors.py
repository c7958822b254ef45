"""Every read, scoped to what the requesting user may see: staff see everything, a clinician sees
the cases they own and what hangs off them, anyone else sees nothing."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery

from diagnosis.errors import NotFound
from diagnosis.models import CLINICIANS_GROUP, Case, CaseReport, Patient, Prediction, Scan


def user_is_clinician(user: AbstractBaseUser) -> bool:
    return bool(
        user.is_authenticated and user.is_active and user.groups.filter(name=CLINICIANS_GROUP).exists()
    )


def user_sees_everything(user: AbstractBaseUser) -> bool:
    return bool(user.is_authenticated and user.is_active and user.is_staff)


def _scoped(queryset: QuerySet, user: AbstractBaseUser, owner_path: str) -> QuerySet:
    if user_sees_everything(user):
        return queryset
    if not user_is_clinician(user):
        return queryset.none()
    return queryset.filter(**{owner_path: user})


def _get(queryset: QuerySet, pk: int, what: str):
    try:
        return queryset.get(pk=pk)
    except (queryset.model.DoesNotExist, ValueError, TypeError):
        raise NotFound(f"{what} not found.") from None


def patient_list(*, user: AbstractBaseUser, search: str = "") -> QuerySet[Patient]:
    queryset = Patient.objects.all()
    if not user_sees_everything(user):
        if not user_is_clinician(user):
            return queryset.none()
        queryset = queryset.filter(Q(created_by=user) | Q(cases__owner=user)).distinct()
    return patient_search(queryset=queryset, search=search) if search else queryset


def patient_search(*, queryset: QuerySet[Patient], search: str) -> QuerySet[Patient]:
    """Patients whose identifier or name contains the text; shared by the patients page and the API filter."""
    return queryset.filter(Q(identifier__icontains=search) | Q(name__icontains=search))


def patient_get(*, user: AbstractBaseUser, pk: int) -> Patient:
    return _get(patient_list(user=user), pk, "Patient")


def case_list(*, user: AbstractBaseUser) -> QuerySet[Case]:
    return _scoped(Case.objects.select_related("patient", "owner"), user, "owner")


def case_get(*, user: AbstractBaseUser, pk: int) -> Case:
    return _get(case_list(user=user), pk, "Case")


def scan_list(*, user: AbstractBaseUser) -> QuerySet[Scan]:
    return _scoped(Scan.objects.select_related("case", "case__patient"), user, "case__owner")


def scan_get(*, user: AbstractBaseUser, pk: int) -> Scan:
    return _get(scan_list(user=user), pk, "Scan")


def prediction_list(*, user: AbstractBaseUser) -> QuerySet[Prediction]:
    queryset = Prediction.objects.select_related("scan", "scan__case", "scan__case__patient", "model_version")
    return _scoped(queryset, user, "scan__case__owner")


def prediction_get(*, user: AbstractBaseUser, pk: int) -> Prediction:
    return _get(prediction_list(user=user), pk, "Prediction")


def case_current_predictions(*, case: Case) -> QuerySet[Prediction]:
    """The latest prediction of each scan of the case: a re-run supersedes the ones before it."""
    latest = Prediction.objects.filter(scan=OuterRef("scan")).order_by("-queued_at", "-pk").values("pk")[:1]
    return Prediction.objects.filter(scan__case=case, pk=Subquery(latest))


def case_unsettled_predictions(*, case: Case) -> QuerySet[Prediction]:
    """The current predictions a sign-off still waits for: neither reviewed nor marked not used."""
    return case_current_predictions(case=case).filter(review__isnull=True, exclusion__isnull=True)


def _predictions(count: int) -> str:
    return f"{count} prediction{'s' if count != 1 else ''}"


def case_sign_off_blockers(*, case: Case) -> list[str]:
    """What keeps the case from being signed off, one sentence per kind; empty when nothing does."""
    counts = dict(
        case_unsettled_predictions(case=case)
        .order_by()
        .values("status")
        .annotate(count=Count("pk"))
        .values_list("status", "count")
    )
    blockers = []
    if not_reviewed := counts.get(Prediction.Status.DONE, 0):
        blockers.append(f"{_predictions(not_reviewed)} not reviewed: review or mark not used.")
    if failed := counts.get(Prediction.Status.FAILED, 0):
        blockers.append(f"{_predictions(failed)} failed: re-run or mark not used.")
    if unfinished := counts.get(Prediction.Status.QUEUED, 0) + counts.get(Prediction.Status.RUNNING, 0):
        blockers.append(f"{_predictions(unfinished)} still running: wait for the result or mark not used.")
    return blockers


def case_report_list(*, case: Case) -> QuerySet[CaseReport]:
    """The case's report versions, newest first; the case comes from a scoped selector."""
    return case.reports.select_related("signed_by", "reopened_by").order_by("-version")


def case_report_get(*, case: Case, version: int | None = None) -> CaseReport:
    """The latest report of the case, or the version asked for."""
    reports = case_report_list(case=case)
    report = reports.first() if version is None else reports.filter(version=version).first()
    if report is None:
        missing = "This case has no signed report." if version is None else f"No report version {version}."
        raise NotFound(missing)
    return report
