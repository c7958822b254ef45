from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction

from diagnosis.errors import ApplicationError
from diagnosis.models import Prediction, Review
from diagnosis.services.access import ensure_can_change_case
from diagnosis.services.cases import case_lock_open, case_refresh_status
from diagnosis.services.predictions import ensure_done


def review_create(
    *,
    user: AbstractBaseUser,
    prediction: Prediction,
    decision: str,
    final_label: str | None = None,
    comment: str = "",
) -> Review:
    """Agree keeps the model's label; override must name a different one."""
    ensure_can_change_case(user, prediction.scan.case)
    with transaction.atomic():
        case_lock_open(case_id=prediction.scan.case_id)
        return _review_create(
            user=user, prediction=prediction, decision=decision, final_label=final_label, comment=comment
        )


def _review_create(
    *, user: AbstractBaseUser, prediction: Prediction, decision: str, final_label: str | None, comment: str
) -> Review:
    ensure_done(prediction)
    if decision == Review.Decision.AGREE:
        if final_label and final_label != prediction.label:
            raise ApplicationError(
                "Agreeing keeps the model's label.",
                {
                    "final_label": [
                        f"Agreeing means the label is {prediction.label}; choose override to change it."
                    ]
                },
            )
        final_label = prediction.label
    elif decision == Review.Decision.OVERRIDE:
        if final_label not in Prediction.Label.values:
            raise ApplicationError(
                "An override needs a final label.",
                {"final_label": [f"Choose one of {', '.join(Prediction.Label.values)}."]},
            )
        if final_label == prediction.label:
            raise ApplicationError(
                "An override must change the label.",
                {"final_label": ["This is the model's label; choose agree instead."]},
            )
    else:
        raise ApplicationError(
            "The decision is not valid.",
            {"decision": [f"Choose one of {', '.join(Review.Decision.values)}."]},
        )
    try:
        with transaction.atomic():
            review = Review.objects.create(
                prediction=prediction,
                reviewer=user,
                decision=decision,
                final_label=final_label,
                comment=comment or "",
            )
    except IntegrityError:
        raise ApplicationError(
            "This prediction has already been reviewed.", {"prediction": ["Already reviewed."]}
        ) from None
    case_refresh_status(case_id=prediction.scan.case_id)
    return review
