from __future__ import annotations

from datetime import date

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from diagnosis.errors import ApplicationError
from diagnosis.models import AccessEvent, Patient
from diagnosis.selectors import patient_find
from diagnosis.services.access import ensure_can_change_patient, ensure_can_work
from diagnosis.services.history import access_record

_EDITABLE = ("identifier", "name", "birth_date", "sex")


def _validated(*, identifier: str, name: str, birth_date: date | None, sex: str) -> dict:
    errors: dict[str, list[str]] = {}
    identifier = Patient.normalise_identifier(identifier)
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


# The same answer whether or not the user sees the patient already registered under the identifier, and
# without its id or details: the registry's one door to an existing patient is opening a case for its
# exact identifier (case_create_for_identifier), and every attempt is in the access log.
IDENTIFIER_TAKEN = (
    "This identifier is already registered. To work on this patient, open a case for the identifier."
)


def _identifier_taken(user: AbstractBaseUser, patient: Patient) -> ApplicationError:
    access_record(
        user=user,
        obj=patient_find(identifier=patient.identifier),
        action=AccessEvent.Action.LOOKUP_PATIENT,
        detail=f"registration refused: {patient.identifier}",
    )
    return ApplicationError("The identifier is already registered.", {"identifier": [IDENTIFIER_TAKEN]})


def _save(user: AbstractBaseUser, patient: Patient) -> Patient:
    taken = Patient.objects.filter(identifier__iexact=patient.identifier).exclude(pk=patient.pk)
    if taken.exists():
        raise _identifier_taken(user, patient)
    try:
        with transaction.atomic():
            patient.save()
    except IntegrityError:
        # Registered by someone else between the check and the save.
        raise _identifier_taken(user, patient) from None
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
    return _save(user, Patient(created_by=user, **data))


def patient_update(*, user: AbstractBaseUser, patient: Patient, **changes) -> Patient:
    ensure_can_change_patient(user, patient)
    unknown = set(changes) - set(_EDITABLE)
    if unknown:
        raise ApplicationError(
            "Unknown patient fields.", {field: ["Not editable."] for field in sorted(unknown)}
        )
    current = {field: getattr(patient, field) for field in _EDITABLE}
    data = _validated(**{**current, **changes})
    for field, value in data.items():
        setattr(patient, field, value)
    return _save(user, patient)
