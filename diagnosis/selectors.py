"""Every read, scoped to what the requesting user may see: staff see everything, a clinician sees
the cases they own and what hangs off them, anyone else sees nothing."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q, QuerySet

from diagnosis.errors import NotFound
from diagnosis.models import CLINICIANS_GROUP, Case, IncomingSeries, Patient, Prediction, Scan, Series


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


def series_list(*, user: AbstractBaseUser) -> QuerySet[Series]:
    queryset = Series.objects.select_related("case", "chosen_scan", "chosen_by").prefetch_related("slices")
    return _scoped(queryset, user, "case__owner")


def series_get(*, user: AbstractBaseUser, pk: int) -> Series:
    return _get(series_list(user=user), pk, "Series")


def incoming_list(*, user: AbstractBaseUser) -> QuerySet[IncomingSeries]:
    """Series received for no case wait for anyone who works with patient records to attach them."""
    if user_sees_everything(user) or user_is_clinician(user):
        return IncomingSeries.objects.all()
    return IncomingSeries.objects.none()


def incoming_get(*, user: AbstractBaseUser, pk: int) -> IncomingSeries:
    return _get(incoming_list(user=user), pk, "Incoming series")
