"""The access log: who viewed or downloaded which patient data. Changes to the records themselves are
recorded by django-simple-history (each model's `history`), stamped with the request's user."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import models

from diagnosis.models import AccessEvent, Case, Patient, Prediction, Scan


def _case_and_patient_ids(obj: models.Model | None) -> tuple[int | None, int | None]:
    if obj is None:
        return None, None
    if isinstance(obj, Patient):
        return None, obj.pk
    if isinstance(obj, Case):
        return obj.pk, obj.patient_id
    if isinstance(obj, Prediction):
        obj = obj.scan
    if isinstance(obj, Scan):
        return obj.case_id, obj.case.patient_id
    # Anything else that belongs to a case (a report version, a referral) names it as `case`.
    case = obj.case
    return case.pk, case.patient_id


def access_record(
    *, user: AbstractBaseUser, obj: models.Model | None, action: str, detail: str = ""
) -> AccessEvent:
    """One line wherever patient data leaves: `access_record(user=request.user, obj=scan,
    action=AccessEvent.Action.DOWNLOAD_SCAN)`. `obj` is what was opened (a patient, a case, a scan, a
    prediction, or anything with a `case`); None for a lookup that found nothing, with `detail` saying what
    was looked for."""
    case_id, patient_id = _case_and_patient_ids(obj)
    return AccessEvent.objects.create(
        user=user,
        action=AccessEvent.Action(action),
        case_id=case_id,
        patient_id=patient_id,
        object_type=obj._meta.model_name if obj is not None else "",
        object_id=obj.pk if obj is not None else None,
        detail=detail[:255],
    )
