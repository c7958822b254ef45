from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from diagnosis.errors import ApplicationError
from diagnosis.models import CLINICIANS_GROUP, Case, Referral
from diagnosis.services.access import ensure_can_change_case

NOTE_MAX_LENGTH = Referral._meta.get_field("note").max_length


def referral_create(*, user: AbstractBaseUser, case: Case, clinician: str, note: str = "") -> Referral:
    """The owner asks another clinician for a second opinion: they see the case until it is withdrawn."""
    ensure_can_change_case(user, case)
    note = (note or "").strip()
    if len(note) > NOTE_MAX_LENGTH:
        raise ApplicationError(
            "The note is too long.", {"note": [f"The note has at most {NOTE_MAX_LENGTH} characters."]}
        )
    referred = (
        get_user_model()
        .objects.filter(username=(clinician or "").strip(), is_active=True, groups__name=CLINICIANS_GROUP)
        .first()
    )
    if referred is None:
        raise ApplicationError(
            "No such clinician.", {"clinician": ["No active clinician has this username."]}
        )
    if referred.pk == case.owner_id:
        raise ApplicationError(
            "The case owner cannot be referred their own case.",
            {"clinician": ["This clinician owns the case; choose a colleague."]},
        )
    try:
        with transaction.atomic():
            return Referral.objects.create(case=case, clinician=referred, referred_by=user, note=note)
    except IntegrityError:
        raise ApplicationError(
            "This clinician already has the case.",
            {"clinician": [f"The case is already referred to {referred.get_username()}."]},
        ) from None


def referral_withdraw(*, user: AbstractBaseUser, referral: Referral) -> Referral:
    """Ends the referred clinician's access at once; the opinions they gave stay on the record."""
    ensure_can_change_case(user, referral.case)
    with transaction.atomic():
        referral = Referral.objects.select_for_update().get(pk=referral.pk)
        if referral.withdrawn_at is not None:
            raise ApplicationError(
                "This referral was already withdrawn.", {"referral": ["Already withdrawn."]}
            )
        referral.withdrawn_at = timezone.now()
        referral.withdrawn_by = user
        referral.save(update_fields=["withdrawn_at", "withdrawn_by"])
    return referral
