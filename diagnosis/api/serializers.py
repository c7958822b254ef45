"""Output serializers shared by several API views; input serializers live with their view."""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from diagnosis.models import (
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
from diagnosis.selectors import (
    ExclusionRead,
    PredictionRelated,
    ReviewLevelRead,
    ReviewRead,
    prediction_related,
    prediction_summaries,
)
from ml.models import ModelVersion

# The serializers of what the API lists (patients, cases, predictions, scans and what they nest) run for
# every row of a list: each writes its fields directly, the values DRF's fields would give (tests compare
# the two). DRF's per-field dispatch was most of the time serializing a page took. The fields stay declared
# for the schema.
_DATETIME = serializers.DateTimeField()
_DATE = serializers.DateField()


def _datetime(value) -> str | None:
    """As a DRF DateTimeField shows it: ISO 8601 in the current time zone."""
    return None if value is None else _DATETIME.to_representation(value)


def _date(value) -> str | None:
    return None if value is None else _DATE.to_representation(value)


def _username(user) -> str | None:
    return None if user is None else user.get_username()


def _route_for_ids(name: str) -> Callable[[int], str]:
    """`reverse(name, args=[pk])` for the many ids of a page: the route is reversed once, with a placeholder
    id that each call replaces. Django's reverse took about 60 microseconds a call, 1.5 ms of a page of 25."""
    placeholder = str(_ROUTE_PLACEHOLDER_ID)
    head, found, tail = reverse(name, args=[_ROUTE_PLACEHOLDER_ID]).rpartition(placeholder)
    if not found:
        raise ValueError(f"route {name} does not show its id in the path")
    return lambda pk: f"{head}{int(pk)}{tail}"


_ROUTE_PLACEHOLDER_ID = 987_654_321_987


def _model_ref(version: ModelVersion | None) -> dict | None:
    if version is None:
        return None
    return {
        "id": version.pk,
        "name": version.name,
        "version": version.version,
        "architecture": version.architecture,
    }


class PatientOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Patient
        fields = ["id", "identifier", "name", "birth_date", "sex", "created_at", "updated_at"]

    def to_representation(self, patient: Patient) -> dict:
        return {
            "id": patient.pk,
            "identifier": patient.identifier,
            "name": patient.name,
            "birth_date": _date(patient.birth_date),
            "sex": patient.sex,
            "created_at": _datetime(patient.created_at),
            "updated_at": _datetime(patient.updated_at),
        }


class PatientRefSerializer(serializers.ModelSerializer):
    class Meta:
        model = Patient
        fields = ["id", "identifier"]

    def to_representation(self, patient: Patient) -> dict:
        return {"id": patient.pk, "identifier": patient.identifier}


class CaseReportOutputSerializer(serializers.ModelSerializer):
    signed_by = serializers.CharField(source="signed_by.get_username")
    reopened_by = serializers.CharField(source="reopened_by.get_username", allow_null=True)
    url = serializers.SerializerMethodField(help_text="The PDF of this version.")

    class Meta:
        model = CaseReport
        fields = [
            "version",
            "conclusion",
            "signed_by",
            "signed_at",
            "reopened_by",
            "reopened_at",
            "reopen_reason",
            "url",
        ]

    def to_representation(self, report: CaseReport) -> dict:
        return {
            "version": report.version,
            "conclusion": report.conclusion,
            "signed_by": report.signed_by.get_username(),
            "signed_at": _datetime(report.signed_at),
            "reopened_by": _username(report.reopened_by),
            "reopened_at": _datetime(report.reopened_at),
            "reopen_reason": report.reopen_reason,
            "url": self.get_url(report),
        }

    def get_url(self, report: CaseReport) -> str:
        path = f"{reverse('api:case-report', args=[report.case_id])}?version={report.version}"
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path


class SignedOffSerializer(serializers.Serializer):
    by = serializers.CharField()
    at = serializers.DateTimeField()
    version = serializers.IntegerField(help_text="The report version this sign-off issued.")


class CaseOutputSerializer(serializers.ModelSerializer):
    """`status` is open, awaiting_review (a current prediction waits for review) or signed_off; cases
    closed before sign-off existed were migrated to open or awaiting_review."""

    patient = PatientRefSerializer()
    owner = serializers.CharField(source="owner.get_username")
    signed_off = serializers.SerializerMethodField()
    reports = serializers.SerializerMethodField()

    class Meta:
        model = Case
        fields = [
            "id",
            "patient",
            "owner",
            "status",
            "signed_off",
            "clinical_question",
            "notes",
            "reports",
            "created_at",
            "updated_at",
        ]

    def to_representation(self, case: Case) -> dict:
        return {
            "id": case.pk,
            "patient": {"id": case.patient.pk, "identifier": case.patient.identifier},
            "owner": case.owner.get_username(),
            "status": case.status,
            "signed_off": self.get_signed_off(case),
            "clinical_question": case.clinical_question,
            "notes": case.notes,
            "reports": self.get_reports(case),
            "created_at": _datetime(case.created_at),
            "updated_at": _datetime(case.updated_at),
        }

    @extend_schema_field(SignedOffSerializer(allow_null=True))
    def get_signed_off(self, case: Case) -> dict | None:
        """Who signed the case off, when, and as which report version; null while it is open."""
        reports = case.reports.all()
        if case.status != Case.Status.SIGNED_OFF or not reports:
            return None
        report = max(reports, key=lambda report: report.version)
        return {"by": report.signed_by.get_username(), "at": report.signed_at, "version": report.version}

    @extend_schema_field(CaseReportOutputSerializer(many=True))
    def get_reports(self, case: Case) -> list[dict]:
        """Every signed version, newest first; a reopened one says who reopened it, when and why."""
        reports = sorted(case.reports.all(), key=lambda report: report.version, reverse=True)
        return [self._report.to_representation(report) for report in reports]

    @cached_property
    def _report(self) -> CaseReportOutputSerializer:
        return CaseReportOutputSerializer(context=self.context)


class ModelVersionRefSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = ["id", "name", "version", "architecture"]

    def to_representation(self, version: ModelVersion) -> dict:
        return _model_ref(version)


class ModelVersionOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "name",
            "architecture",
            "version",
            "input_size",
            "threshold",
            "parameters",
            "metrics",
            "trained_at",
            "is_active",
            "created_at",
        ]


class PredictionStatusSerializer(serializers.ModelSerializer):
    class Meta:
        model = Prediction
        fields = ["id", "status"]


class PredictionSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = Prediction
        fields = ["id", "status", "label", "reason", "probability"]

    def to_representation(self, prediction: tuple) -> dict:
        """`prediction`: a row of selectors.prediction_summaries."""
        return {
            "id": prediction.id,
            "status": prediction.status,
            "label": prediction.label,
            "reason": prediction.reason,
            "probability": prediction.probability,
        }


class ReviewLevelOutputSerializer(serializers.ModelSerializer):
    level = serializers.CharField(source="finding.level")
    model_grade = serializers.IntegerField(source="finding.grade", help_text="The model's grade.")
    changed = serializers.BooleanField(help_text="The clinician corrected the model's grade.")

    class Meta:
        model = ReviewLevel
        fields = ["level", "grade", "model_grade", "changed"]

    def to_representation(self, review_level: ReviewLevelRead) -> dict:
        return {
            "level": review_level.level,
            "grade": review_level.grade,
            "model_grade": review_level.model_grade,
            "changed": review_level.changed,
        }


class ReviewOutputSerializer(serializers.ModelSerializer):
    reviewer = serializers.CharField(source="reviewer.get_username")
    levels = ReviewLevelOutputSerializer(
        many=True,
        read_only=True,
        help_text="The grade given per level; empty for a prediction without levels.",
    )

    class Meta:
        model = Review
        fields = [
            "id",
            "prediction",
            "reviewer",
            "kind",
            "version",
            "decision",
            "final_label",
            "comment",
            "levels",
            "created_at",
        ]

    def to_representation(self, review: Review | ReviewRead) -> dict:
        if isinstance(review, Review):
            review = ReviewRead.of(review)
        return {
            "id": review.id,
            "prediction": review.prediction_id,
            "reviewer": review.reviewer,
            "kind": review.kind,
            "version": review.version,
            "decision": review.decision,
            "final_label": review.final_label,
            "comment": review.comment,
            "levels": [self._level.to_representation(level) for level in review.levels],
            "created_at": _datetime(review.created_at),
        }

    @cached_property
    def _level(self) -> ReviewLevelOutputSerializer:
        return ReviewLevelOutputSerializer()


class PredictionLevelSerializer(serializers.ModelSerializer):
    box = serializers.ListField(
        child=serializers.IntegerField(), min_length=4, max_length=4, help_text="[x0, y0, x1, y1] in pixels."
    )
    grade_probabilities = serializers.ListField(
        child=serializers.FloatField(), min_length=5, max_length=5, help_text="Grades 1 to 5."
    )

    class Meta:
        model = PredictionLevel
        fields = ["level", "grade", "grade_probabilities", "degenerated_probability", "box"]

    def to_representation(self, finding: PredictionLevel | tuple) -> dict:
        """From a PredictionLevel or a row with its field names (selectors.prediction_related)."""
        return {
            "level": finding.level,
            "grade": finding.grade,
            "grade_probabilities": [float(p) for p in finding.grade_probabilities],
            "degenerated_probability": finding.degenerated_probability,
            "box": [int(v) for v in finding.box],
        }


class NotUsedOutputSerializer(serializers.ModelSerializer):
    by = serializers.CharField(source="excluded_by.get_username")
    at = serializers.DateTimeField(source="created_at")

    class Meta:
        model = PredictionExclusion
        fields = ["reason", "by", "at"]

    def to_representation(self, exclusion: ExclusionRead) -> dict:
        return {
            "reason": exclusion.reason,
            "by": exclusion.excluded_by,
            "at": _datetime(exclusion.created_at),
        }


class ReadsPerPage:
    """A row serializer whose rows show what `read_for_page` reads for many rows at once: for the page a
    PageListSerializer hands it, or else for the one row serialized. A page then costs the queries of one
    row, where Django's prefetching built a queryset per row and relation."""

    _page: object = None
    _page_ids: frozenset[int] = frozenset()

    def read_for_page(self, rows: list) -> object:
        raise NotImplementedError

    def load_page(self, rows: list) -> None:
        self._page = self.read_for_page(rows)
        self._page_ids = frozenset(row.pk for row in rows)

    def page_data(self, row):
        if row.pk not in self._page_ids:
            self.load_page([row])
        return self._page


class PageListSerializer(serializers.ListSerializer):
    """A list of a ReadsPerPage serializer's rows, what they show beyond their own columns read once."""

    def to_representation(self, data) -> list[dict]:
        rows = list(data.all() if hasattr(data, "all") else data)
        self.child.load_page(rows)
        return [self.child.to_representation(row) for row in rows]


class PredictionOutputSerializer(ReadsPerPage, serializers.ModelSerializer):
    levels = PredictionLevelSerializer(many=True, read_only=True)
    model_version = ModelVersionRefSerializer(allow_null=True)
    requested_model = ModelVersionRefSerializer(allow_null=True)
    heatmap_url = serializers.SerializerMethodField()
    review = serializers.SerializerMethodField()
    second_opinions = serializers.SerializerMethodField()
    not_used = serializers.SerializerMethodField()

    class Meta:
        model = Prediction
        fields = [
            "id",
            "scan",
            "status",
            "label",
            "reason",
            "probability",
            "levels",
            "error",
            "model_version",
            "requested_model",
            "preprocess_ms",
            "inference_ms",
            "attempts",
            "queued_at",
            "started_at",
            "finished_at",
            "superseded_at",
            "heatmap_url",
            "review",
            "second_opinions",
            "not_used",
        ]
        list_serializer_class = PageListSerializer

    def read_for_page(self, predictions: list[Prediction]) -> PredictionRelated:
        """What the predictions show beyond their own columns."""
        return prediction_related(predictions)

    def to_representation(self, prediction: Prediction) -> dict:
        related = self.page_data(prediction)
        models, levels = related.models, related.levels.get(prediction.pk, ())
        return {
            "id": prediction.pk,
            "scan": prediction.scan_id,
            "status": prediction.status,
            "label": prediction.label,
            "reason": prediction.reason,
            "probability": prediction.probability,
            "levels": [self._level.to_representation(level) for level in levels],
            "error": prediction.error,
            "model_version": _model_ref(models.get(prediction.model_version_id)),
            "requested_model": _model_ref(models.get(prediction.requested_model_id)),
            "preprocess_ms": prediction.preprocess_ms,
            "inference_ms": prediction.inference_ms,
            "attempts": prediction.attempts,
            "queued_at": _datetime(prediction.queued_at),
            "started_at": _datetime(prediction.started_at),
            "finished_at": _datetime(prediction.finished_at),
            "superseded_at": _datetime(prediction.superseded_at),
            "heatmap_url": self.get_heatmap_url(prediction),
            "review": self.get_review(prediction),
            "second_opinions": self.get_second_opinions(prediction),
            "not_used": self.get_not_used(prediction),
        }

    @cached_property
    def _level(self) -> PredictionLevelSerializer:
        return PredictionLevelSerializer()

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_heatmap_url(self, prediction: Prediction) -> str | None:
        if not prediction.heatmap:
            return None
        return self._absolute(self._heatmap_route(prediction.pk))

    @cached_property
    def _heatmap_route(self) -> Callable[[int], str]:
        return _route_for_ids("api:prediction-heatmap")

    # One nested serializer for every row of a list: building a ModelSerializer's fields per row cost
    # about a third of a page of predictions.
    @cached_property
    def _review_serializer(self) -> ReviewOutputSerializer:
        return ReviewOutputSerializer()

    @cached_property
    def _not_used_serializer(self) -> NotUsedOutputSerializer:
        return NotUsedOutputSerializer()

    @extend_schema_field(ReviewOutputSerializer(allow_null=True))
    def get_review(self, prediction: Prediction) -> dict | None:
        """The case's current review: the latest version; earlier ones are in the case history."""
        review = self.page_data(prediction).opinions_of(prediction.pk).review
        return self._review_serializer.to_representation(review) if review else None

    @extend_schema_field(ReviewOutputSerializer(many=True))
    def get_second_opinions(self, prediction: Prediction) -> list[dict]:
        """Each referred clinician's current opinion."""
        opinions = self.page_data(prediction).opinions_of(prediction.pk).second_opinions
        return [self._review_serializer.to_representation(review) for review in opinions]

    @extend_schema_field(NotUsedOutputSerializer(allow_null=True))
    def get_not_used(self, prediction: Prediction) -> dict | None:
        """Set when the clinician left this prediction out of the sign-off, with the reason."""
        exclusion = self.page_data(prediction).exclusions.get(prediction.pk)
        return self._not_used_serializer.to_representation(exclusion) if exclusion else None

    def _absolute(self, path: str) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path


class ScanOutputSerializer(ReadsPerPage, serializers.ModelSerializer):
    uploaded_by = serializers.CharField(source="uploaded_by.get_username")
    file_url = serializers.SerializerMethodField()
    predictions = PredictionSummarySerializer(many=True)

    def read_for_page(self, scans: list[Scan]) -> dict[int, list[tuple]]:
        """The scans' predictions' summaries."""
        return prediction_summaries([scan.pk for scan in scans])

    class Meta:
        model = Scan
        fields = [
            "id",
            "case",
            "original_name",
            "format",
            "width",
            "height",
            "sha256",
            "uploaded_by",
            "uploaded_at",
            "modality",
            "series_description",
            "pixel_spacing",
            "note",
            "series",
            "file_url",
            "predictions",
        ]
        list_serializer_class = PageListSerializer

    def to_representation(self, scan: Scan) -> dict:
        return {
            "id": scan.pk,
            "case": scan.case_id,
            "original_name": scan.original_name,
            "format": scan.format,
            "width": scan.width,
            "height": scan.height,
            "sha256": scan.sha256,
            "uploaded_by": scan.uploaded_by.get_username(),
            "uploaded_at": _datetime(scan.uploaded_at),
            "modality": scan.modality,
            "series_description": scan.series_description,
            "pixel_spacing": scan.pixel_spacing,
            "note": scan.note,
            "series": scan.series_id,
            "file_url": self.get_file_url(scan),
            "predictions": [
                self._summary.to_representation(p) for p in self.page_data(scan).get(scan.pk, [])
            ],
        }

    @cached_property
    def _summary(self) -> PredictionSummarySerializer:
        return PredictionSummarySerializer()

    def get_file_url(self, scan: Scan) -> str:
        path = self._file_route(scan.pk)
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path

    @cached_property
    def _file_route(self) -> Callable[[int], str]:
        return _route_for_ids("api:scan-file")


class ScanUploadOutputSerializer(ScanOutputSerializer):
    prediction = PredictionStatusSerializer(allow_null=True)

    class Meta(ScanOutputSerializer.Meta):
        fields = [*ScanOutputSerializer.Meta.fields, "prediction"]

    def to_representation(self, scan: Scan) -> dict:
        prediction = scan.prediction  # set by the upload view: the prediction the upload queued, if any
        status = None if prediction is None else PredictionStatusSerializer(prediction).data
        return {**super().to_representation(scan), "prediction": status}


class ReferralOutputSerializer(serializers.ModelSerializer):
    clinician = serializers.CharField(source="clinician.get_username")
    referred_by = serializers.CharField(source="referred_by.get_username")
    withdrawn_by = serializers.CharField(source="withdrawn_by.get_username", allow_null=True, default=None)
    is_active = serializers.BooleanField()

    class Meta:
        model = Referral
        fields = [
            "id",
            "case",
            "clinician",
            "referred_by",
            "note",
            "created_at",
            "is_active",
            "withdrawn_at",
            "withdrawn_by",
        ]


class FieldChangeSerializer(serializers.Serializer):
    field = serializers.CharField()
    old = serializers.CharField()
    new = serializers.CharField()


class HistoryEntrySerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    user = serializers.CharField(help_text="Who; 'system' for the worker.")
    kind = serializers.ChoiceField(choices=["change", "access"])
    object_type = serializers.CharField(help_text="case, scan, prediction, review, referral, patient…")
    object_id = serializers.IntegerField(allow_null=True)
    action = serializers.CharField(help_text="created, changed, deleted, or the access (view_case, …).")
    summary = serializers.CharField()
    changes = FieldChangeSerializer(many=True, help_text="For a change: each field's old and new value.")


class SeriesSliceSerializer(serializers.ModelSerializer):
    scan = serializers.IntegerField(source="pk")

    class Meta:
        model = Scan
        fields = ["scan", "slice_index", "slice_position", "instance_number"]


class SeriesOutputSerializer(serializers.ModelSerializer):
    """What the files say (modality, description, study date, body part, orientation, slice count), the
    result of checking them against the case's patient, and the slices in order."""

    chosen_by = serializers.CharField(source="chosen_by.get_username", allow_null=True, default=None)
    slice_count = serializers.SerializerMethodField()
    slices = serializers.SerializerMethodField()
    assessable = serializers.BooleanField()
    patient_mismatch = serializers.BooleanField(
        help_text="The file's PatientID or PatientName differs from the case's patient."
    )

    class Meta:
        model = Series
        fields = [
            "id",
            "case",
            "study_uid",
            "series_uid",
            "modality",
            "series_description",
            "study_date",
            "body_part",
            "plane",
            "ordered_by_geometry",
            "slice_count",
            "chosen_scan",
            "chosen_by",
            "assessable",
            "not_assessable_reason",
            "patient_id_check",
            "patient_name_check",
            "patient_mismatch",
            "source",
            "created_at",
            "slices",
        ]

    def get_slice_count(self, series: Series) -> int:
        return len(series.slices.all())

    @extend_schema_field(SeriesSliceSerializer(many=True))
    def get_slices(self, series: Series) -> list:
        ordered = sorted(series.slices.all(), key=lambda scan: (scan.slice_index is None, scan.slice_index))
        return SeriesSliceSerializer(ordered, many=True).data


class IncomingSeriesOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = IncomingSeries
        fields = [
            "id",
            "study_uid",
            "series_uid",
            "patient_id",
            "patient_name",
            "modality",
            "series_description",
            "study_date",
            "instance_count",
            "calling_ae_title",
            "received_at",
        ]
