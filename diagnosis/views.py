"""Clinician pages: validate with a form, call a selector or a service, render. Scan files, heatmaps and
model plots leave only through the permission-checked views here; MEDIA_ROOT has no URL."""

from __future__ import annotations

import io
import json
from functools import wraps
from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, Prefetch, Q
from django.db.models.fields.files import FieldFile
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from PIL import Image

from diagnosis.errors import ApplicationError, Conflict, NotFound, PermissionDenied
from diagnosis.forms import (
    CaseCreateForm,
    NotUsedForm,
    PatientForm,
    ReopenForm,
    RerunForm,
    ReviewForm,
    SignOffForm,
)
from diagnosis.imaging import ImageRejected, load_model_view
from diagnosis.models import Case, CaseReport, Prediction, Review, Scan
from diagnosis.selectors import (
    case_get,
    case_list,
    case_report_get,
    case_report_list,
    case_sign_off_blockers,
    patient_get,
    patient_list,
    prediction_get,
    prediction_list,
    scan_get,
    scan_list,
)
from diagnosis.services.cases import case_create, case_update
from diagnosis.services.patients import patient_create, patient_update
from diagnosis.services.predictions import prediction_request
from diagnosis.services.reviews import review_create
from diagnosis.services.scans import scan_upload
from diagnosis.services.signoff import (
    case_reopen,
    case_sign_off,
    prediction_mark_not_used,
    prediction_use_again,
)
from ml.models import ModelVersion
from ml.registry import artifact_dir_for

SCAN_CONTENT_TYPES = {
    Scan.Format.PNG: "image/png",
    Scan.Format.JPEG: "image/jpeg",
    Scan.Format.DICOM: "application/dicom",
}
# The plots ml.training writes into an artifact folder; no other name is ever read from disk.
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


def scan_file_response(scan: Scan) -> FileResponse:
    is_dicom = scan.format == Scan.Format.DICOM
    # The uploaded name with the stored file's extension: a JPEG upload is stored as a PNG.
    filename = f"{Path(scan.original_name).stem or 'scan'}{Path(scan.file.name).suffix}"
    return _file_response(scan.file, SCAN_CONTENT_TYPES[scan.format], filename, as_attachment=is_dicom)


def heatmap_response(prediction: Prediction) -> FileResponse:
    if not prediction.heatmap:
        raise Http404("This prediction has no heatmap yet.")
    return _file_response(prediction.heatmap, "image/png", f"prediction-{prediction.pk}-heatmap.png")


def report_response(report: CaseReport) -> FileResponse:
    filename = f"case-{report.case_id}-report-v{report.version}.pdf"
    return _file_response(report.file, "application/pdf", filename, as_attachment=True)


@require_GET
@clinician_page
def scan_file(request: HttpRequest, pk: int) -> HttpResponse:
    return scan_file_response(scan_get(user=request.user, pk=pk))


@require_GET
@clinician_page
def scan_preview(request: HttpRequest, pk: int) -> HttpResponse:
    """Browsers cannot show DICOM, so its view is rendered as PNG; other formats are served as stored."""
    scan = scan_get(user=request.user, pk=pk)
    if scan.format != Scan.Format.DICOM:
        return scan_file_response(scan)
    try:
        with scan.file.open("rb") as handle:
            view = load_model_view(handle.read())
    except (FileNotFoundError, ImageRejected):
        raise Http404("The scan cannot be shown.") from None
    buffer = io.BytesIO()
    Image.fromarray(view).save(buffer, format="PNG")
    return HttpResponse(buffer.getvalue(), content_type="image/png")


@require_GET
@clinician_page
def prediction_heatmap(request: HttpRequest, pk: int) -> HttpResponse:
    return heatmap_response(prediction_get(user=request.user, pk=pk))


# Worklist ------------------------------------------------------------------------------------------------


@require_GET
@clinician_page
def worklist(request: HttpRequest) -> HttpResponse:
    open_cases = case_list(user=request.user).exclude(status=Case.Status.SIGNED_OFF)
    predictions = prediction_list(user=request.user).exclude(scan__case__status=Case.Status.SIGNED_OFF)
    waiting = predictions.filter(
        status=Prediction.Status.DONE, review__isnull=True, exclusion__isnull=True
    ).order_by("finished_at")
    failures = predictions.filter(status=Prediction.Status.FAILED).order_by("-finished_at")
    counts = {
        "open_cases": open_cases.count(),
        "awaiting_review": waiting.count(),
        "in_progress": predictions.filter(
            status__in=[Prediction.Status.QUEUED, Prediction.Status.RUNNING]
        ).count(),
        "failed": failures.count(),
    }
    context = {"cases": open_cases[:50], "waiting": waiting[:50], "failures": failures[:20], "counts": counts}
    return render(request, "diagnosis/worklist.html", context)


# Patients ------------------------------------------------------------------------------------------------


@require_GET
@clinician_page
def patient_list_page(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:100]
    patients = (
        patient_list(user=request.user, search=query)
        .annotate(case_count=Count("cases", distinct=True))
        .order_by("identifier")
    )
    page = Paginator(patients, 25).get_page(request.GET.get("page"))
    return render(request, "diagnosis/patient_list.html", {"page": page, "query": query})


@clinician_page
def patient_create_page(request: HttpRequest) -> HttpResponse:
    form = PatientForm(request.POST or None)
    if request.method == "POST" and (patient := form.submit(patient_create, user=request.user)):
        messages.success(request, f"Patient {patient.identifier} registered.")
        return redirect("diagnosis:patient-detail", pk=patient.pk)
    return _render_form(request, form, title="New patient", submit="Register patient")


@clinician_page
def patient_edit_page(request: HttpRequest, pk: int) -> HttpResponse:
    patient = patient_get(user=request.user, pk=pk)
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
    cases = case_list(user=request.user).filter(patient=patient).annotate(scan_count=Count("scans"))
    context = {"patient": patient, "cases": cases, "form": CaseCreateForm()}
    return render(request, "diagnosis/patient_detail.html", context)


def _render_form(request, form, *, title: str, submit: str, back: str = "", status: int | None = None):
    context = {"form": form, "title": title, "submit": submit, "back": back}
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
    initial = {"clinical_question": case.clinical_question, "notes": case.notes}
    form = CaseCreateForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.submit(case_update, user=request.user, case=case):
        messages.success(request, "Case saved.")
        return redirect("diagnosis:case-detail", pk=case.pk)
    back = reverse("diagnosis:case-detail", args=[case.pk])
    return _render_form(request, form, title=f"Edit case {case.pk}", submit="Save", back=back)


def _case_scans(user, case: Case):
    predictions = Prediction.objects.select_related(
        "model_version", "requested_model", "review__reviewer", "exclusion__excluded_by"
    )
    return (
        scan_list(user=user)
        .filter(case=case)
        .prefetch_related(Prefetch("predictions", queryset=predictions.order_by("-queued_at")))
    )


def _render_case(request: HttpRequest, case: Case, *, bound_forms: dict | None = None, status: int = 200):
    bound_forms = bound_forms or {}
    scans = list(_case_scans(request.user, case))
    for scan in scans:
        for index, prediction in enumerate(scan.predictions.all()):
            prediction.is_current = index == 0  # the latest run of the scan; earlier ones are superseded
            prediction.review_form = bound_forms.get(("review", prediction.pk)) or ReviewForm(
                prefix=f"review-{prediction.pk}"
            )
            prediction.rerun_form = bound_forms.get(("rerun", prediction.pk)) or RerunForm(
                prefix=f"rerun-{prediction.pk}"
            )
            prediction.not_used_form = bound_forms.get(("not-used", prediction.pk)) or NotUsedForm(
                prefix=f"not-used-{prediction.pk}"
            )
    template = (
        "diagnosis/_scans.html" if request.GET.get("partial") == "scans" else "diagnosis/case_detail.html"
    )
    signed_off = case.status == Case.Status.SIGNED_OFF
    if signed_off:
        # The forms of a signed-off case are not on its page, so their refusals are told here.
        for key, form in bound_forms.items():
            if key != "reopen":
                for error in form.non_field_errors():
                    messages.error(request, error)
    context = {
        "case": case,
        "scans": scans,
        "signed_off": signed_off,
        "reports": list(case_report_list(case=case)),
        "blockers": [] if signed_off else case_sign_off_blockers(case=case),
        "sign_off_form": bound_forms.get("sign-off") or SignOffForm(),
        "reopen_form": bound_forms.get("reopen") or ReopenForm(),
        "max_upload_mb": settings.LUMBAR_MAX_UPLOAD_BYTES // (1024 * 1024),
    }
    return render(request, template, context, status=status)


@require_GET
@clinician_page
def case_detail_page(request: HttpRequest, pk: int) -> HttpResponse:
    return _render_case(request, case_get(user=request.user, pk=pk))


def _prediction_state(prediction: Prediction) -> dict:
    review = getattr(prediction, "review", None)
    return {
        "id": prediction.pk,
        "scan": prediction.scan_id,
        "status": prediction.status,
        "status_display": prediction.get_status_display(),
        "label": prediction.label,
        "label_display": prediction.get_label_display() if prediction.label else "",
        "probability": prediction.probability,
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


@require_GET
@clinician_page
def case_status(request: HttpRequest, pk: int) -> JsonResponse:
    """What the case page polls: small, and cheap enough to ask for every few seconds."""
    case = case_get(user=request.user, pk=pk)
    predictions = (
        prediction_list(user=request.user)
        .filter(scan__case=case)
        .select_related("requested_model", "review__reviewer")
        .order_by("-queued_at")
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
    }
    return JsonResponse(data)


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


@require_POST
@clinician_page
def case_upload(request: HttpRequest, pk: int) -> HttpResponse:
    """One result per file, so the page can show each file's outcome next to it."""
    case = case_get(user=request.user, pk=pk)
    files = request.FILES.getlist("file")
    results = []
    for uploaded_file in files:
        try:
            outcome = scan_upload(user=request.user, case=case, uploaded_file=uploaded_file)
        except ApplicationError as exc:
            errors = [message for messages_ in exc.errors.values() for message in messages_]
            results.append(
                {"name": uploaded_file.name, "ok": False, "error": " ".join(errors) or exc.message}
            )
            continue
        prediction = outcome.prediction
        results.append(
            {
                "name": uploaded_file.name,
                "ok": True,
                "created": outcome.created,
                "scan": outcome.scan.pk,
                "prediction": {"id": prediction.pk, "status": prediction.status} if prediction else None,
            }
        )
    if not files:
        results.append({"name": "", "ok": False, "error": "Choose at least one file to upload."})
    succeeded = [result for result in results if result["ok"]]
    if _wants_json(request):
        status = 201 if any(result.get("created") for result in succeeded) else 200 if succeeded else 400
        return JsonResponse({"results": results}, status=status)
    for result in results:
        if result["ok"]:
            verb = "uploaded; its prediction is queued" if result["created"] else "was already uploaded"
            messages.success(request, f"{result['name']} {verb}.")
        else:
            messages.error(request, f"{result['name'] or 'Upload'}: {result['error']}")
    return redirect("diagnosis:case-detail", pk=case.pk)


# Predictions ---------------------------------------------------------------------------------------------


def _case_anchor(prediction: Prediction) -> str:
    return f"{reverse('diagnosis:case-detail', args=[prediction.scan.case_id])}#prediction-{prediction.pk}"


@require_POST
@clinician_page
def prediction_review(request: HttpRequest, pk: int) -> HttpResponse:
    prediction = prediction_get(user=request.user, pk=pk)
    form = ReviewForm(request.POST, prefix=f"review-{prediction.pk}")
    if review := form.submit(review_create, user=request.user, prediction=prediction):
        messages.success(request, f"Review saved: {review.get_decision_display().lower()}.")
        return redirect(_case_anchor(prediction))
    return _render_case(
        request, prediction.scan.case, bound_forms={("review", prediction.pk): form}, status=400
    )


@require_POST
@clinician_page
def prediction_rerun(request: HttpRequest, pk: int) -> HttpResponse:
    prediction = prediction_get(user=request.user, pk=pk)
    form = RerunForm(request.POST, prefix=f"rerun-{prediction.pk}")
    if rerun := form.submit(prediction_request, user=request.user, scan=prediction.scan):
        messages.success(request, "A new prediction is queued.")
        return redirect(_case_anchor(rerun))
    return _render_case(
        request, prediction.scan.case, bound_forms={("rerun", prediction.pk): form}, status=400
    )


@require_POST
@clinician_page
def prediction_not_used(request: HttpRequest, pk: int) -> HttpResponse:
    prediction = prediction_get(user=request.user, pk=pk)
    form = NotUsedForm(request.POST, prefix=f"not-used-{prediction.pk}")
    if form.submit(prediction_mark_not_used, user=request.user, prediction=prediction):
        messages.success(request, "Marked not used: sign-off no longer waits for its review.")
        return redirect(_case_anchor(prediction))
    return _render_case(
        request, prediction.scan.case, bound_forms={("not-used", prediction.pk): form}, status=400
    )


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
    return redirect(_case_anchor(prediction))


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
    return report_response(case_report_get(case=case, version=int(version) if version else None))


# Models --------------------------------------------------------------------------------------------------


def _read_model_card(artifact_dir: Path) -> list[tuple[str, str]] | None:
    """The card's fields for display; nested values are shown as compact JSON."""
    try:
        card = json.loads((artifact_dir / "model_card.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(card, dict):
        return None
    return [
        (key, json.dumps(value) if isinstance(value, dict | list) else str(value))
        for key, value in card.items()
    ]


def _plots(artifact_dir: Path) -> list[tuple[str, str]]:
    return [(name, caption) for name, caption in KNOWN_PLOTS.items() if (artifact_dir / name).is_file()]


@require_GET
@clinician_page
def model_list_page(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    versions = list(ModelVersion.objects.order_by("-is_active", "name"))
    stats = {
        row["prediction__model_version"]: row
        for row in Review.objects.values("prediction__model_version").annotate(
            reviews=Count("id"), overrides=Count("id", filter=Q(decision=Review.Decision.OVERRIDE))
        )
    }
    for version in versions:
        row = stats.get(version.pk, {"reviews": 0, "overrides": 0})
        version.review_count = row["reviews"]
        version.override_count = row["overrides"]
        version.override_rate = row["overrides"] / row["reviews"] if row["reviews"] else None
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
            metrics=_flat_metrics(selected.metrics),
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
            rows.append((name, json.dumps(value) if len(value) <= 8 else f"{len(value)} values"))
        else:
            rows.append((name, value))
    return rows


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
