from __future__ import annotations

from datetime import date

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from diagnosis.errors import ApplicationError, NotFound
from diagnosis.models import Patient
from diagnosis.selectors import patient_list
from diagnosis.services.access import ensure_can_work

_EDITABLE = ("identifier", "name", "birth_date", "sex")


def _validated(*, identifier: str, name: str, birth_date: date | None, sex: str) -> dict:
    errors: dict[str, list[str]] = {}
    identifier = (identifier or "").strip()
    if not identifier:
        errors["identifier"] = ["An identifier is required."]
    elif len(identifier) > 64:
        errors["identifier"] = ["The identifier has at most 64 characters."]
    if len(name or "") > 200:
        errors["name"] = ["The name has at most 200 characters."]
    if birth_date is not None and birth_date > timezone.localdate():
        errors["birth_date"] = ["The birth date cannot be in the future."]
    if sex and sex not in Patient.Sex.values:
        errors["sex"] = [f"Sex must be one of {', '.join(Patient.Sex.values)}."]
    if errors:
        raise ApplicationError("The patient details are not valid.", errors)
    return {
        "identifier": identifier,
        "name": (name or "").strip(),
        "birth_date": birth_date,
        "sex": sex or "",
    }


def _save(patient: Patient) -> Patient:
    try:
        with transaction.atomic():
            patient.save()
    except IntegrityError:
        raise ApplicationError(
            "A patient with this identifier already exists.",
            {"identifier": ["A patient with this identifier already exists."]},
        ) from None
    return patient


def patient_create(
    *,
    user: AbstractBaseUser,
    identifier: str,
    name: str = "",
    birth_date: date | None = None,
    sex: str = "",
) -> Patient:
    ensure_can_work(user)
    data = _validated(identifier=identifier, name=name, birth_date=birth_date, sex=sex)
    return _save(Patient(created_by=user, **data))


def patient_update(*, user: AbstractBaseUser, patient: Patient, **changes) -> Patient:
    ensure_can_work(user)
    if not patient_list(user=user).filter(pk=patient.pk).exists():
        raise NotFound("Patient not found.")
    unknown = set(changes) - set(_EDITABLE)
    if unknown:
        raise ApplicationError(
            "Unknown patient fields.", {field: ["Not editable."] for field in sorted(unknown)}
        )
    current = {field: getattr(patient, field) for field in _EDITABLE}
    data = _validated(**{**current, **changes})
    for field, value in data.items():
        setattr(patient, field, value)
    return _save(patient)
