from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction

from diagnosis.errors import ApplicationError
from diagnosis.models import Prediction, Review
from diagnosis.services.access import case_referral_of
from diagnosis.services.cases import case_lock_open, case_refresh_status
from diagnosis.services.predictions import ensure_done


def _final_label(prediction: Prediction, decision: str, final_label: str | None) -> str:
    """Agree keeps the model's label; override must name a different one."""
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
        return prediction.label
    if decision == Review.Decision.OVERRIDE:
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
        return final_label
    raise ApplicationError(
        "The decision is not valid.", {"decision": [f"Choose one of {', '.join(Review.Decision.values)}."]}
    )


def review_create(
    *,
    user: AbstractBaseUser,
    prediction: Prediction,
    decision: str,
    final_label: str | None = None,
    comment: str = "",
) -> Review:
    """The case's review, by its owner (or staff), or a referred clinician's second opinion. Reviews are
    never changed: reviewing again is an amendment, a new version of one's own review that the history
    keeps beside the earlier ones; nobody amends someone else's."""
    referral = case_referral_of(user, prediction.scan.case)
    kind = Review.Kind.SECOND_OPINION if referral else Review.Kind.REVIEW
    ensure_done(prediction)
    final_label = _final_label(prediction, decision, final_label)
    try:
        with transaction.atomic():
            # The case first (a signed-off case takes no review, and a sign-off waits for this one), then
            # one writer at a time per prediction, so versions follow each other.
            case_lock_open(case_id=prediction.scan.case_id)
            Prediction.objects.select_for_update().filter(pk=prediction.pk).first()
            chain = Review.objects.filter(prediction=prediction, kind=kind)
            if kind == Review.Kind.SECOND_OPINION:
                chain = chain.filter(reviewer=user)
            latest = chain.select_related("reviewer").order_by("-version").first()
            if latest is not None and latest.reviewer_id != user.pk:
                author = latest.reviewer.get_username()
                raise ApplicationError(
                    f"This prediction was reviewed by {author}; only they can amend that review.",
                    {"prediction": [f"Reviewed by {author}."]},
                )
            review = Review.objects.create(
                prediction=prediction,
                reviewer=user,
                kind=kind,
                referral=referral,
                version=latest.version + 1 if latest else 1,
                decision=decision,
                final_label=final_label,
                comment=comment or "",
            )
    except IntegrityError:
        raise ApplicationError(
            "Someone reviewed this prediction at the same moment; reload and try again.",
            {"prediction": ["Reviewed at the same moment by someone else."]},
        ) from None
    case_refresh_status(case_id=prediction.scan.case_id)
    return review
