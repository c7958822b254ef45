from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

CLINICIANS_GROUP = "clinicians"


class Patient(models.Model):
    class Sex(models.TextChoices):
        FEMALE = "F", "Female"
        MALE = "M", "Male"
        OTHER = "O", "Other"
        UNKNOWN = "U", "Unknown"

    identifier = models.CharField(max_length=64, unique=True, help_text="Hospital or study identifier.")
    name = models.CharField(max_length=200, blank=True)
    birth_date = models.DateField(null=True, blank=True)
    sex = models.CharField(max_length=1, choices=Sex.choices, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="patients_created"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["identifier"]
        constraints = [
            models.CheckConstraint(condition=~Q(identifier=""), name="patient_identifier_not_empty"),
        ]
        indexes = [models.Index(fields=["created_by", "created_at"])]

    def __str__(self) -> str:
        return self.identifier


class Case(models.Model):
    class Status(models.TextChoices):
        """Open and awaiting review follow the predictions (services.cases.case_refresh_status); only a
        sign-off makes a case signed off, and only a reopen makes it open again."""

        OPEN = "open", "Open"
        AWAITING_REVIEW = "awaiting_review", "Awaiting review"
        SIGNED_OFF = "signed_off", "Signed off"

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="cases")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="cases")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    clinical_question = models.TextField(blank=True)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["open", "awaiting_review", "signed_off"]), name="case_status_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["owner", "status"]),
            models.Index(fields=["created_at"]),
        ]

    def __str__(self) -> str:
        return f"Case {self.pk} ({self.patient.identifier})"


def scan_upload_to(scan: Scan, filename: str) -> str:
    return f"scans/{scan.case_id}/{filename}"


class Scan(models.Model):
    class Format(models.TextChoices):
        PNG = "png", "PNG"
        JPEG = "jpeg", "JPEG"
        DICOM = "dicom", "DICOM"

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="scans")
    file = models.FileField(upload_to=scan_upload_to, max_length=255)
    original_name = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64)
    format = models.CharField(max_length=5, choices=Format.choices)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="scans_uploaded"
    )
    uploaded_at = models.DateTimeField(auto_now_add=True)
    study_uid = models.CharField(max_length=64, blank=True)
    series_uid = models.CharField(max_length=64, blank=True)
    instance_uid = models.CharField(max_length=64, blank=True)
    modality = models.CharField(max_length=16, blank=True)
    series_description = models.CharField(max_length=255, blank=True)
    pixel_spacing = models.JSONField(null=True, blank=True, help_text="Row and column spacing in mm.")
    note = models.CharField(
        max_length=255, blank=True, help_text="How the image was read, e.g. the frame used."
    )

    class Meta:
        ordering = ["-uploaded_at"]
        constraints = [
            models.UniqueConstraint(fields=["case", "sha256"], name="scan_unique_bytes_per_case"),
            models.CheckConstraint(
                condition=Q(width__gt=0) & Q(height__gt=0), name="scan_dimensions_positive"
            ),
            models.CheckConstraint(
                condition=Q(format__in=["png", "jpeg", "dicom"]), name="scan_format_valid"
            ),
        ]
        indexes = [models.Index(fields=["sha256"]), models.Index(fields=["uploaded_at"])]

    def __str__(self) -> str:
        return f"{self.original_name} ({self.format})"


class Prediction(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    class Label(models.TextChoices):
        NORMAL = "normal", "Normal"
        DDD = "ddd", "Degenerative disc disease"
        NOT_ASSESSABLE = "not_assessable", "Not assessable"

    scan = models.ForeignKey(Scan, on_delete=models.CASCADE, related_name="predictions")
    model_version = models.ForeignKey(
        "ml.ModelVersion", on_delete=models.PROTECT, null=True, blank=True, related_name="predictions"
    )
    requested_model = models.ForeignKey(
        "ml.ModelVersion",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The model asked for; empty means the active model at run time.",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    label = models.CharField(max_length=14, choices=Label.choices, blank=True)
    probability = models.FloatField(
        null=True, blank=True, help_text="Calibrated probability of DDD; empty when not assessable."
    )
    reason = models.TextField(blank=True, help_text="Why the scan is not assessable.")
    error = models.TextField(blank=True)
    input_sha256 = models.CharField(max_length=64, blank=True)
    preprocess_ms = models.FloatField(null=True, blank=True)
    inference_ms = models.FloatField(null=True, blank=True)
    heatmap = models.FileField(upload_to="heatmaps/", max_length=255, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    queued_at = models.DateTimeField(auto_now_add=True)
    dispatched_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the broker accepted its task message; empty while the dispatcher still owes one.",
    )
    claimed_by = models.CharField(
        max_length=255, blank=True, help_text="The Celery node whose pool process runs it."
    )
    claimed_pid = models.PositiveIntegerField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-queued_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "done", "failed"]),
                name="prediction_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(probability__isnull=True) | Q(probability__gte=0.0, probability__lte=1.0),
                name="prediction_probability_range",
            ),
            models.CheckConstraint(
                condition=~Q(status="done")
                | (Q(probability__isnull=False) & Q(label__in=["normal", "ddd"]))
                | (Q(label="not_assessable") & ~Q(reason="")),
                name="prediction_done_has_result",
            ),
            models.CheckConstraint(
                condition=~Q(status="failed") | ~Q(error=""), name="prediction_failed_has_error"
            ),
        ]
        indexes = [models.Index(fields=["status", "queued_at"])]

    def __str__(self) -> str:
        return f"Prediction {self.pk} ({self.status})"


class PredictionLevel(models.Model):
    """The finding at one disc level of a finished prediction: where the disc is and its Pfirrmann grade."""

    class Level(models.TextChoices):
        L3_L4 = "L3-L4", "L3-L4"
        L4_L5 = "L4-L5", "L4-L5"
        L5_S1 = "L5-S1", "L5-S1"

    prediction = models.ForeignKey(Prediction, on_delete=models.CASCADE, related_name="levels")
    level = models.CharField(max_length=5, choices=Level.choices)
    box = models.JSONField(help_text="[x0, y0, x1, y1] in image pixels.")
    grade = models.PositiveSmallIntegerField(help_text="Pfirrmann grade 1-5.")
    grade_probabilities = models.JSONField(help_text="Probability of each grade, 1 to 5.")
    degenerated_probability = models.FloatField(help_text="Probability of grade 3 or more.")

    class Meta:
        ordering = ["prediction", "level"]
        constraints = [
            models.UniqueConstraint(fields=["prediction", "level"], name="prediction_level_unique"),
            models.CheckConstraint(condition=Q(grade__gte=1, grade__lte=5), name="prediction_level_grade"),
            models.CheckConstraint(
                condition=Q(degenerated_probability__gte=0.0, degenerated_probability__lte=1.0),
                name="prediction_level_probability_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.level}: grade {self.grade}"


class Review(models.Model):
    class Decision(models.TextChoices):
        AGREE = "agree", "Agree"
        OVERRIDE = "override", "Override"

    prediction = models.OneToOneField(Prediction, on_delete=models.CASCADE, related_name="review")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reviews")
    decision = models.CharField(max_length=10, choices=Decision.choices)
    final_label = models.CharField(max_length=14, choices=Prediction.Label.choices)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(decision__in=["agree", "override"]), name="review_decision_valid"
            ),
            models.CheckConstraint(
                condition=Q(final_label__in=["normal", "ddd", "not_assessable"]),
                name="review_label_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"Review of prediction {self.prediction_id}: {self.decision}"


class PredictionExclusion(models.Model):
    """A prediction the clinician leaves out of the case's sign-off (a failed run, a scan that cannot be
    read), with the reason, so that sign-off does not wait for its review."""

    prediction = models.OneToOneField(Prediction, on_delete=models.CASCADE, related_name="exclusion")
    reason = models.TextField()
    excluded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="predictions_excluded"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~Q(reason=""), name="prediction_exclusion_has_reason"),
        ]

    def __str__(self) -> str:
        return f"Prediction {self.prediction_id} not used"


def report_upload_to(report: CaseReport, filename: str) -> str:
    return f"reports/{report.case_id}/{filename}"


class CaseReport(models.Model):
    """One signed version of a case's report. Reopening a signed-off case records who reopened this
    version, when and why; the next sign-off adds the next version, which amends it."""

    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="reports")
    version = models.PositiveIntegerField()
    file = models.FileField(upload_to=report_upload_to, max_length=255)
    conclusion = models.TextField()
    signed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="case_reports_signed"
    )
    signed_at = models.DateTimeField()
    reopened_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="case_reports_reopened",
    )
    reopened_at = models.DateTimeField(null=True, blank=True)
    reopen_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["case", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["case", "version"], name="case_report_unique_version"),
            models.CheckConstraint(condition=Q(version__gte=1), name="case_report_version_positive"),
            models.CheckConstraint(condition=~Q(conclusion=""), name="case_report_has_conclusion"),
            models.CheckConstraint(
                condition=Q(reopened_at__isnull=True, reopened_by__isnull=True, reopen_reason="")
                | (Q(reopened_at__isnull=False, reopened_by__isnull=False) & ~Q(reopen_reason="")),
                name="case_report_reopen_complete",
            ),
        ]

    def __str__(self) -> str:
        return f"Case {self.case_id} report v{self.version}"
