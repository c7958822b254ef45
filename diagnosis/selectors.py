"""Every read, scoped to what the requesting user may see: staff see everything, a clinician sees the
cases they own or are referred (until the referral is withdrawn) and what hangs off them, anyone else sees
nothing."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db import connection
from django.db.models import (
    CharField,
    Count,
    DateTimeField,
    Exists,
    F,
    IntegerField,
    Max,
    Model,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Cast, Coalesce
from django.utils import timezone
from simple_history.utils import get_history_model_for_model

from diagnosis.errors import NotFound
from diagnosis.models import (
    CLINICIANS_GROUP,
    AccessEvent,
    Case,
    CaseReport,
    IncomingSeries,
    Patient,
    Prediction,
    PredictionExclusion,
    PredictionLevel,
    Referral,
    Review,
    ReviewLevel,
    Scan,
    Series,
)
from ml.models import ModelVersion


def user_is_clinician(user: AbstractBaseUser) -> bool:
    """Asked by several selectors and services in one request: the group is looked up once per user
    object (a request's user is loaded afresh for each request)."""
    if not (user.is_authenticated and user.is_active):
        return False
    if not hasattr(user, "_is_clinician"):
        user._is_clinician = user.groups.filter(name=CLINICIANS_GROUP).exists()
    return user._is_clinician


def user_sees_everything(user: AbstractBaseUser) -> bool:
    return bool(user.is_authenticated and user.is_active and user.is_staff)


def _referred_cases(user: AbstractBaseUser) -> QuerySet:
    return Referral.objects.filter(clinician=user, withdrawn_at__isnull=True).values("case")


def _scoped(queryset: QuerySet, user: AbstractBaseUser, case_path: str) -> QuerySet:
    """`case_path` leads from the rows to their case ("" for cases themselves)."""
    if user_sees_everything(user):
        return queryset
    if not user_is_clinician(user):
        return queryset.none()
    prefix = f"{case_path}__" if case_path else ""
    return queryset.filter(
        Q(**{f"{prefix}owner": user}) | Q(**{f"{case_path or 'pk'}__in": _referred_cases(user)})
    )


def _get(queryset: QuerySet, pk: int, what: str):
    try:
        return queryset.get(pk=pk)
    except (queryset.model.DoesNotExist, ValueError, TypeError):
        raise NotFound(f"{what} not found.") from None


def _cases_seen_by(user: AbstractBaseUser) -> QuerySet[Case]:
    return Case.objects.filter(Q(owner=user) | Q(pk__in=_referred_cases(user)))


def _exists_row_by_row(queryset: QuerySet) -> Exists:
    """EXISTS, evaluated for each row through the subquery's indexes. Under an OR (which PostgreSQL cannot
    turn into a semi-join) a plain EXISTS is planned as a hashed subplan: the whole subquery runs to build
    the hash, so listing 25 patients scanned every case of the hospital (6 ms at 20,000 cases, against
    0.4 ms row by row). An OFFSET keeps PostgreSQL from rewriting the subquery that way; SQLite takes it as
    it is. The subquery ends in Django's LIMIT 1."""
    return Exists(queryset, template="EXISTS(%(subquery)s OFFSET 0)")


def patient_list(*, user: AbstractBaseUser, search: str = "") -> QuerySet[Patient]:
    """A clinician's patients: registered by them, or with a case they own or were referred. An EXISTS per
    patient rather than a join to their cases, which would repeat the patient and need DISTINCT."""
    queryset = Patient.objects.all()
    if not user_sees_everything(user):
        if not user_is_clinician(user):
            return queryset.none()
        queryset = queryset.filter(
            Q(created_by=user) | _exists_row_by_row(_cases_seen_by(user).filter(patient=OuterRef("pk")))
        )
    return patient_search(queryset=queryset, search=search) if search else queryset


def patient_case_counts(*, user: AbstractBaseUser, patients: list[Patient]) -> dict[int, int]:
    """Case counts of a page of patients, by patient id: every case of a patient the user registered (and
    for staff), otherwise the cases the user sees. One grouped query over these patients' cases only."""
    cases = Case.objects.filter(patient__in=patients)
    if not user_sees_everything(user):
        cases = cases.filter(Q(patient__created_by=user) | Q(owner=user) | Q(pk__in=_referred_cases(user)))
    counts = cases.order_by().values("patient").annotate(count=Count("pk")).values_list("patient", "count")
    return dict(counts)


def patient_search(*, queryset: QuerySet[Patient], search: str) -> QuerySet[Patient]:
    """Patients whose identifier or name contains the text; shared by the patients page and the API filter."""
    return queryset.filter(Q(identifier__icontains=search) | Q(name__icontains=search))


def patient_get(*, user: AbstractBaseUser, pk: int) -> Patient:
    return _get(patient_list(user=user), pk, "Patient")


def case_list(*, user: AbstractBaseUser) -> QuerySet[Case]:
    return _scoped(Case.objects.select_related("patient", "owner"), user, "")


def case_list_owned(*, user: AbstractBaseUser) -> QuerySet[Case]:
    """A clinician's own cases, without those referred to them; staff's list is every case."""
    cases = case_list(user=user)
    return cases if user_sees_everything(user) else cases.filter(owner=user)


def case_list_referred(*, user: AbstractBaseUser, cases: QuerySet[Case]) -> QuerySet[Case]:
    """Those of `cases` referred to this clinician (and not withdrawn)."""
    return cases.filter(pk__in=_referred_cases(user))


def case_list_waiting_for(*, user: AbstractBaseUser, cases: QuerySet[Case]) -> QuerySet[Case]:
    """Those of `cases` with a result waiting for this user: the owner's (any, for staff) cases awaiting
    review, and the referred cases with a finished, used prediction the clinician gave no opinion on."""
    awaiting = Q(status=Case.Status.AWAITING_REVIEW)
    if not user_sees_everything(user):
        awaiting &= Q(owner=user)
    my_reading = Review.objects.filter(prediction=OuterRef("pk"), reviewer=user)
    unread = Prediction.objects.filter(
        scan__case=OuterRef("pk"),
        status=Prediction.Status.DONE,
        exclusion__isnull=True,
        superseded_at__isnull=True,
    ).filter(~Exists(my_reading))
    return cases.filter(awaiting | (Q(pk__in=_referred_cases(user)) & Exists(unread)))


def case_list_of_patient(*, user: AbstractBaseUser, patient: Patient) -> QuerySet[Case]:
    """The patient's cases the user sees, newest first, each with its `scan_count`: a subquery that runs for
    the rows of a page only, where a join and GROUP BY would also weigh on the page count."""
    scans = Scan.objects.filter(case=OuterRef("pk")).order_by().values("case").annotate(count=Count("pk"))
    return (
        case_list(user=user)
        .filter(patient=patient)
        .annotate(scan_count=Coalesce(Subquery(scans.values("count")), 0))
        .order_by("-created_at", "-pk")
    )


def case_get(*, user: AbstractBaseUser, pk: int) -> Case:
    return _get(case_list(user=user), pk, "Case")


def case_get_bare(*, user: AbstractBaseUser, pk: int) -> Case:
    """case_get without the patient's and owner's rows, for what needs only the case itself (its scans,
    its series, an access record): joining them cost PostgreSQL more to plan than the lookup."""
    return _get(_scoped(Case.objects.all(), user, ""), pk, "Case")


def case_page_get(*, user: AbstractBaseUser, pk: int) -> Case:
    """The case as its page reads it: with the number of its scans outside any series (the page's
    paginator count) and whether it has series and signed reports, so the page asks for them only when
    there are some."""
    cases = case_list(user=user).annotate(
        loose_scan_count=Subquery(
            Scan.objects.filter(case=OuterRef("pk"), series__isnull=True)
            .order_by()
            .values("case")
            .annotate(count=Count("pk"))
            .values("count")
        ),
        has_series=Exists(Series.objects.filter(case=OuterRef("pk"))),
        has_reports=Exists(CaseReport.objects.filter(case=OuterRef("pk"))),
    )
    return _get(cases, pk, "Case")


def scan_list(*, user: AbstractBaseUser) -> QuerySet[Scan]:
    return _scoped(Scan.objects.select_related("case", "case__patient"), user, "case")


def case_scan_list(*, case: Case) -> QuerySet[Scan]:
    """A case's scans with their uploader (their predictions: `prediction_summaries`). `case` comes from
    case_get, so the user already sees it: the scans are not scoped through their case again (a join and
    an OR per request)."""
    return Scan.objects.filter(case=case).select_related("uploaded_by")


def prediction_summaries(scan_ids: list[int]) -> dict[int, list[tuple]]:
    """Each scan's predictions, newest first, as rows of what a scan shows of them (id, status, label,
    reason, probability), in one query for a page of scans. Django's prefetching built a queryset per scan
    to keep them in: 0.7 ms of a page of 25 scans' 5."""
    summaries: dict[int, list[tuple]] = {}
    rows = Prediction.objects.filter(scan_id__in=scan_ids).values_list(
        "scan_id", "id", "status", "label", "reason", "probability", named=True
    )
    for row in rows:
        summaries.setdefault(row.scan_id, []).append(row)
    return summaries


def scan_get(*, user: AbstractBaseUser, pk: int) -> Scan:
    return _get(scan_list(user=user), pk, "Scan")


def prediction_list(*, user: AbstractBaseUser) -> QuerySet[Prediction]:
    """With the scan, case, patient and model version of each (the version without its validation figures,
    kilobytes of JSON that no prediction shows: decoding them per row was a sixth of the worklist) and the
    levels."""
    queryset = (
        Prediction.objects.select_related("scan", "scan__case", "scan__case__patient", "model_version")
        .defer("model_version__metrics")
        .prefetch_related("levels")
    )
    return _scoped(queryset, user, "scan__case")


def prediction_list_for_api(*, user: AbstractBaseUser) -> QuerySet[Prediction]:
    """The predictions alone, joined only to their case for the scope (the scan shows as its id); what the
    API shows beside them comes from `prediction_related` for the page."""
    return _scoped(Prediction.objects.all(), user, "scan__case")


def prediction_get(*, user: AbstractBaseUser, pk: int) -> Prediction:
    return _get(prediction_list(user=user), pk, "Prediction")


def prediction_get_for_api(*, user: AbstractBaseUser, pk: int) -> Prediction:
    """With its scan and case, which the access log names; what the API shows beside it comes from
    `prediction_related`, so prediction_get's levels and model version would be read twice."""
    return _get(prediction_list_for_api(user=user).select_related("scan__case"), pk, "Prediction")


def patient_find(*, identifier: str) -> Patient | None:
    """The patient registered under this exact identifier, whatever its case and surrounding spaces, among
    all patients: only the open-a-case-for-this-identifier flow asks, and it records the lookup."""
    identifier = Patient.normalise_identifier(identifier)
    return Patient.objects.filter(identifier__iexact=identifier).first() if identifier else None


def referral_active(*, user: AbstractBaseUser, case: Case) -> Referral | None:
    return Referral.objects.filter(case=case, clinician=user, withdrawn_at__isnull=True).first()


def referral_list(*, user: AbstractBaseUser, case: Case) -> QuerySet[Referral]:
    """A case's referrals, withdrawn ones included: all of them for its owner and staff, their own for a
    referred clinician. `case` comes from case_get, so the user already sees it."""
    referrals = Referral.objects.filter(case=case).select_related("clinician", "referred_by", "withdrawn_by")
    if user_sees_everything(user) or case.owner_id == user.pk:
        return referrals
    return referrals.filter(clinician=user)


def referral_get(*, user: AbstractBaseUser, case: Case, pk: int) -> Referral:
    return _get(referral_list(user=user, case=case), pk, "Referral")


def referral_list_received(*, user: AbstractBaseUser) -> QuerySet[Referral]:
    """The active referrals made to this clinician, for their worklist."""
    return Referral.objects.filter(clinician=user, withdrawn_at__isnull=True).select_related(
        "case", "case__patient", "referred_by"
    )


@dataclass(frozen=True)
class ReviewLevelRead:
    level: str
    grade: int
    model_grade: int

    @property
    def changed(self) -> bool:
        """The clinician corrected the model's grade."""
        return self.grade != self.model_grade


@dataclass(frozen=True)
class ReviewRead:
    """A review as the API shows it, read as plain rows (`prediction_related`) or from a `Review`."""

    id: int
    prediction_id: int
    reviewer_id: int
    reviewer: str  # the username
    kind: str
    version: int
    decision: str
    final_label: str
    comment: str
    created_at: datetime
    levels: tuple[ReviewLevelRead, ...] = ()

    @classmethod
    def of(cls, review: Review) -> ReviewRead:
        return cls(
            id=review.pk,
            prediction_id=review.prediction_id,
            reviewer_id=review.reviewer_id,
            reviewer=review.reviewer.get_username(),
            kind=review.kind,
            version=review.version,
            decision=review.decision,
            final_label=review.final_label,
            comment=review.comment,
            created_at=review.created_at,
            levels=tuple(
                ReviewLevelRead(level.finding.level, level.grade, level.finding.grade)
                for level in review.levels.all()
            ),
        )


@dataclass(frozen=True)
class Opinions:
    """A prediction's readings: the case's current review, its earlier versions (newest first), and the
    current second opinion of each referred clinician (`Review`s, or `ReviewRead`s for the API)."""

    review: Review | ReviewRead | None
    earlier_versions: list
    second_opinions: list


def opinions_of(reviews) -> Opinions:
    """The readings among all of a prediction's reviews (`Review`s or `ReviewRead`s)."""
    reviews = sorted(reviews, key=lambda review: review.version, reverse=True)
    chain = [review for review in reviews if review.kind == Review.Kind.REVIEW]
    latest_opinions: dict = {}
    for review in reviews:
        if review.kind == Review.Kind.SECOND_OPINION:
            latest_opinions.setdefault(review.reviewer_id, review)
    return Opinions(
        review=chain[0] if chain else None,
        earlier_versions=chain[1:],
        second_opinions=sorted(latest_opinions.values(), key=lambda review: review.created_at),
    )


def prediction_opinions(prediction: Prediction) -> Opinions:
    """From `prediction.reviews` (prefetch `reviews__reviewer` for lists)."""
    return opinions_of(prediction.reviews.all())


@dataclass(frozen=True)
class ExclusionRead:
    """A prediction left out of the sign-off, as the API shows it: the reason, who and when."""

    reason: str
    excluded_by: str  # the username
    created_at: datetime


@dataclass(frozen=True)
class PredictionRelated:
    """What the API shows of a page of predictions beyond their own columns, by prediction id (model
    versions by their id); the levels as rows with a PredictionLevel's field names."""

    levels: dict[int, list[tuple]]
    models: dict[int, ModelVersion]
    opinions: dict[int, Opinions]
    exclusions: dict[int, ExclusionRead]

    def opinions_of(self, prediction_id: int) -> Opinions:
        return self.opinions.get(prediction_id) or Opinions(None, [], [])


@dataclass(frozen=True)
class _RelatedQueries:
    levels: QuerySet
    reviews: QuerySet
    exclusions: QuerySet


@functools.cache
def _related_queries() -> _RelatedQueries:
    """prediction_related's three queries but for the page's ids, built once per process and never evaluated
    themselves (each page filters copies): building them took 0.3 ms of a prediction page's 6."""
    username = get_user_model().USERNAME_FIELD
    return _RelatedQueries(
        levels=PredictionLevel.objects.values_list(
            "prediction_id",
            "level",
            "grade",
            "grade_probabilities",
            "degenerated_probability",
            "box",
            named=True,
        ),
        # One row per review level (one for a review without levels), the review's columns in ReviewRead's
        # order.
        reviews=Review.objects.order_by("pk", "levels__finding__level").values_list(
            "pk",
            "prediction_id",
            "reviewer_id",
            f"reviewer__{username}",
            "kind",
            "version",
            "decision",
            "final_label",
            "comment",
            "created_at",
            "levels__finding__level",
            "levels__grade",
            "levels__finding__grade",
        ),
        # Compiling the exclusion's join to every column of its user took longer than the query.
        exclusions=PredictionExclusion.objects.values_list(
            "prediction_id", "reason", f"excluded_by__{username}", "created_at"
        ),
    )


def prediction_related(predictions: list[Prediction]) -> PredictionRelated:
    """In four small queries, whatever the page's size: the levels as rows, the model versions without
    their validation figures (kilobytes of JSON per model), every review with its reviewer and levels as
    rows of one join, and the exclusions. Django's prefetching took twice as long for a page of 25: a query
    more for the review levels, and a queryset built per prediction for each relation. Joined into the
    page's query, the model versions and the exclusion cost PostgreSQL more planning (1.8 ms against
    0.3 ms for the three queries at hospital size) than their queries cost Django."""
    ids = [prediction.pk for prediction in predictions]
    levels: dict[int, list[tuple]] = {}
    queries = _related_queries()
    for level in queries.levels.filter(prediction_id__in=ids):
        levels.setdefault(level.prediction_id, []).append(level)
    model_ids = {p.model_version_id for p in predictions} | {p.requested_model_id for p in predictions}
    model_ids.discard(None)
    models = (
        ModelVersion.objects.only("name", "version", "architecture").in_bulk(model_ids) if model_ids else {}
    )
    rows = queries.reviews.filter(prediction_id__in=ids)
    reviews: dict[int, tuple[tuple, list[ReviewLevelRead]]] = {}
    for *review, level, grade, model_grade in rows:
        _columns, review_levels = reviews.setdefault(review[0], (review, []))
        if level is not None:
            review_levels.append(ReviewLevelRead(level, grade, model_grade))
    by_prediction: dict[int, list[ReviewRead]] = {}
    for columns, review_levels in reviews.values():
        read = ReviewRead(*columns, levels=tuple(review_levels))
        by_prediction.setdefault(read.prediction_id, []).append(read)
    exclusions = {
        prediction_id: ExclusionRead(*columns)
        for prediction_id, *columns in queries.exclusions.filter(prediction_id__in=ids)
    }
    return PredictionRelated(
        levels=levels,
        models=models,
        opinions={pk: opinions_of(found) for pk, found in by_prediction.items()},
        exclusions=exclusions,
    )


@dataclass(frozen=True)
class LevelReviewCount:
    level: str
    reviewed: int
    changed: int

    @property
    def changed_rate(self) -> float:
        return self.changed / self.reviewed if self.reviewed else 0.0


def model_level_review_counts() -> dict[int, list[LevelReviewCount]]:
    """Per model version and disc level: how many levels the cases' current reviews graded and how many
    of those grades differ from the model's, in one grouped query. Second opinions are not counted, as
    they are not for the models' override rates."""
    rows = (
        ReviewLevel.objects.filter(review__in=Review.objects.current().filter(kind=Review.Kind.REVIEW))
        .order_by()
        .values("finding__prediction__model_version", "finding__level")
        .annotate(reviewed=Count("id"), changed=Count("id", filter=~Q(grade=F("finding__grade"))))
        .order_by("finding__prediction__model_version", "finding__level")
    )
    counts: dict[int, list[LevelReviewCount]] = {}
    for row in rows:
        counts.setdefault(row["finding__prediction__model_version"], []).append(
            LevelReviewCount(level=row["finding__level"], reviewed=row["reviewed"], changed=row["changed"])
        )
    return counts


@dataclass(frozen=True)
class ReviewCounts:
    """A model version's current case reviews, and how many of them overrode its label."""

    reviews: int = 0
    overrides: int = 0

    @property
    def override_rate(self) -> float | None:
        return self.overrides / self.reviews if self.reviews else None


# Every review counts, so the grouping grows with use; kept this long unless a review is added.
MODEL_REVIEW_COUNTS_SECONDS = 300


def model_version_review_counts() -> dict[int, ReviewCounts]:
    """ReviewCounts by model version id, for the models page. One grouped query over every current review,
    cached under the newest review's id: a new review or amendment shows at once, a deleted one (only ever
    with its case) within MODEL_REVIEW_COUNTS_SECONDS."""
    newest = Review.objects.aggregate(newest=Max("pk"))["newest"] or 0
    key = f"model-version-review-counts:{newest}"
    counts = cache.get(key)
    if counts is None:
        rows = (
            Review.objects.current()
            .filter(kind=Review.Kind.REVIEW)
            .order_by()
            .values("prediction__model_version")
            .annotate(reviews=Count("pk"), overrides=Count("pk", filter=Q(decision=Review.Decision.OVERRIDE)))
        )
        counts = {
            row["prediction__model_version"]: ReviewCounts(row["reviews"], row["overrides"]) for row in rows
        }
        cache.set(key, counts, MODEL_REVIEW_COUNTS_SECONDS)
    return counts


# The case history: every recorded change to the case and what hangs off it, and every access to it.

HISTORY_VERBS = {"+": "created", "~": "changed", "-": "deleted"}
# Bookkeeping that changes on every save or every worker claim, not a clinical fact.
HISTORY_QUIET_FIELDS = ["updated_at", "dispatched_at", "claimed_by", "claimed_pid"]


@dataclass(frozen=True)
class FieldChange:
    field: str
    old: str
    new: str


@dataclass
class HistoryEntry:
    at: datetime
    user: str
    kind: str  # "change" or "access"
    object_type: str
    object_id: int | None
    action: str
    summary: str
    record: Model | None = field(default=None, repr=False)

    @cached_property
    def changes(self) -> list[FieldChange]:
        """What a change altered, field by field (the earlier version is read only when asked for)."""
        if self.record is None or self.record.history_type != "~" or self.record.prev_record is None:
            return []
        delta = self.record.diff_against(self.record.prev_record, excluded_fields=HISTORY_QUIET_FIELDS)
        model = self.record.instance_type
        return [
            FieldChange(
                change.field, _shown(model, change.field, change.old), _shown(model, change.field, change.new)
            )
            for change in delta.changes
        ]


def _shown(model: type[Model], field_name: str, value) -> str:
    """A value as a person reads it: users by name, times in the current time zone, long texts cut."""
    if value is None or value == "":
        return ""
    if isinstance(value, datetime):
        return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S %Z")
    if model._meta.get_field(field_name).related_model is get_user_model():
        user = get_user_model().objects.filter(pk=value).first()
        return user.get_username() if user else str(value)
    text = str(value)
    return text if len(text) <= 200 else text[:199] + "…"


def _username(user) -> str:
    return user.get_username() if user is not None else "system"


def _change_summary(object_type: str, record) -> str:
    verb = HISTORY_VERBS[record.history_type]
    if object_type == "review":
        return f"{record.get_kind_display()} {record.id} (version {record.version}) {verb}"
    if object_type == "review level":
        level = record.finding.level if record.finding is not None else f"finding {record.finding_id}"
        return f"Review {record.review_id}: grade {record.grade} at {level} {verb}"
    if object_type == "referral" and record.withdrawn_at and record.history_type == "~":
        return f"Referral {record.id} withdrawn"
    return f"{object_type.capitalize()} {record.id} {verb}"


@functools.cache
def _historical(model: type[Model]) -> type[Model]:
    """The model of a tracked model's historical records. Reading `Model.history` builds a new manager
    class each time (simple_history's descriptor): a fifth of the case page's timeline, which read nine."""
    return get_history_model_for_model(model)


def _change_sources(case: Case) -> list[tuple[str, QuerySet]]:
    """The history of the case and of what hangs off it, by kind. Deleted scans and predictions are still
    found through their own history."""
    scan_ids = _historical(Scan).objects.filter(case_id=case.pk).values("id")
    prediction_ids = _historical(Prediction).objects.filter(scan_id__in=scan_ids).values("id")
    return [
        ("patient", _historical(Patient).objects.filter(id=case.patient_id)),
        ("case", _historical(Case).objects.filter(id=case.pk)),
        ("scan", _historical(Scan).objects.filter(case_id=case.pk)),
        ("prediction", _historical(Prediction).objects.filter(scan_id__in=scan_ids)),
        ("prediction level", _historical(PredictionLevel).objects.filter(prediction_id__in=prediction_ids)),
        ("review", _historical(Review).objects.filter(prediction_id__in=prediction_ids)),
        ("referral", _historical(Referral).objects.filter(case_id=case.pk)),
    ]


def _change_entry(object_type: str, record) -> HistoryEntry:
    return HistoryEntry(
        at=record.history_date,
        user=_username(record.history_user),
        kind="change",
        object_type=object_type,
        object_id=record.id,
        action=HISTORY_VERBS[record.history_type],
        summary=_change_summary(object_type, record),
        record=record,
    )


def _case_changes(case: Case) -> list[HistoryEntry]:
    """Every recorded change to the case and what hangs off it, with the grades a review gave per level,
    newest first."""
    sources = _change_sources(case)
    reviews = _historical(Review).objects.filter(prediction_id__in=sources[3][1].values("id")).values("id")
    levels = _historical(ReviewLevel).objects.filter(review_id__in=reviews).select_related("finding")
    sources.append(("review level", levels))
    entries = [
        _change_entry(object_type, record)
        for object_type, records in sources
        for record in records.select_related("history_user").order_by("-history_date", "-history_id")
    ]
    entries.sort(key=lambda entry: entry.at, reverse=True)
    return entries


def case_timeline(*, case: Case, limit: int) -> list[HistoryEntry]:
    """The case page's timeline: its newest `limit` changes (the grades a review gives per level, told with
    the review, left out). One UNION ALL of the history tables, each reading no more than `limit` rows, gives
    what the summaries need; the full records are read only for changes ("~"), whose fields the page lists,
    in one query per kind that has some (the history page has everything, and every view and download)."""
    sources = dict(_change_sources(case))
    columns = ["history_id", "history_date", "history_type", "id", "history_user__username"]
    parts = []
    for object_type, records in sources.items():
        review = object_type == "review"
        parts.append(
            records.order_by()
            .annotate(
                object_type=Value(object_type, output_field=CharField()),
                # Typed NULLs: PostgreSQL would take a bare NULL column of the first part for text.
                review_kind=F("kind") if review else Cast(Value(None), CharField()),
                review_version=F("version") if review else Cast(Value(None), IntegerField()),
                referral_withdrawn_at=F("withdrawn_at")
                if object_type == "referral"
                else Cast(Value(None), DateTimeField()),
            )
            .values(*columns, "object_type", "review_kind", "review_version", "referral_withdrawn_at")
        )
        if connection.features.supports_slicing_ordering_in_compound:  # not SQLite: it reads every row
            parts[-1] = parts[-1].order_by("-history_date", "-history_id")[:limit]
    rows = list(parts[0].union(*parts[1:], all=True).order_by("-history_date", "-history_id")[:limit])
    changed: dict[str, dict[int, Model]] = {}
    for object_type in {row["object_type"] for row in rows if row["history_type"] == "~"}:
        ids = [row["history_id"] for row in rows if row["object_type"] == object_type]
        records = sources[object_type].filter(history_id__in=ids).select_related("history_user")
        changed[object_type] = {record.history_id: record for record in records}
    entries = []
    for row in rows:
        object_type = row["object_type"]
        record = changed.get(object_type, {}).get(row["history_id"])
        if record is None:
            # What _change_summary reads, on an unsaved historical row (nothing else of it is read).
            fields = {key: row[key] for key in ("history_id", "history_date", "history_type", "id")}
            if object_type == "review":
                fields |= {"kind": row["review_kind"], "version": row["review_version"]}
            if object_type == "referral":
                fields["withdrawn_at"] = row["referral_withdrawn_at"]
            record = sources[object_type].model(**fields)
        entry = _change_entry(object_type, record)
        entry.user = row["history_user__username"] or "system"
        entries.append(entry)
    return entries


def case_history(*, case: Case) -> list[HistoryEntry]:
    """Newest first: every change, and every view and download. `case` comes from case_get, so the user
    already sees it."""
    entries = _case_changes(case)
    entries += [
        HistoryEntry(
            at=event.at,
            user=_username(event.user),
            kind="access",
            object_type=event.object_type,
            object_id=event.object_id,
            action=event.action,
            summary=event.get_action_display()
            + (f" ({event.object_type} {event.object_id})" if event.object_type not in ("", "case") else ""),
        )
        for event in AccessEvent.objects.filter(case_id=case.pk).select_related("user")
    ]
    return sorted(entries, key=lambda entry: entry.at, reverse=True)


def series_list(*, user: AbstractBaseUser) -> QuerySet[Series]:
    queryset = Series.objects.select_related("case", "chosen_scan", "chosen_by").prefetch_related("slices")
    return _scoped(queryset, user, "case")


def series_get(*, user: AbstractBaseUser, pk: int) -> Series:
    return _get(series_list(user=user), pk, "Series")


def incoming_list(*, user: AbstractBaseUser) -> QuerySet[IncomingSeries]:
    """Series received for no case wait for anyone who works with patient records to attach them."""
    if user_sees_everything(user) or user_is_clinician(user):
        return IncomingSeries.objects.all()
    return IncomingSeries.objects.none()


def incoming_get(*, user: AbstractBaseUser, pk: int) -> IncomingSeries:
    return _get(incoming_list(user=user), pk, "Incoming series")


def _not_used(prediction: OuterRef) -> Exists:
    return Exists(PredictionExclusion.objects.filter(prediction=prediction))


def _reviewed(prediction: OuterRef) -> Exists:
    return Exists(Review.objects.filter(prediction=prediction, kind=Review.Kind.REVIEW))


def _awaiting_review() -> Q:
    """Finished, not marked not used and not reviewed. NOT EXISTS (not a LEFT JOIN ... IS NULL), which
    PostgreSQL plans as an anti-join instead of nested loops."""
    return Q(status=Prediction.Status.DONE) & ~_not_used(OuterRef("pk")) & ~_reviewed(OuterRef("pk"))


def prediction_filter_awaiting_review(*, queryset: QuerySet[Prediction]) -> QuerySet[Prediction]:
    """The predictions that wait for the case review."""
    return queryset.filter(_awaiting_review())


def case_prediction_counts(*, case: Case) -> dict[str, int]:
    """The case's current predictions counted by where they stand, under the names of the Case fields
    that keep these counts: awaiting review (as prediction_filter_awaiting_review), in progress (queued or
    running) and failed."""
    return case_current_predictions(case=case).aggregate(
        predictions_awaiting_review=Count("pk", filter=_awaiting_review()),
        predictions_in_progress=Count(
            "pk", filter=Q(status__in=[Prediction.Status.QUEUED, Prediction.Status.RUNNING])
        ),
        predictions_failed=Count("pk", filter=Q(status=Prediction.Status.FAILED)),
    )


def worklist_counts(*, cases: QuerySet[Case]) -> dict[str, int]:
    """The worklist's counts, in one pass over `cases` (the open ones, already scoped to the user): the
    cases, and their current predictions awaiting review, in progress and failed, summed from the counts
    each case keeps (case_prediction_counts)."""
    return cases.order_by().aggregate(
        open_cases=Count("pk"),
        awaiting_review=Sum("predictions_awaiting_review", default=0),
        in_progress=Sum("predictions_in_progress", default=0),
        failed=Sum("predictions_failed", default=0),
    )


def case_current_predictions(*, case: Case) -> QuerySet[Prediction]:
    """The current prediction of each scan of the case: a re-run supersedes the ones before it, and a
    series counts by its chosen slice (Prediction.superseded_at)."""
    return Prediction.objects.filter(scan__case=case, superseded_at__isnull=True)


def case_predictions_changed_since(
    *, predictions: QuerySet[Prediction], since: datetime
) -> QuerySet[Prediction]:
    """Those queued, started, finished, reviewed or marked not used after `since`: what the case page's
    poll has not seen yet."""
    reviewed = Review.objects.filter(prediction=OuterRef("pk"), created_at__gt=since)
    return predictions.filter(
        Q(queued_at__gt=since)
        | Q(started_at__gt=since)
        | Q(finished_at__gt=since)
        | Q(exclusion__created_at__gt=since)
        | Exists(reviewed)
    )


def case_unsettled_predictions(*, case: Case) -> QuerySet[Prediction]:
    """The current predictions a sign-off still waits for: neither reviewed nor marked not used."""
    return case_current_predictions(case=case).filter(~_not_used(OuterRef("pk")), ~_reviewed(OuterRef("pk")))


def _predictions(count: int) -> str:
    return f"{count} prediction{'s' if count != 1 else ''}"


@dataclass(frozen=True)
class Unsettled:
    """The case's unsettled current predictions, by status, and the finished one on its newest scan."""

    counts: dict[str, int]
    newest_done: int | None


def case_unsettled(*, case: Case) -> Unsettled:
    """One query for what the case page asks twice (its sign-off blockers and the next result to review):
    a row of two numbers per unsettled prediction, as many as the case has scans at most."""
    rows = (
        case_unsettled_predictions(case=case)
        .order_by("-scan__uploaded_at", "-scan_id")
        .values_list("pk", "status")
    )
    counts: dict[str, int] = {}
    newest_done = None
    for pk, status in rows:
        counts[status] = counts.get(status, 0) + 1
        if newest_done is None and status == Prediction.Status.DONE:
            newest_done = pk
    return Unsettled(counts=counts, newest_done=newest_done)


def case_sign_off_blockers(*, case: Case, unsettled: Unsettled | None = None) -> list[str]:
    """What keeps the case from being signed off, one sentence per kind; empty when nothing does."""
    if unsettled is not None:
        counts = unsettled.counts
    else:
        counts = dict(
            case_unsettled_predictions(case=case)
            .order_by()
            .values("status")
            .annotate(count=Count("pk"))
            .values_list("status", "count")
        )
    blockers = []
    if not_reviewed := counts.get(Prediction.Status.DONE, 0):
        blockers.append(f"{_predictions(not_reviewed)} not reviewed: review or mark not used.")
    if failed := counts.get(Prediction.Status.FAILED, 0):
        blockers.append(f"{_predictions(failed)} failed: re-run or mark not used.")
    if unfinished := counts.get(Prediction.Status.QUEUED, 0) + counts.get(Prediction.Status.RUNNING, 0):
        blockers.append(f"{_predictions(unfinished)} still running: wait for the result or mark not used.")
    return blockers


def case_report_list(*, case: Case) -> QuerySet[CaseReport]:
    """The case's report versions, newest first; the case comes from a scoped selector."""
    return case.reports.select_related("signed_by", "reopened_by").order_by("-version")


def case_report_get(*, case: Case, version: int | None = None) -> CaseReport:
    """The latest report of the case, or the version asked for."""
    reports = case_report_list(case=case)
    report = reports.first() if version is None else reports.filter(version=version).first()
    if report is None:
        missing = "This case has no signed report." if version is None else f"No report version {version}."
        raise NotFound(missing)
    return report
