"""The signed case report: what the case holds at sign-off, rendered to PDF with WeasyPrint. Every image
is embedded as a data: URI and nothing else may be fetched, so rendering never touches the network."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.contrib.staticfiles import finders
from django.db.models import Prefetch
from django.template.loader import render_to_string
from PIL import Image, ImageFile
from weasyprint import CSS, HTML
from weasyprint.urls import URLFetcher

from diagnosis.imaging import ImageRejected, load_model_view
from diagnosis.models import CaseReport, Prediction, PredictionLevel, Scan
from diagnosis.selectors import case_current_predictions, prediction_opinions

# Importing WeasyPrint turns on Pillow's process-wide LOAD_TRUNCATED_IMAGES, which would let a truncated
# upload decode "successfully" (diagnosis.imaging refuses to validate with it on). It is turned off again
# here, at import, before any request: the report only embeds complete images this module encoded itself.
ImageFile.LOAD_TRUNCATED_IMAGES = False

# Beside the other stylesheets, as the templates keep no inline style; WeasyPrint reads it from disk.
STYLESHEET = "css/report.css"
# Large enough to read on paper (two images side by side on A4), small enough to keep the PDF light.
REPORT_IMAGE_PIXELS = 640
DISCLAIMER = (
    "The model results in this report are decision support for research and evaluation, not a diagnosis. "
    "The conclusion is the signing clinician's; see each model's card for what it was trained on, how well "
    "it did on held-out patients and its limits."
)


@dataclass(frozen=True)
class ReportLevel:
    level: str
    grade: int
    grade_probability: float | None
    degenerated_probability: float
    clinician_grade: int | None  # the grade in the case's current review; None when not reviewed

    @property
    def corrected(self) -> bool:
        return self.clinician_grade is not None and self.clinician_grade != self.grade


@dataclass(frozen=True)
class ReportScan:
    scan: Scan
    prediction: Prediction | None
    levels: list[ReportLevel]
    image: str | None
    heatmap: str | None


def _levels(prediction: Prediction | None) -> list[ReportLevel]:
    if prediction is None:
        return []
    review = prediction_opinions(prediction).review
    reviewed = {given.finding_id: given.grade for given in review.levels.all()} if review else {}
    rows = []
    for level in prediction.levels.all():
        probabilities = level.grade_probabilities
        in_range = isinstance(probabilities, list) and len(probabilities) >= level.grade
        rows.append(
            ReportLevel(
                level=level.level,
                grade=level.grade,
                grade_probability=probabilities[level.grade - 1] if in_range else None,
                degenerated_probability=level.degenerated_probability,
                clinician_grade=reviewed.get(level.pk),
            )
        )
    return rows


def _data_uri(image: Image.Image) -> str:
    """JPEG: WeasyPrint embeds it as it is, where a PNG would be decoded and compressed again (most of
    the time a sign-off took); at this quality the print is indistinguishable."""
    image.thumbnail((REPORT_IMAGE_PIXELS, REPORT_IMAGE_PIXELS))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _scan_image(scan: Scan) -> str | None:
    """The scan as the classifier and the case page show it (DICOM windowed); None when unreadable."""
    try:
        with scan.file.open("rb") as handle:
            view = load_model_view(handle.read())
    except (FileNotFoundError, ImageRejected):
        return None
    if view.dtype != np.uint8:  # a 16-bit PNG: stretched to 8 bits for print
        view = (view.astype(np.float64) * (255.0 / max(float(view.max()), 1.0))).astype(np.uint8)
    return _data_uri(Image.fromarray(view))


def _heatmap_image(prediction: Prediction | None) -> str | None:
    if prediction is None or not prediction.heatmap:
        return None
    try:
        with prediction.heatmap.open("rb") as handle:
            return _data_uri(Image.open(handle).convert("RGB"))
    except (FileNotFoundError, OSError):
        return None


def _report_scans(report: CaseReport) -> list[ReportScan]:
    current = {
        prediction.scan_id: prediction
        for prediction in case_current_predictions(case=report.case)
        .select_related("model_version", "exclusion__excluded_by")
        .prefetch_related(
            "reviews__reviewer",
            "reviews__levels__finding",
            Prefetch("levels", queryset=PredictionLevel.objects.order_by("level")),
        )
    }
    for prediction in current.values():
        prediction.review = prediction_opinions(prediction).review  # the case's current review
    scans = report.case.scans.order_by("uploaded_at", "pk")
    return [
        ReportScan(
            scan=scan,
            prediction=current.get(scan.pk),
            levels=_levels(current.get(scan.pk)),
            image=_scan_image(scan),
            heatmap=_heatmap_image(current.get(scan.pk)),
        )
        for scan in scans
    ]


def report_html(*, report: CaseReport, amends: CaseReport | None) -> str:
    """The report as HTML, from the case as it stands now; `amends` is the version this one replaces."""
    scans = _report_scans(report)
    predictions = [item.prediction for item in scans if item.prediction]
    models = sorted(
        {prediction.model_version for prediction in predictions if prediction.model_version},
        key=lambda model: model.name,
    )
    context = {
        "report": report,
        "case": report.case,
        "patient": report.case.patient,
        "amends": amends,
        "scans": scans,
        "models": models,
        "disclaimer": DISCLAIMER,
    }
    return render_to_string("diagnosis/report.html", context)


def report_render(*, report: CaseReport, amends: CaseReport | None) -> bytes:
    """The report as PDF, with a text layer."""
    offline = URLFetcher(allowed_protocols={"data"}, fail_on_errors=True)
    stylesheet = CSS(string=Path(finders.find(STYLESHEET)).read_text(), url_fetcher=offline)
    html = HTML(string=report_html(report=report, amends=amends), url_fetcher=offline)
    return html.write_pdf(stylesheets=[stylesheet])
