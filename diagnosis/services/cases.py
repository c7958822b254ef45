from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from diagnosis.errors import ApplicationError, NotFound
from diagnosis.models import AccessEvent, Case, Patient, Prediction, Review
from diagnosis.selectors import patient_find, patient_list
from diagnosis.services.access import ensure_can_change_case, ensure_can_work
from diagnosis.services.history import access_record


def case_create(
    *, user: AbstractBaseUser, patient: Patient, clinical_question: str = "", notes: str = ""
) -> Case:
    ensure_can_work(user)
    if not patient_list(user=user).filter(pk=patient.pk).exists():
        raise NotFound("Patient not found.")
    return Case.objects.create(
        patient=patient, owner=user, clinical_question=clinical_question or "", notes=notes or ""
    )


def case_create_for_identifier(
    *, user: AbstractBaseUser, identifier: str, clinical_question: str = "", notes: str = ""
) -> Case:
    """Any clinician may open a case for a registered patient named by its exact identifier (case and
    surrounding spaces aside), without seeing anyone else's patients. The lookup is logged, found or not;
    the case then makes the patient theirs to see."""
    ensure_can_work(user)
    patient = patient_find(identifier=identifier)
    access_record(
        user=user,
        obj=patient,
        action=AccessEvent.Action.LOOKUP_PATIENT,
        detail=f"open a case: {Patient.normalise_identifier(identifier)}",
    )
    if patient is None:
        raise ApplicationError(
            "No patient is registered with this identifier.",
            {"identifier": ["No patient is registered with this identifier; register the patient first."]},
        )
    return Case.objects.create(
        patient=patient, owner=user, clinical_question=clinical_question or "", notes=notes or ""
    )


def case_update(
    *,
    user: AbstractBaseUser,
    case: Case,
    status: str | None = None,
    clinical_question: str | None = None,
    notes: str | None = None,
) -> Case:
    ensure_can_change_case(user, case)
    if status is not None and status not in Case.Status.values:
        raise ApplicationError(
            "The case status is not valid.", {"status": [f"Choose one of {', '.join(Case.Status.values)}."]}
        )
    with transaction.atomic():
        case = Case.objects.select_for_update().get(pk=case.pk)
        if status is not None:
            case.status = status
        if clinical_question is not None:
            case.clinical_question = clinical_question
        if notes is not None:
            case.notes = notes
        case.save()
    return case


def case_refresh_status(*, case_id: int) -> None:
    """An open case with a finished, unreviewed prediction awaits review; once all are reviewed it is open
    again. A closed case stays closed."""
    with transaction.atomic():
        case = Case.objects.select_for_update().get(pk=case_id)
        if case.status == Case.Status.CLOSED:
            return
        waiting = (
            Prediction.objects.filter(scan__case=case, status=Prediction.Status.DONE)
            .exclude(reviews__kind=Review.Kind.REVIEW)
            .exists()
        )
        status = Case.Status.AWAITING_REVIEW if waiting else Case.Status.OPEN
        if case.status != status:
            case.status = status
            case.save(update_fields=["status", "updated_at"])
