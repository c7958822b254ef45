from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from diagnosis.errors import ApplicationError, NotFound
from diagnosis.models import AccessEvent, Case, Patient
from diagnosis.selectors import case_prediction_counts, patient_find, patient_list
from diagnosis.services.access import ensure_can_change_case, ensure_can_work, ensure_case_open
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


def case_lock_open(*, case_id: int) -> Case:
    """The case, locked until the surrounding transaction ends, unless it is signed off. Every change to a
    case or to what hangs off it takes this lock first, so a sign-off and a late review, upload or re-run
    never interleave: whichever comes second sees the other's outcome."""
    case = Case.objects.select_for_update().get(pk=case_id)
    ensure_case_open(case)
    return case


def case_update(
    *,
    user: AbstractBaseUser,
    case: Case,
    status: str | None = None,
    clinical_question: str | None = None,
    notes: str | None = None,
) -> Case:
    """`status` is accepted only unchanged (clients that send the whole case back keep working): the
    status follows the predictions, the sign-off and the reopen, never an edit."""
    ensure_can_change_case(user, case)
    with transaction.atomic():
        case = case_lock_open(case_id=case.pk)
        if status is not None and status != case.status:
            raise ApplicationError(
                "The status cannot be set.",
                {
                    "status": [
                        "The status follows the case's work: sign it off with POST "
                        f"/api/v1/cases/{case.pk}/sign-off/ and reopen it with POST "
                        f"/api/v1/cases/{case.pk}/reopen/."
                    ]
                },
            )
        if clinical_question is not None:
            case.clinical_question = clinical_question
        if notes is not None:
            case.notes = notes
        case.save()
    return case


def case_refresh_status(*, case_id: int) -> None:
    """After any change to the case's predictions (queued, finished, reviewed, marked not used or not,
    superseded): their counts on the case, and its status. An open case with a finished current
    prediction that is neither reviewed nor marked not used awaits review; otherwise it is open. A
    signed-off case stays signed off."""
    with transaction.atomic():
        case = Case.objects.select_for_update().get(pk=case_id)
        counts = case_prediction_counts(case=case)
        if any(getattr(case, name) != count for name, count in counts.items()):
            # Not a change of the case: no history entry, and "recently updated" keeps its meaning.
            Case.objects.filter(pk=case_id).update(**counts)
        if case.status == Case.Status.SIGNED_OFF:
            return
        waiting = counts["predictions_awaiting_review"] > 0
        status = Case.Status.AWAITING_REVIEW if waiting else Case.Status.OPEN
        if case.status != status:
            case.status = status
            case.save(update_fields=["status", "updated_at"])
