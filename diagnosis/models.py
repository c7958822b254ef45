from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.db.models.functions import Lower, Trim
from django.utils import timezone
from simple_history.models import HistoricalRecords

CLINICIANS_GROUP = "clinicians"


class Patient(models.Model):
    class Sex(models.TextChoices):
        FEMALE = "F", "Female"
        MALE = "M", "Male"
        OTHER = "O", "Other"
        UNKNOWN = "U", "Unknown"

    identifier = models.CharField(
        max_length=64,
        help_text="Hospital or study identifier; unique whatever its case.",
    )
    name = models.CharField(max_length=200, blank=True)
    birth_date = models.DateField(null=True, blank=True)
    sex = models.CharField(max_length=1, choices=Sex.choices, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="patients_created"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["identifier"]
        constraints = [
            models.CheckConstraint(condition=~Q(identifier=""), name="patient_identifier_not_empty"),
            models.CheckConstraint(
                condition=Q(identifier=Trim("identifier")), name="patient_identifier_trimmed"
            ),
            models.UniqueConstraint(
                Lower("identifier"),
                name="patient_identifier_unique_ci",
                violation_error_message="A patient with this identifier already exists.",
            ),
        ]
        # The patient lists sort by identifier; the unique constraint indexes Lower(identifier) instead.
        indexes = [models.Index(fields=["created_by", "created_at"]), models.Index(fields=["identifier"])]

    def __str__(self) -> str:
        return self.identifier

    @staticmethod
    def normalise_identifier(identifier: str) -> str:
        """The one rule for identifiers: surrounding spaces go; case is kept but never tells two apart."""
        return (identifier or "").strip()


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
    # The case's current predictions by where they stand, kept with the status by
    # services.cases.case_refresh_status: the worklist sums them over a clinician's open cases, where
    # counting the predictions themselves joined every prediction, scan and case of the clinician (150 ms
    # of a 320 ms worklist at 50,000 predictions). Not history: they follow the predictions' own.
    predictions_awaiting_review = models.PositiveIntegerField(default=0, editable=False)
    predictions_in_progress = models.PositiveIntegerField(default=0, editable=False)
    predictions_failed = models.PositiveIntegerField(default=0, editable=False)
    history = HistoricalRecords(
        excluded_fields=["predictions_awaiting_review", "predictions_in_progress", "predictions_failed"]
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["open", "awaiting_review", "signed_off"]), name="case_status_valid"
            ),
        ]
        # A clinician's own cases newest first (the worklist); every case by creation or last change (the
        # API's orderings, the admin).
        indexes = [
            models.Index(fields=["owner", "status"]),
            models.Index(fields=["owner", "created_at"]),
            models.Index(fields=["created_at"]),
            models.Index(fields=["updated_at"]),
        ]

    def __str__(self) -> str:
        return f"Case {self.pk} ({self.patient.identifier})"


class Series(models.Model):
    """The DICOM instances of one series in a case, uploaded together, in a ZIP or received over the
    network: ordered by position, with the slice the prediction runs on."""

    class Plane(models.TextChoices):
        SAGITTAL = "sagittal", "Sagittal"
        CORONAL = "coronal", "Coronal"
        AXIAL = "axial", "Axial"
        UNKNOWN = "unknown", "Unknown"

    class PatientCheck(models.TextChoices):
        MATCH = "match", "Matches the case's patient"
        MISMATCH = "mismatch", "Does not match the case's patient"
        ABSENT = "absent", "Not in the file or not on record"

    class Source(models.TextChoices):
        UPLOAD = "upload", "Upload"
        NETWORK = "network", "DICOM network (C-STORE)"

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="series")
    study_uid = models.CharField(max_length=64)
    series_uid = models.CharField(max_length=64)
    modality = models.CharField(max_length=16, blank=True)
    series_description = models.CharField(max_length=255, blank=True)
    study_date = models.DateField(null=True, blank=True)
    body_part = models.CharField(max_length=64, blank=True)
    plane = models.CharField(max_length=10, choices=Plane.choices, default=Plane.UNKNOWN)
    ordered_by_geometry = models.BooleanField(
        default=False, help_text="Slices ordered by ImagePositionPatient; otherwise by InstanceNumber."
    )
    chosen_scan = models.ForeignKey(
        "Scan",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The slice the prediction runs on.",
    )
    chosen_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The clinician who picked the slice; empty when the platform chose the mid-sagittal one.",
    )
    not_assessable_reason = models.TextField(blank=True)
    # The result of comparing the file's PatientID and PatientName with the case's patient, taken before
    # de-identification blanks them; the identifiers themselves are not kept.
    patient_id_check = models.CharField(max_length=8, choices=PatientCheck.choices)
    patient_name_check = models.CharField(max_length=8, choices=PatientCheck.choices)
    source = models.CharField(max_length=7, choices=Source.choices, default=Source.UPLOAD)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "series"
        constraints = [
            models.UniqueConstraint(fields=["case", "series_uid"], name="series_unique_per_case"),
            models.CheckConstraint(condition=~Q(series_uid=""), name="series_uid_not_empty"),
        ]

    def __str__(self) -> str:
        return f"Series {self.pk} ({self.series_description or self.series_uid})"

    @property
    def assessable(self) -> bool:
        return not self.not_assessable_reason

    @property
    def patient_mismatch(self) -> bool:
        return self.PatientCheck.MISMATCH in (self.patient_id_check, self.patient_name_check)


class IncomingSeries(models.Model):
    """A series received over the network that no case took: its PatientID names no registered patient, or
    the patient has no open case and no receiving account is configured to open one. Its files wait as
    received, with the patient's identifiers shown so that staff or a clinician can attach it to the right
    case; attaching de-identifies and stores them like an upload and deletes this record and its files."""

    study_uid = models.CharField(max_length=64)
    series_uid = models.CharField(max_length=64, unique=True)
    patient_id = models.CharField(max_length=64, blank=True)
    patient_name = models.CharField(max_length=200, blank=True)
    modality = models.CharField(max_length=16, blank=True)
    series_description = models.CharField(max_length=255, blank=True)
    study_date = models.DateField(null=True, blank=True)
    instance_count = models.PositiveIntegerField(default=0)
    folder = models.CharField(max_length=255, help_text="Under MEDIA_ROOT: the files as received.")
    calling_ae_title = models.CharField(max_length=16, blank=True)
    received_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-received_at"]
        verbose_name_plural = "incoming series"

    def __str__(self) -> str:
        return f"Incoming series {self.series_description or self.series_uid} ({self.patient_id or '?'})"


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
    history = HistoricalRecords()
    series = models.ForeignKey(Series, on_delete=models.CASCADE, null=True, blank=True, related_name="slices")
    instance_number = models.IntegerField(null=True, blank=True)
    image_position = models.JSONField(null=True, blank=True, help_text="ImagePositionPatient, mm.")
    image_orientation = models.JSONField(null=True, blank=True, help_text="ImageOrientationPatient.")
    slice_index = models.PositiveIntegerField(null=True, blank=True, help_text="0-based, first to last.")
    slice_position = models.FloatField(
        null=True, blank=True, help_text="Offset along the slice normal in mm, from ImagePositionPatient."
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
    superseded_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When a newer prediction of the same scan, or of the slice chosen instead in its series, "
        "replaced it; empty while it is the scan's current one.",
    )
    history = HistoricalRecords()

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
        # The lists' default order (-queued_at, then -pk in the admin and the API's orderings) read from an
        # index instead of sorting every prediction; finished_at orders the worklist's waiting and failures.
        indexes = [
            models.Index(fields=["status", "queued_at"]),
            models.Index(fields=["queued_at", "id"]),
            models.Index(fields=["finished_at"]),
            # The API's other orderings, each with the id that breaks ties (diagnosis.api.filters).
            models.Index(fields=["probability", "id"]),
            models.Index(fields=["status", "id"]),
        ]

    def __str__(self) -> str:
        return f"Prediction {self.pk} ({self.status})"


class PredictionLevel(models.Model):
    """The finding at one disc level of a finished prediction: where the disc is and its Pfirrmann grade."""

    class Level(models.TextChoices):
        L3_L4 = "L3-L4", "L3-L4"
        L4_L5 = "L4-L5", "L4-L5"
        L5_S1 = "L5-S1", "L5-S1"

    # The Pfirrmann grade from which a disc counts as degenerated, and the image as DDD (the data's
    # definition, as in ml.levels.grading, which the web process does not import).
    DEGENERATED_FROM = 3
    GRADES = range(1, 6)

    prediction = models.ForeignKey(Prediction, on_delete=models.CASCADE, related_name="levels")
    level = models.CharField(max_length=5, choices=Level.choices)
    box = models.JSONField(help_text="[x0, y0, x1, y1] in image pixels.")
    grade = models.PositiveSmallIntegerField(help_text="Pfirrmann grade 1-5.")
    grade_probabilities = models.JSONField(help_text="Probability of each grade, 1 to 5.")
    degenerated_probability = models.FloatField(help_text="Probability of grade 3 or more.")
    history = HistoricalRecords()

    class Meta:
        ordering = ["prediction_id", "level"]  # by the column: "prediction" would join for its ordering
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

    @property
    def grade_probability(self) -> float:
        """The model's probability of the grade it gave."""
        return self.grade_probabilities[self.grade - 1]

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]


class Referral(models.Model):
    """A case shown to another clinician for a second opinion, until the owner withdraws it."""

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="referrals")
    clinician = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="referrals_received"
    )
    referred_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="referrals_made"
    )
    note = models.TextField(blank=True, max_length=2000)
    created_at = models.DateTimeField(auto_now_add=True)
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    withdrawn_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["case", "clinician"],
                condition=Q(withdrawn_at__isnull=True),
                name="referral_one_active_per_clinician",
            ),
            models.CheckConstraint(
                condition=Q(withdrawn_at__isnull=True, withdrawn_by__isnull=True)
                | Q(withdrawn_at__isnull=False, withdrawn_by__isnull=False),
                name="referral_withdrawn_by_whom",
            ),
        ]

    def __str__(self) -> str:
        return f"Referral of case {self.case_id} to {self.clinician}"

    @property
    def is_active(self) -> bool:
        return self.withdrawn_at is None


class ReviewQuerySet(models.QuerySet):
    def current(self) -> ReviewQuerySet:
        """The latest version of each reviewer's review or opinion of a prediction; amended ones drop out."""
        newer = Review.objects.filter(
            prediction=OuterRef("prediction"),
            kind=OuterRef("kind"),
            reviewer=OuterRef("reviewer"),
            version__gt=OuterRef("version"),
        )
        return self.filter(~Exists(newer))


class Review(models.Model):
    """A clinician's reading of a prediction. Never edited: an amendment is a new version by the same
    author. The case's review is the owner's (or staff's); a referred clinician's is a second opinion."""

    class Decision(models.TextChoices):
        AGREE = "agree", "Agree"
        OVERRIDE = "override", "Override"

    class Kind(models.TextChoices):
        REVIEW = "review", "Review"
        SECOND_OPINION = "second_opinion", "Second opinion"

    prediction = models.ForeignKey(Prediction, on_delete=models.CASCADE, related_name="reviews")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reviews")
    kind = models.CharField(max_length=14, choices=Kind.choices, default=Kind.REVIEW)
    version = models.PositiveIntegerField(default=1)
    # RESTRICT, not PROTECT: a referral goes only with its whole case, opinions included.
    referral = models.ForeignKey(
        Referral,
        on_delete=models.RESTRICT,
        null=True,
        blank=True,
        related_name="opinions",
        help_text="The referral a second opinion was given under.",
    )
    decision = models.CharField(max_length=10, choices=Decision.choices)
    final_label = models.CharField(max_length=14, choices=Prediction.Label.choices)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    history = HistoricalRecords()

    objects = ReviewQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["prediction", "version"],
                condition=Q(kind="review"),
                name="review_one_chain_per_prediction",
            ),
            models.UniqueConstraint(
                fields=["prediction", "kind", "reviewer", "version"], name="review_version_unique"
            ),
            models.CheckConstraint(
                condition=Q(kind="review", referral__isnull=True)
                | Q(kind="second_opinion", referral__isnull=False),
                name="review_second_opinion_has_referral",
            ),
            models.CheckConstraint(condition=Q(version__gte=1), name="review_version_positive"),
            models.CheckConstraint(
                condition=Q(decision__in=["agree", "override"]), name="review_decision_valid"
            ),
            models.CheckConstraint(
                condition=Q(final_label__in=["normal", "ddd", "not_assessable"]),
                name="review_label_valid",
            ),
        ]
        # The admin's newest-first list; "has a case review" is answered by the partial unique index above,
        # and a reviewer's reviews by the foreign key's.
        indexes = [models.Index(fields=["created_at"])]

    def __str__(self) -> str:
        return (
            f"{self.get_kind_display()} v{self.version} of prediction {self.prediction_id}: {self.decision}"
        )


class ReviewLevel(models.Model):
    """The grade a review version gives one disc level of the prediction: the model's grade confirmed, or
    corrected. Written with its review and, like it, never changed."""

    review = models.ForeignKey(Review, on_delete=models.CASCADE, related_name="levels")
    finding = models.ForeignKey(PredictionLevel, on_delete=models.CASCADE, related_name="review_levels")
    grade = models.PositiveSmallIntegerField(help_text="The clinician's Pfirrmann grade 1-5.")
    history = HistoricalRecords()

    class Meta:
        ordering = ["review_id", "finding__level"]  # by the column: "review" would join for its ordering
        constraints = [
            models.UniqueConstraint(fields=["review", "finding"], name="review_level_unique"),
            models.CheckConstraint(condition=Q(grade__gte=1, grade__lte=5), name="review_level_grade"),
        ]

    def __str__(self) -> str:
        return f"{self.finding.level}: grade {self.grade} (model {self.finding.grade})"

    @property
    def level(self) -> str:
        return self.finding.level

    @property
    def changed(self) -> bool:
        """The clinician corrected the model's grade."""
        return self.grade != self.finding.grade


class AccessEvent(models.Model):
    """Who looked at or downloaded which patient data, and when. Written only by
    diagnosis.services.history.access_record; never changed. The case and patient are kept by id even if
    the record is later deleted (no database constraint), so the log outlives what it points to."""

    class Action(models.TextChoices):
        VIEW_CASE = "view_case", "Viewed the case"
        VIEW_HISTORY = "view_history", "Viewed the case history"
        VIEW_SCAN = "view_scan", "Viewed a scan"
        VIEW_PREDICTION = "view_prediction", "Viewed a prediction"
        DOWNLOAD_SCAN = "download_scan", "Downloaded a scan file"
        VIEW_HEATMAP = "view_heatmap", "Viewed a heatmap"
        DOWNLOAD_REPORT = "download_report", "Downloaded a report"
        VIEW_PATIENT = "view_patient", "Viewed the patient"
        SEARCH_PATIENTS = "search_patients", "Searched patients"
        LOOKUP_PATIENT = "lookup_patient", "Looked up a patient by identifier"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="accesses")
    action = models.CharField(max_length=20, choices=Action.choices)
    case = models.ForeignKey(
        Case, on_delete=models.DO_NOTHING, db_constraint=False, null=True, blank=True, related_name="+"
    )
    patient = models.ForeignKey(
        Patient, on_delete=models.DO_NOTHING, db_constraint=False, null=True, blank=True, related_name="+"
    )
    object_type = models.CharField(max_length=32, blank=True, help_text="What was opened: scan, prediction…")
    object_id = models.PositiveBigIntegerField(null=True, blank=True)
    detail = models.CharField(max_length=255, blank=True, help_text="e.g. the identifier looked up.")
    at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["case", "at"]), models.Index(fields=["user", "at"])]

    def __str__(self) -> str:
        return f"{self.user} {self.get_action_display().lower()} at {self.at:%Y-%m-%d %H:%M}"


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
