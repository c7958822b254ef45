"""Clinician pages: validate with a form, call a selector or a service, render. Scan files, heatmaps and
model plots leave only through the permission-checked views here; MEDIA_ROOT has no URL."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from functools import wraps
from pathlib import Path
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.paginator import Page, Paginator
from django.db.models import Prefetch, Q, QuerySet, prefetch_related_objects
from django.db.models.fields.files import FieldFile
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET, require_POST
from PIL import Image

from diagnosis.api.filters import CaseFilter
from diagnosis.errors import ApplicationError, Conflict, NotFound, PermissionDenied
from diagnosis.forms import (
    CaseCreateForm,
    NotUsedForm,
    PatientForm,
    ReferralForm,
    ReopenForm,
    RerunForm,
    ReviewForm,
    SignOffForm,
    grade_field,
)
from diagnosis.imaging import DISPLAY_WINDOWS, ImageRejected, load_display_view
from diagnosis.models import (
    AccessEvent,
    Case,
    CaseReport,
    Prediction,
    PredictionLevel,
    Review,
    ReviewLevel,
    Scan,
    Series,
)
from diagnosis.selectors import (
    ReviewCounts,
    Unsettled,
    case_current_predictions,
    case_get,
    case_list,
    case_list_of_patient,
    case_list_owned,
    case_list_waiting_for,
    case_page_get,
    case_predictions_changed_since,
    case_report_get,
    case_report_list,
    case_sign_off_blockers,
    case_timeline,
    case_unsettled,
    model_level_review_counts,
    model_version_review_counts,
    patient_case_counts,
    patient_get,
    patient_list,
    prediction_filter_awaiting_review,
    prediction_get,
    prediction_list,
    prediction_opinions,
    referral_list,
    referral_list_received,
    scan_get,
    scan_list,
    series_list,
    worklist_counts,
)
from diagnosis.services.access import case_referral_of, ensure_can_change_case, ensure_can_change_patient
from diagnosis.services.cases import case_create, case_update
from diagnosis.services.history import access_record
from diagnosis.services.patients import IDENTIFIER_TAKEN, patient_create, patient_update
from diagnosis.services.predictions import prediction_request
from diagnosis.services.reviews import review_create
from diagnosis.services.series import FileOutcome, series_upload
from diagnosis.services.signoff import (
    case_reopen,
    case_sign_off,
    prediction_mark_not_used,
    prediction_use_again,
)
from ml.card import ModelCard
from ml.errors import ArtifactError
from ml.models import ModelVersion
from ml.registry import artifact_dir_for

SCAN_CONTENT_TYPES = {
    Scan.Format.PNG: "image/png",
    Scan.Format.JPEG: "image/jpeg",
    Scan.Format.DICOM: "application/dicom",
}
# The series viewer's window presets (diagnosis.imaging.DISPLAY_WINDOWS), as the page names them.
WINDOW_PRESETS = [
    ("default", "File"),
    ("soft-tissue", "Soft tissue"),
    ("fluid", "Fluid and discs"),
    ("full", "Full range"),
]
# Plots an artifact folder may hold (ml.evaluation draws them); no other name is ever read from disk.
KNOWN_PLOTS = {
    "roc_curve.png": "ROC curve (validation)",
    "confusion_matrix.png": "Confusion matrix (validation)",
    "training_curves.png": "Training curves",
}


def clinician_page(view):
    """Log-in required; a record that is missing or someone else's is a plain 404."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except NotFound:
            raise Http404("Not found.") from None
        except PermissionDenied as exc:
            raise DjangoPermissionDenied(exc.message) from None

    return wrapper


# Files ---------------------------------------------------------------------------------------------------


def _file_response(field_file: FieldFile, content_type: str, filename: str, as_attachment: bool = False):
    try:
        handle = field_file.open("rb")
    except (FileNotFoundError, ValueError):
        raise Http404("The file is missing.") from None
    response = FileResponse(handle, content_type=content_type, as_attachment=as_attachment, filename=filename)
    response["X-Content-Type-Options"] = "nosniff"
    return response


def scan_file_response(scan: Scan, *, user, action: str = AccessEvent.Action.DOWNLOAD_SCAN) -> FileResponse:
    """The stored file, its access logged: pages and the API both serve scans through here."""
    access_record(user=user, obj=scan, action=action)
    is_dicom = scan.format == Scan.Format.DICOM
    # The uploaded name with the stored file's extension: a JPEG upload is stored as a PNG.
    filename = f"{Path(scan.original_name).stem or 'scan'}{Path(scan.file.name).suffix}"
    return _file_response(scan.file, SCAN_CONTENT_TYPES[scan.format], filename, as_attachment=is_dicom)


def heatmap_response(prediction: Prediction, *, user) -> FileResponse:
    if not prediction.heatmap:
        raise Http404("This prediction has no heatmap yet.")
    access_record(user=user, obj=prediction, action=AccessEvent.Action.VIEW_HEATMAP)
    return _file_response(prediction.heatmap, "image/png", f"prediction-{prediction.pk}-heatmap.png")


def report_response(report: CaseReport) -> FileResponse:
    filename = f"case-{report.case_id}-report-v{report.version}.pdf"
    return _file_response(report.file, "application/pdf", filename, as_attachment=True)


@require_GET
@clinician_page
def scan_file(request: HttpRequest, pk: int) -> HttpResponse:
    return scan_file_response(scan_get(user=request.user, pk=pk), user=request.user)


@require_GET
@clinician_page
def scan_preview(request: HttpRequest, pk: int) -> HttpResponse:
    """Browsers cannot show DICOM, so its view is rendered as PNG, under one of the viewer's window presets
    (`?window=`); other formats are served as stored."""
    scan = scan_get(user=request.user, pk=pk)
    if scan.format != Scan.Format.DICOM:
        return scan_file_response(scan, user=request.user, action=AccessEvent.Action.VIEW_SCAN)
    window = request.GET.get("window", "default")
    if window not in DISPLAY_WINDOWS:
        raise Http404("No such window preset.")
    access_record(user=request.user, obj=scan, action=AccessEvent.Action.VIEW_SCAN)
    try:
        with scan.file.open("rb") as handle:
            view = load_display_view(handle.read(), window=window)
    except (FileNotFoundError, ImageRejected):
        raise Http404("The scan cannot be shown.") from None
    buffer = io.BytesIO()
    Image.fromarray(view).save(buffer, format="PNG")
    return HttpResponse(buffer.getvalue(), content_type="image/png")


@require_GET
@clinician_page
def prediction_heatmap(request: HttpRequest, pk: int) -> HttpResponse:
    return heatmap_response(prediction_get(user=request.user, pk=pk), user=request.user)


# Worklist ------------------------------------------------------------------------------------------------


@require_GET
@clinician_page
def worklist(request: HttpRequest) -> HttpResponse:
    open_cases = case_list_owned(user=request.user).exclude(status=Case.Status.SIGNED_OFF)
    # The current predictions only (a re-run's earlier results are history, not work); the lists show no
    # levels.
    predictions = (
        prediction_list(user=request.user)
        .filter(scan__case__in=open_cases, superseded_at__isnull=True)
        .prefetch_related(None)
    )
    waiting = prediction_filter_awaiting_review(queryset=predictions).order_by("finished_at")
    failures = predictions.filter(status=Prediction.Status.FAILED).order_by("-finished_at")
    counts = worklist_counts(cases=open_cases)
    cases = _worklist_cases(request)
    context = {
        "cases": Paginator(cases.qs if cases.is_valid() else cases.queryset.none(), 25).get_page(
            request.GET.get("page")
        ),
        "case_filter": cases,
        "case_statuses": Case.Status.choices,
        "case_orderings": WORKLIST_ORDERINGS,
        "waiting": waiting[:50],
        "failures": failures[:20],
        "counts": counts,
        "referred": referral_list_received(user=request.user)[:50],
    }
    return render(request, "diagnosis/worklist.html", context)


# The worklist's case list: what a clinician asks for most, before choosing filters.
WORKLIST_DEFAULT_FILTERS = {"signed_off": "false", "ordering": "-updated_at"}
WORKLIST_ORDERINGS = [
    ("-updated_at", "Recently updated"),
    ("-created_at", "Newest first"),
    ("created_at", "Oldest first"),
    ("patient_identifier", "Patient identifier"),
]


def _worklist_cases(request: HttpRequest) -> CaseFilter:
    """Every case the user sees (their own, those referred to them; every case for staff), through the
    same filters and orderings as the API's case list."""
    data = request.GET if set(request.GET) - {"page"} else WORKLIST_DEFAULT_FILTERS
    return CaseFilter(data, queryset=case_list(user=request.user), request=request)


@require_GET
@clinician_page
def prediction_page(request: HttpRequest, pk: int) -> HttpResponse:
    """A prediction's place on its case page (the page of scans that holds it), for links from lists."""
    return redirect(case_anchor(prediction_get(user=request.user, pk=pk)))


# Patients ------------------------------------------------------------------------------------------------


@require_GET
@clinician_page
def patient_list_page(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:100]
    if query:
        access_record(user=request.user, obj=None, action=AccessEvent.Action.SEARCH_PATIENTS, detail=query)
    patients = patient_list(user=request.user, search=query).order_by("identifier")
    page = Paginator(patients, 25).get_page(request.GET.get("page"))
    page.object_list = list(page.object_list)
    case_counts = patient_case_counts(user=request.user, patients=page.object_list)
    for patient in page.object_list:
        patient.case_count = case_counts.get(patient.pk, 0)
    return render(request, "diagnosis/patient_list.html", {"page": page, "query": query})


@clinician_page
def patient_create_page(request: HttpRequest) -> HttpResponse:
    form = PatientForm(request.POST or None)
    if request.method == "POST" and (patient := form.submit(patient_create, user=request.user)):
        messages.success(request, f"Patient {patient.identifier} registered.")
        return redirect("diagnosis:patient-detail", pk=patient.pk)
    next_step = None
    if IDENTIFIER_TAKEN in form.errors.get("identifier", []):
        query = urlencode({"identifier": form.data.get("identifier", "").strip()})
        next_step = (
            f"{reverse('diagnosis:case-open-by-identifier')}?{query}",
            "Open a case for this identifier",
        )
    return _render_form(request, form, title="New patient", submit="Register patient", next_step=next_step)


@clinician_page
def patient_edit_page(request: HttpRequest, pk: int) -> HttpResponse:
    patient = patient_get(user=request.user, pk=pk)
    ensure_can_change_patient(request.user, patient)
    form = PatientForm(request.POST) if request.method == "POST" else PatientForm.for_patient(patient)
    if request.method == "POST" and form.submit(patient_update, user=request.user, patient=patient):
        messages.success(request, "Patient details saved.")
        return redirect("diagnosis:patient-detail", pk=patient.pk)
    back = reverse("diagnosis:patient-detail", args=[patient.pk])
    return _render_form(request, form, title=f"Edit patient {patient.identifier}", submit="Save", back=back)


@require_GET
@clinician_page
def patient_detail_page(request: HttpRequest, pk: int) -> HttpResponse:
    patient = patient_get(user=request.user, pk=pk)
    access_record(user=request.user, obj=patient, action=AccessEvent.Action.VIEW_PATIENT)
    cases = case_list_of_patient(user=request.user, patient=patient)
    page = Paginator(cases, PATIENT_PAGE_CASES).get_page(request.GET.get("page"))
    try:
        ensure_can_change_patient(request.user, patient)
        can_edit = True
    except PermissionDenied:
        can_edit = False
    context = {"patient": patient, "page": page, "form": CaseCreateForm(), "can_edit": can_edit}
    return render(request, "diagnosis/patient_detail.html", context)


PATIENT_PAGE_CASES = 25


def _render_form(
    request,
    form,
    *,
    title: str,
    submit: str,
    back: str = "",
    status: int | None = None,
    next_step: tuple[str, str] | None = None,
):
    """`next_step` is a (url, text) link shown under the form, where the errors point somewhere else."""
    context = {"form": form, "title": title, "submit": submit, "back": back, "next_step": next_step}
    if status is None:
        status = 400 if form.is_bound and form.errors else 200
    return render(request, "diagnosis/form.html", context, status=status)


# Cases ---------------------------------------------------------------------------------------------------


@clinician_page
def case_create_page(request: HttpRequest, pk: int) -> HttpResponse:
    patient = patient_get(user=request.user, pk=pk)
    form = CaseCreateForm(request.POST or None)
    if request.method == "POST" and (case := form.submit(case_create, user=request.user, patient=patient)):
        messages.success(request, f"Case {case.pk} opened.")
        return redirect("diagnosis:case-detail", pk=case.pk)
    back = reverse("diagnosis:patient-detail", args=[patient.pk])
    return _render_form(
        request, form, title=f"New case for {patient.identifier}", submit="Open case", back=back
    )


@clinician_page
def case_edit_page(request: HttpRequest, pk: int) -> HttpResponse:
    case = case_get(user=request.user, pk=pk)
    ensure_can_change_case(request.user, case)
    initial = {"clinical_question": case.clinical_question, "notes": case.notes}
    form = CaseCreateForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.submit(case_update, user=request.user, case=case):
        messages.success(request, "Case saved.")
        return redirect("diagnosis:case-detail", pk=case.pk)
    back = reverse("diagnosis:case-detail", args=[case.pk])
    return _render_form(request, form, title=f"Edit case {case.pk}", submit="Save", back=back)


# The case page shows this many scans at a time (newest first); the series of the case are on the first page.
CASE_PAGE_SCANS = 10


def _case_scan_rows(user, case: Case) -> QuerySet[Scan]:
    """The case's scans outside any series, in page order."""
    return scan_list(user=user).filter(case=case, series__isnull=True).order_by("-uploaded_at", "-pk")


def _case_scans(user, case: Case, page_number) -> Page:
    """The page of scans, their predictions not yet read (see _render_case)."""
    paginator = Paginator(_case_scan_rows(user, case), CASE_PAGE_SCANS)
    if hasattr(case, "loose_scan_count"):  # case_page_get counted them with the case
        paginator.count = case.loose_scan_count or 0
    page = paginator.get_page(page_number)
    page.object_list = list(page.object_list)
    return page


def case_page_of(scan: Scan) -> int:
    """The page of the case page that shows this scan."""
    if scan.series_id is not None:
        return 1
    newer = Scan.objects.filter(case=scan.case_id, series__isnull=True).filter(
        Q(uploaded_at__gt=scan.uploaded_at) | Q(uploaded_at=scan.uploaded_at, pk__gt=scan.pk)
    )
    return newer.count() // CASE_PAGE_SCANS + 1


_PAGE_PREDICTIONS = Prediction.objects.select_related(
    "model_version", "requested_model", "exclusion__excluded_by"
).prefetch_related(
    Prefetch("reviews", queryset=Review.objects.select_related("reviewer", "referral")),
    Prefetch("reviews__levels", queryset=ReviewLevel.objects.select_related("finding")),
    "levels",
)


def _case_series(user, case: Case) -> list[Series]:
    """The case's series with their slices, whose predictions are not yet read (see _render_case)."""
    if not getattr(case, "has_series", True):  # case_page_get knows there are none
        return []
    series = (
        series_list(user=user)
        .filter(case=case)
        .prefetch_related(None)
        .prefetch_related(Prefetch("slices", queryset=Scan.objects.order_by("slice_index")))
    )
    for item in series:
        item.ordered_slices = list(item.slices.all())
    return list(series)


def _read_predictions(scans: list[Scan], series: list[Series]) -> None:
    """The predictions of the page's scans and of the series' slices, in one query for each table."""
    prefetch_related_objects(
        [*scans, *(scan for item in series for scan in item.ordered_slices)],
        Prefetch("predictions", queryset=_PAGE_PREDICTIONS.order_by("-queued_at", "-pk")),
    )
    for item in series:
        item.predictions = sorted(
            (p for scan in item.ordered_slices for p in scan.predictions.all()),
            key=lambda p: (p.queued_at, p.pk),
            reverse=True,
        )
        item.chosen_index = next(
            (s.slice_index for s in item.ordered_slices if s.pk == item.chosen_scan_id), 0
        )


def _next_to_review(user, case: Case, referral, unsettled: Unsettled) -> tuple[str, str] | None:
    """(url, text) of the next result waiting for this user: a current prediction of this case, else the
    next case with one."""
    if referral is None:
        prediction = unsettled.newest_done
    else:
        prediction = (
            case_current_predictions(case=case)
            .filter(status=Prediction.Status.DONE, exclusion__isnull=True)
            .exclude(reviews__reviewer=user)
            .order_by("-scan__uploaded_at", "-scan_id")
            .values_list("pk", flat=True)
            .first()
        )
    if prediction is not None:
        return reverse("diagnosis:prediction-page", args=[prediction]), "Next unreviewed result"
    other = (
        case_list_waiting_for(user=user, cases=case_list(user=user).exclude(pk=case.pk))
        .order_by("-updated_at", "-pk")
        .values_list("pk", flat=True)
        .first()
    )
    if other is not None:
        return reverse("diagnosis:case-detail", args=[other]), f"Next case to review (case {other})"
    return None


def _model_disagreement(current: Prediction, superseded: list[Prediction]) -> list[tuple[str, str]]:
    """(model, label) of the latest finished run of each model version on the scan, when their labels
    differ; empty when they agree or only one model ran."""
    latest: dict[int, tuple[str, str]] = {}
    for prediction in (current, *superseded):  # newest first
        if prediction.status == Prediction.Status.DONE and prediction.model_version_id not in (None, *latest):
            latest[prediction.model_version_id] = (
                prediction.model_version.name,
                prediction.get_label_display(),
            )
    return sorted(latest.values()) if len({label for _, label in latest.values()}) > 1 else []


def _form_errors(form) -> list[str]:
    """Every message of a bound form, for forms the page writes as plain HTML."""
    if form is None:
        return []
    return [message for messages_ in form.errors.values() for message in messages_]


def _my_opinion(opinions, user) -> Review | None:
    """The user's own current reading of a prediction: the case review if theirs, else their opinion."""
    if opinions.review is not None and opinions.review.reviewer_id == user.pk:
        return opinions.review
    return next((review for review in opinions.second_opinions if review.reviewer_id == user.pk), None)


@dataclass(frozen=True)
class GradeRow:
    level: str
    model_grade: int
    grade: int  # preset: the grade of one's own current reading, else the model's
    field: str


@dataclass(frozen=True)
class ReviewFormState:
    """What the case page's review form shows, in plain values: the template writes the HTML itself, so
    that a page of predictions builds no form objects (a form is bound only to the one that was posted)."""

    prefix: str
    grade_rows: list[GradeRow]
    decision: str = ""
    final_label: str = ""
    comment: str = ""
    errors: list[str] = field(default_factory=list)
    field_errors: dict[str, list[str]] = field(default_factory=dict)

    @property
    def bound(self) -> bool:
        return bool(self.errors or self.field_errors)


REVIEW_DECISIONS = Review.Decision.choices
REVIEW_LABELS = Prediction.Label.choices
GRADES = list(PredictionLevel.GRADES)


def _review_form_state(prediction: Prediction, form: ReviewForm | None) -> ReviewFormState:
    prefix = f"review-{prediction.pk}"
    mine = prediction.my_opinion
    given = {reading.finding_id: reading.grade for reading in mine.levels.all()} if mine else {}
    data = form.data if form is not None else {}
    rows = []
    for finding in prediction.levels.all():
        name = f"{prefix}-{grade_field(finding.level)}"
        preset = given.get(finding.pk, finding.grade)
        posted = data.get(name, "")
        rows.append(
            GradeRow(
                level=finding.level,
                model_grade=finding.grade,
                grade=int(posted) if posted.isdigit() else preset,
                field=name,
            )
        )
    if form is None:
        return ReviewFormState(prefix=prefix, grade_rows=rows)
    return ReviewFormState(
        prefix=prefix,
        grade_rows=rows,
        decision=data.get(f"{prefix}-decision", ""),
        final_label=data.get(f"{prefix}-final_label", ""),
        comment=data.get(f"{prefix}-comment", ""),
        # A grade's error names its level, so it is told above the table with the others.
        errors=[
            *form.non_field_errors(),
            *(e for name, errors in form.errors.items() if name.startswith("grade-") for e in errors),
        ],
        field_errors={name: list(errors) for name, errors in form.errors.items() if name != "__all__"},
    )


def _render_case(
    request: HttpRequest,
    case: Case,
    *,
    bound_forms: dict | None = None,
    status: int = 200,
    referral_form: ReferralForm | None = None,
    page_number: int | None = None,
):
    bound_forms = bound_forms or {}
    # The owner and staff change the case; a referred clinician sees it and gives their own opinion.
    referral = case_referral_of(request.user, case)
    page = _case_scans(request.user, case, page_number or request.GET.get("page"))
    scans = page.object_list
    series = _case_series(request.user, case) if page.number == 1 else []
    _read_predictions(scans, series)
    for scan in scans:
        runs = list(scan.predictions.all())
        # The boxes drawn on the image: the newest finished prediction that located the levels.
        scan.located_levels = next((list(p.levels.all()) for p in runs if p.levels.all()), [])
        scan.box_font_size = max(12, round(max(scan.width, scan.height) / 30))
        # The latest run of the scan is current; earlier ones are superseded, folded away on the page.
        scan.current_prediction, scan.superseded = (runs[0], runs[1:]) if runs else (None, [])
    for item in series:
        item.current_prediction, item.superseded = (
            (item.predictions[0], item.predictions[1:]) if item.predictions else (None, [])
        )
    holders = [*scans, *series]
    for holder in holders:
        for prediction in holder.superseded:
            prediction.is_current = False
        if holder.current_prediction is not None:
            holder.current_prediction.is_current = True
            holder.disagreement = _model_disagreement(holder.current_prediction, holder.superseded)
    predictions = [p for holder in holders for p in (holder.current_prediction, *holder.superseded) if p]
    for prediction in predictions:
        prediction.opinions = prediction_opinions(prediction)
        prediction.my_opinion = _my_opinion(prediction.opinions, request.user)
        # Only its author amends a review: nobody else gets a form for it.
        review = prediction.opinions.review
        prediction.can_review = (
            referral is not None or review is None or review.reviewer_id == request.user.pk
        )
        prediction.review_form = _review_form_state(prediction, bound_forms.get(("review", prediction.pk)))
        prediction.rerun_errors = _form_errors(bound_forms.get(("rerun", prediction.pk)))
        prediction.not_used_errors = _form_errors(bound_forms.get(("not-used", prediction.pk)))
    for holder in holders:
        # A form refused on a superseded run is shown, not left folded away.
        holder.superseded_open = any(
            p.review_form.bound or p.rerun_errors or p.not_used_errors for p in holder.superseded
        )
    template = (
        "diagnosis/_scans.html" if request.GET.get("partial") == "scans" else "diagnosis/case_detail.html"
    )
    signed_off = case.status == Case.Status.SIGNED_OFF
    unsettled = None if signed_off else case_unsettled(case=case)
    if signed_off:
        # The forms of a signed-off case are not on its page, so their refusals are told here.
        for key, form in bound_forms.items():
            if key != "reopen":
                for error in form.non_field_errors():
                    messages.error(request, error)
    context = {
        "case": case,
        "scans": scans,
        "scan_page": page,
        # One query for every re-run form of the page.
        "model_versions": list(ModelVersion.objects.order_by("name")),
        "status_cursor": status_cursor(),
        "referral": referral,
        "can_change": referral is None,
        "series_list": series,
        "window_presets": WINDOW_PRESETS,
        "pacs_configured": bool(settings.LUMBAR_PACS_HOST),
        "signed_off": signed_off,
        # case_page_get knows whether there are any.
        "reports": list(case_report_list(case=case)) if getattr(case, "has_reports", True) else [],
        "blockers": [] if signed_off else case_sign_off_blockers(case=case, unsettled=unsettled),
        "sign_off_form": bound_forms.get("sign-off") or SignOffForm(),
        "reopen_form": bound_forms.get("reopen") or ReopenForm(),
        "max_upload_mb": settings.LUMBAR_MAX_UPLOAD_BYTES // (1024 * 1024),
        "review_decisions": REVIEW_DECISIONS,
        "review_labels": REVIEW_LABELS,
        "grades": GRADES,
        "degenerated_from": PredictionLevel.DEGENERATED_FROM,
    }
    if template == "diagnosis/case_detail.html":
        context["referrals"] = referral_list(user=request.user, case=case)
        context["referral_form"] = referral_form or ReferralForm()
        context["timeline"] = case_timeline(case=case, limit=CASE_PAGE_TIMELINE)
        context["next_to_review"] = (
            None if signed_off else _next_to_review(request.user, case, referral, unsettled)
        )
    return render(request, template, context, status=status)


# The case page shows the latest changes; the history page has them all, and every view and download.
CASE_PAGE_TIMELINE = 10


@require_GET
@clinician_page
def case_detail_page(request: HttpRequest, pk: int) -> HttpResponse:
    case = case_page_get(user=request.user, pk=pk)
    if request.GET.get("partial") != "scans":
        access_record(user=request.user, obj=case, action=AccessEvent.Action.VIEW_CASE)
    return _render_case(request, case)


def _prediction_state(prediction: Prediction) -> dict:
    review = prediction_opinions(prediction).review
    return {
        "id": prediction.pk,
        "scan": prediction.scan_id,
        "status": prediction.status,
        "status_display": prediction.get_status_display(),
        "label": prediction.label,
        "label_display": prediction.get_label_display() if prediction.label else "",
        "probability": prediction.probability,
        # The decision threshold of the model that made it (from its card, at registration).
        "threshold": prediction.model_version.threshold if prediction.model_version else None,
        "reason": prediction.reason,
        "model_version": str(prediction.model_version or prediction.requested_model or ""),
        "error": prediction.error,
        "preprocess_ms": prediction.preprocess_ms,
        "inference_ms": prediction.inference_ms,
        "heatmap_url": reverse("diagnosis:prediction-heatmap", args=[prediction.pk])
        if prediction.heatmap
        else "",
        "review": {
            "reviewer": review.reviewer.get_username(),
            "decision": review.get_decision_display(),
            "final_label": review.get_final_label_display(),
            "comment": review.comment,
        }
        if review
        else None,
    }


# A change is stamped before its transaction commits, so a poll can miss one stamped just before it and
# committed just after; each cursor reaches back this far, and the page applies the repeats harmlessly.
STATUS_CURSOR_OVERLAP = timedelta(seconds=5)


def status_cursor() -> str:
    return (timezone.now() - STATUS_CURSOR_OVERLAP).isoformat()


@require_GET
@clinician_page
def case_status(request: HttpRequest, pk: int) -> JsonResponse:
    """What the case page polls: small, and cheap enough to ask for every few seconds. With
    `?since=<cursor>` (the page's, or the last answer's `cursor`), only the predictions that changed since
    then."""
    case = case_get(user=request.user, pk=pk)
    since = request.GET.get("since")
    changed_since = parse_datetime(since) if since else None
    if since and changed_since is None:
        return JsonResponse(
            {"message": "since is not a cursor.", "errors": {"since": ["Give an ISO 8601 time."]}}, status=400
        )
    if changed_since is not None and timezone.is_naive(changed_since):
        changed_since = timezone.make_aware(changed_since, UTC)
    cursor = status_cursor()
    predictions = prediction_list(user=request.user).filter(scan__case=case)
    if changed_since is not None:
        predictions = case_predictions_changed_since(predictions=predictions, since=changed_since)
    # The answer tells no levels: the list's prefetch of them is dropped.
    predictions = (
        predictions.select_related("requested_model")
        .prefetch_related(None)
        .prefetch_related(Prefetch("reviews", queryset=Review.objects.select_related("reviewer")))
        .order_by("-queued_at", "-pk")
    )
    signed_off = case.status == Case.Status.SIGNED_OFF
    data = {
        "case": {
            "id": case.pk,
            "status": case.status,
            "status_display": case.get_status_display(),
            "sign_off_blockers": [] if signed_off else case_sign_off_blockers(case=case),
        },
        "predictions": [_prediction_state(prediction) for prediction in predictions],
        "cursor": cursor,
    }
    return JsonResponse(data)


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _upload_result(outcome: FileOutcome) -> dict:
    if outcome.error:
        return {"name": outcome.name, "ok": False, "error": outcome.error}
    prediction = outcome.prediction
    result = {
        "name": outcome.name,
        "ok": True,
        "created": outcome.created,
        "scan": outcome.scan.pk,
        "prediction": {"id": prediction.pk, "status": prediction.status} if prediction else None,
    }
    if outcome.series is not None:
        result["series"] = {
            "id": outcome.series.pk,
            "description": outcome.series.series_description or outcome.series.series_uid,
        }
    return result


def _upload_message(result: dict) -> str:
    if "series" in result:
        verb = "was added to" if result["created"] else "was already in"
        return f"{result['name']} {verb} the series {result['series']['description']}."
    verb = "uploaded; its prediction is queued" if result["created"] else "was already uploaded"
    return f"{result['name']} {verb}."


@require_POST
@clinician_page
def case_upload(request: HttpRequest, pk: int) -> HttpResponse:
    """All files in one go, so that the instances of a series become one series; one result per file (a
    ZIP's members each count), so the page can show each file's outcome."""
    case = case_get(user=request.user, pk=pk)
    files = request.FILES.getlist("file")
    try:
        outcome = series_upload(user=request.user, case=case, uploaded_files=files)
        results = [_upload_result(file_outcome) for file_outcome in outcome.files]
    except ApplicationError as exc:
        error = " ".join(m for messages_ in exc.errors.values() for m in messages_) or exc.message
        results = [{"name": f.name, "ok": False, "error": error} for f in files] or [
            {"name": "", "ok": False, "error": error}
        ]
    succeeded = [result for result in results if result["ok"]]
    if _wants_json(request):
        status = 201 if any(result.get("created") for result in succeeded) else 200 if succeeded else 400
        return JsonResponse({"results": results}, status=status)
    for result in results:
        if result["ok"]:
            messages.success(request, _upload_message(result))
        else:
            messages.error(request, f"{result['name'] or 'Upload'}: {result['error']}")
    return redirect("diagnosis:case-detail", pk=case.pk)


# Predictions ---------------------------------------------------------------------------------------------


def case_anchor(prediction: Prediction) -> str:
    """The prediction on the case page, on the page of scans that shows it."""
    url = reverse("diagnosis:case-detail", args=[prediction.scan.case_id])
    page = case_page_of(prediction.scan)
    return f"{url}{f'?page={page}' if page > 1 else ''}#prediction-{prediction.pk}"


def _refused_prediction_form(request: HttpRequest, prediction: Prediction, kind: str, form) -> HttpResponse:
    """The case page again, on the prediction's page of scans, with the refused form and its errors."""
    return _render_case(
        request,
        prediction.scan.case,
        bound_forms={(kind, prediction.pk): form},
        status=400,
        page_number=case_page_of(prediction.scan),
    )


@require_POST
@clinician_page
def prediction_review(request: HttpRequest, pk: int) -> HttpResponse:
    prediction = prediction_get(user=request.user, pk=pk)
    form = ReviewForm(request.POST, prefix=f"review-{prediction.pk}", findings=prediction.levels.all())
    if review := form.submit(review_create, user=request.user, prediction=prediction):
        what = "Opinion" if review.kind == Review.Kind.SECOND_OPINION else "Review"
        messages.success(request, f"{what} saved: {review.get_decision_display().lower()}.")
        return redirect(case_anchor(prediction))
    return _refused_prediction_form(request, prediction, "review", form)


@require_POST
@clinician_page
def prediction_rerun(request: HttpRequest, pk: int) -> HttpResponse:
    prediction = prediction_get(user=request.user, pk=pk)
    form = RerunForm(request.POST, prefix=f"rerun-{prediction.pk}")
    if rerun := form.submit(prediction_request, user=request.user, scan=prediction.scan):
        messages.success(request, "A new prediction is queued.")
        return redirect(case_anchor(rerun))
    return _refused_prediction_form(request, prediction, "rerun", form)


@require_POST
@clinician_page
def prediction_not_used(request: HttpRequest, pk: int) -> HttpResponse:
    prediction = prediction_get(user=request.user, pk=pk)
    form = NotUsedForm(request.POST, prefix=f"not-used-{prediction.pk}")
    if form.submit(prediction_mark_not_used, user=request.user, prediction=prediction):
        messages.success(request, "Marked not used: sign-off no longer waits for its review.")
        return redirect(case_anchor(prediction))
    return _refused_prediction_form(request, prediction, "not-used", form)


@require_POST
@clinician_page
def prediction_use_again_page(request: HttpRequest, pk: int) -> HttpResponse:
    prediction = prediction_get(user=request.user, pk=pk)
    try:
        prediction_use_again(user=request.user, prediction=prediction)
    except Conflict as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "The prediction is used again: sign-off waits for its review.")
    return redirect(case_anchor(prediction))


# Sign-off and reports ------------------------------------------------------------------------------------


@require_POST
@clinician_page
def case_sign_off_page(request: HttpRequest, pk: int) -> HttpResponse:
    case = case_get(user=request.user, pk=pk)
    form = SignOffForm(request.POST)
    if report := form.submit(case_sign_off, user=request.user, case=case):
        messages.success(request, f"Case signed off; report version {report.version} is ready.")
        return redirect("diagnosis:case-detail", pk=case.pk)
    return _render_case(request, case, bound_forms={"sign-off": form}, status=400)


@require_POST
@clinician_page
def case_reopen_page(request: HttpRequest, pk: int) -> HttpResponse:
    case = case_get(user=request.user, pk=pk)
    form = ReopenForm(request.POST)
    if form.submit(case_reopen, user=request.user, case=case):
        messages.success(request, "Case reopened; sign it off again to issue the amended report.")
        return redirect("diagnosis:case-detail", pk=case.pk)
    return _render_case(request, case, bound_forms={"reopen": form}, status=400)


@require_GET
@clinician_page
def case_report(request: HttpRequest, pk: int) -> HttpResponse:
    """The latest signed report of the case, or ?version=N."""
    case = case_get(user=request.user, pk=pk)
    version = request.GET.get("version")
    if version is not None and not (version.isdigit() and 0 < len(version) < 10):
        raise Http404("No such report version.")
    report = case_report_get(case=case, version=int(version) if version else None)
    access_record(user=request.user, obj=report, action=AccessEvent.Action.DOWNLOAD_REPORT)
    return report_response(report)


# Models --------------------------------------------------------------------------------------------------


def _read_model_card(artifact_dir: Path) -> ModelCard | None:
    try:
        return ModelCard.read(artifact_dir)
    except ArtifactError:
        return None


IMAGE_METRICS = (
    ("roc_auc", "ROC AUC"),
    ("balanced_accuracy", "Balanced accuracy"),
    ("recall", "Sensitivity"),
    ("specificity", "Specificity"),
    ("precision", "Precision"),
    ("f1", "F1"),
    ("accuracy", "Accuracy"),
    ("n", "Images"),
)


def _validation_tables(metrics: dict) -> dict:
    """The stored validation figures as the page shows them: image rows, one row per level, the rest."""
    metrics = metrics if isinstance(metrics, dict) else {}
    levels = metrics.get("levels") if isinstance(metrics.get("levels"), dict) else {}
    level_rows = [(name, figures) for name, figures in levels.items() if isinstance(figures, dict)]
    if isinstance(metrics.get("grading"), dict):
        level_rows.append(("All levels", metrics["grading"]))
    shown = {key for key, _ in IMAGE_METRICS} | {"levels", "grading", "confusion_matrix"}
    return {
        "image_rows": [(label, _rounded(metrics[key])) for key, label in IMAGE_METRICS if key in metrics],
        "level_rows": level_rows,
        "other_rows": _flat_metrics({k: v for k, v in metrics.items() if k not in shown}),
    }


def _plots(artifact_dir: Path) -> list[tuple[str, str]]:
    return [(name, caption) for name, caption in KNOWN_PLOTS.items() if (artifact_dir / name).is_file()]


@require_GET
@clinician_page
def model_list_page(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    versions = list(ModelVersion.objects.order_by("-is_active", "name"))
    review_counts = model_version_review_counts()
    level_counts = model_level_review_counts()
    for version in versions:
        counts = review_counts.get(version.pk, ReviewCounts())
        version.review_count = counts.reviews
        version.override_count = counts.overrides
        version.override_rate = counts.override_rate
        version.level_reviews = level_counts.get(version.pk, [])
        version.levels_reviewed = sum(count.reviewed for count in version.level_reviews)
        version.levels_changed = sum(count.changed for count in version.level_reviews)
    if pk is None:
        selected = next((version for version in versions if version.is_active), None)
    else:
        selected = next((version for version in versions if version.pk == pk), None)
        if selected is None:
            raise Http404("No such model version.")
    context = {"versions": versions, "selected": selected}
    if selected is not None:
        artifact_dir = artifact_dir_for(selected)
        context.update(
            card=_read_model_card(artifact_dir),
            plots=_plots(artifact_dir),
            **_validation_tables(selected.metrics),
        )
    return render(request, "diagnosis/models.html", context)


def _flat_metrics(metrics, prefix: str = "") -> list[tuple[str, object]]:
    if not isinstance(metrics, dict):
        return [(prefix or "value", metrics)] if metrics not in (None, "") else []
    rows: list[tuple[str, object]] = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(_flat_metrics(value, prefix=f"{name} · "))
        elif isinstance(value, list):
            shown = [round(v, 3) if isinstance(v, float) else v for v in value]
            rows.append((name, json.dumps(shown) if len(value) <= 8 else f"{len(value)} values"))
        else:
            rows.append((name, _rounded(value)))
    return rows


def _rounded(value):
    return round(value, 3) if isinstance(value, float) else value


@require_GET
@clinician_page
def model_plot(request: HttpRequest, pk: int, name: str) -> HttpResponse:
    version = ModelVersion.objects.filter(pk=pk).first()
    if version is None or name not in KNOWN_PLOTS:
        raise Http404("No such plot.")
    path = artifact_dir_for(version) / name
    if not path.is_file():
        raise Http404("No such plot.")
    response = FileResponse(path.open("rb"), content_type="image/png", filename=name)
    response["X-Content-Type-Options"] = "nosniff"
    return response
