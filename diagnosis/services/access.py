from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser

from diagnosis.errors import Conflict, NotFound, PermissionDenied
from diagnosis.models import Case
from diagnosis.selectors import user_is_clinician, user_sees_everything


def ensure_can_work(user: AbstractBaseUser) -> None:
    if not (user_is_clinician(user) or user_sees_everything(user)):
        raise PermissionDenied("Only clinicians and staff can work with patient records.")


def ensure_can_change_case(user: AbstractBaseUser, case: Case) -> None:
    """Another clinician's case is reported as missing, so its existence does not leak."""
    ensure_can_work(user)
    if not user_sees_everything(user) and case.owner_id != user.pk:
        raise NotFound("Case not found.")


def ensure_case_open(case: Case) -> None:
    """A signed-off case is the record its report was made from: nothing in it changes until reopened."""
    if case.status == Case.Status.SIGNED_OFF:
        raise Conflict(
            "The case is signed off.",
            {"case": ["The case is signed off; reopen it, with a reason, to change it."]},
        )
