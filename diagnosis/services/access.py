from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser

from diagnosis.errors import Conflict, NotFound, PermissionDenied
from diagnosis.models import Case, Patient, Referral
from diagnosis.selectors import patient_list, referral_active, user_is_clinician, user_sees_everything


def ensure_can_work(user: AbstractBaseUser) -> None:
    if not (user_is_clinician(user) or user_sees_everything(user)):
        raise PermissionDenied("Only clinicians and staff can work with patient records.")


def case_referral_of(user: AbstractBaseUser, case: Case) -> Referral | None:
    """None for the case's owner and for staff, who change the case; the active referral through which a
    referred clinician sees it (and gives a second opinion). Anyone else is told the case is missing, so
    its existence does not leak."""
    ensure_can_work(user)
    if user_sees_everything(user) or case.owner_id == user.pk:
        return None
    referral = referral_active(user=user, case=case)
    if referral is None:
        raise NotFound("Case not found.")
    return referral


def ensure_can_change_case(user: AbstractBaseUser, case: Case) -> None:
    """Only the owner and staff change a case; a referred clinician sees it but may not touch it."""
    if case_referral_of(user, case) is not None:
        raise PermissionDenied(
            "Only the case owner can do this; as a referred clinician you can record your own opinion."
        )


def ensure_can_change_patient(user: AbstractBaseUser, patient: Patient) -> None:
    """Whoever registered the patient or owns one of their cases (and staff) edits the details; a clinician
    who only sees the patient through a referral may not."""
    ensure_can_work(user)
    if not patient_list(user=user).filter(pk=patient.pk).exists():
        raise NotFound("Patient not found.")
    if (
        user_sees_everything(user)
        or patient.created_by_id == user.pk
        or patient.cases.filter(owner=user).exists()
    ):
        return
    raise PermissionDenied(
        "Only the clinicians who registered the patient or own one of their cases edit it."
    )


def ensure_case_open(case: Case) -> None:
    """A signed-off case is the record its report was made from: nothing in it changes until reopened."""
    if case.status == Case.Status.SIGNED_OFF:
        raise Conflict(
            "The case is signed off.",
            {"case": ["The case is signed off; reopen it, with a reason, to change it."]},
        )
