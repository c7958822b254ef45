from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from simple_history.utils import bulk_create_with_history

from diagnosis.errors import ApplicationError
from diagnosis.models import Prediction, PredictionLevel, Review, ReviewLevel
from diagnosis.services.access import case_referral_of
from diagnosis.services.cases import case_lock_open, case_refresh_status
from diagnosis.services.predictions import ensure_done


def choices_sentence(choices) -> str:
    """Choices as a person reads them: "Normal, Degenerative disc disease or Not assessable"."""
    labels = [str(label) for _, label in choices]
    return labels[0] if len(labels) == 1 else f"{', '.join(labels[:-1])} or {labels[-1]}"


def _label_display(label: str) -> str:
    return str(Prediction.Label(label).label)


def _final_label(prediction: Prediction, decision: str, final_label: str | None) -> str:
    """Agree keeps the model's label; override must name a different one."""
    model_label = _label_display(prediction.label)
    if decision == Review.Decision.AGREE:
        if final_label and final_label != prediction.label:
            raise ApplicationError(
                "Agreeing keeps the model's label.",
                {
                    "final_label": [
                        f"Agreeing keeps the model's label, {model_label}; choose Override to change it."
                    ]
                },
            )
        return prediction.label
    if decision == Review.Decision.OVERRIDE:
        if final_label not in Prediction.Label.values:
            raise ApplicationError(
                "An override needs a final label.",
                {"final_label": [f"Choose {choices_sentence(Prediction.Label.choices)}."]},
            )
        if final_label == prediction.label:
            raise ApplicationError(
                "An override must change the label.",
                {"final_label": [f"{model_label} is the model's label; choose Agree instead."]},
            )
        return final_label
    raise ApplicationError(
        "Choose whether you agree with the model.",
        {"decision": [f"Choose {choices_sentence(Review.Decision.choices)}."]},
    )


@dataclass(frozen=True)
class LevelReading:
    """A review's outcome on a prediction with per-level findings: the grade given at each level, and the
    whole-image decision that follows from them."""

    grades: dict[PredictionLevel, int]
    decision: str
    final_label: str


def _level_reading(
    prediction: Prediction,
    levels: list[dict],
    decision: str | None,
    final_label: str | None,
) -> LevelReading:
    """Each level keeps the model's grade unless `levels` corrects it; the image is DDD when any level is
    graded DEGENERATED_FROM or more, as it is for the model, and the decision says whether that is the
    model's label. A decision or final label sent as well must say the same."""
    if not levels and not decision:
        raise ApplicationError(
            "Grade the levels, or agree with the model's grades.",
            {"decision": ["Give each level a grade, or choose Agree to confirm the model's grades."]},
        )
    findings = {finding.level: finding for finding in prediction.levels.all()}
    grades = {level: finding.grade for level, finding in findings.items()}
    problems: list[str] = []
    given: set[str] = set()
    for item in levels:
        level, grade = item.get("level"), item.get("grade")
        if level not in findings:
            problems.append(f"{level} is not a level of this prediction; it has {', '.join(findings)}.")
        elif level in given:
            problems.append(f"{level} is given more than once.")
        elif not isinstance(grade, int) or isinstance(grade, bool) or grade not in PredictionLevel.GRADES:
            problems.append(f"The grade at {level} must be a Pfirrmann grade from 1 to 5.")
        else:
            grades[level] = grade
        given.add(level)
    if problems:
        raise ApplicationError("The levels are not valid.", {"levels": problems})
    degenerated = any(grade >= PredictionLevel.DEGENERATED_FROM for grade in grades.values())
    label = Prediction.Label.DDD if degenerated else Prediction.Label.NORMAL
    follows = Review.Decision.AGREE if label == prediction.label else Review.Decision.OVERRIDE
    threshold = PredictionLevel.DEGENERATED_FROM
    because = (
        f"With these grades the image is {_label_display(label)} (grade {threshold} or more at any level "
        "makes it degenerative)"
    )
    if decision and decision != follows:
        raise ApplicationError(
            "The decision does not follow the levels.",
            {"decision": [f"{because}, which means {Review.Decision(follows).label}."]},
        )
    if final_label and final_label != label:
        raise ApplicationError(
            "The final label does not follow the levels.",
            {"final_label": [f"{because}; change a level's grade to change it."]},
        )
    return LevelReading(
        grades={findings[level]: grade for level, grade in grades.items()},
        decision=follows,
        final_label=label,
    )


def review_create(
    *,
    user: AbstractBaseUser,
    prediction: Prediction,
    decision: str | None = None,
    final_label: str | None = None,
    comment: str = "",
    levels: list[dict] | None = None,
) -> Review:
    """The case's review, by its owner (or staff), or a referred clinician's second opinion. Reviews are
    never changed: reviewing again is an amendment, a new version of one's own review that the history
    keeps beside the earlier ones; nobody amends someone else's.

    On a prediction with per-level findings the review grades every level (`levels`, e.g.
    `[{"level": "L4-L5", "grade": 3}]`, corrects the model's grades; the others are confirmed) and the
    decision and final label follow the grades. Predictions without levels are reviewed as a whole."""
    referral = case_referral_of(user, prediction.scan.case)
    kind = Review.Kind.SECOND_OPINION if referral else Review.Kind.REVIEW
    ensure_done(prediction)
    reading = None
    if prediction.levels.exists():
        reading = _level_reading(prediction, levels or [], decision, final_label)
        decision, final_label = reading.decision, reading.final_label
    elif levels:
        raise ApplicationError(
            "This prediction has no levels to grade.",
            {"levels": ["The model found no disc levels on this image; review it as a whole."]},
        )
    else:
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
            if reading is not None:
                bulk_create_with_history(
                    [
                        ReviewLevel(review=review, finding=finding, grade=grade)
                        for finding, grade in reading.grades.items()
                    ],
                    ReviewLevel,
                    default_user=user,
                )
    except IntegrityError:
        raise ApplicationError(
            "Someone reviewed this prediction at the same moment; reload and try again.",
            {"prediction": ["Reviewed at the same moment by someone else."]},
        ) from None
    case_refresh_status(case_id=prediction.scan.case_id)
    return review
