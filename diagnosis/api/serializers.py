"""Output serializers shared by several API views; input serializers live with their view."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from diagnosis.models import Case, CaseReport, Patient, Prediction, PredictionExclusion, Review, Scan
from ml.models import ModelVersion


class PatientOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Patient
        fields = ["id", "identifier", "name", "birth_date", "sex", "created_at", "updated_at"]


class PatientRefSerializer(serializers.ModelSerializer):
    class Meta:
        model = Patient
        fields = ["id", "identifier"]


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
        return CaseReportOutputSerializer(reports, many=True, context=self.context).data


class ModelVersionRefSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = ["id", "name", "version", "architecture"]


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
        fields = ["id", "status", "label", "probability"]


class ReviewOutputSerializer(serializers.ModelSerializer):
    reviewer = serializers.CharField(source="reviewer.get_username")

    class Meta:
        model = Review
        fields = ["id", "prediction", "reviewer", "decision", "final_label", "comment", "created_at"]


class NotUsedOutputSerializer(serializers.ModelSerializer):
    by = serializers.CharField(source="excluded_by.get_username")
    at = serializers.DateTimeField(source="created_at")

    class Meta:
        model = PredictionExclusion
        fields = ["reason", "by", "at"]


class PredictionOutputSerializer(serializers.ModelSerializer):
    model_version = ModelVersionRefSerializer(allow_null=True)
    requested_model = ModelVersionRefSerializer(allow_null=True)
    heatmap_url = serializers.SerializerMethodField()
    review = serializers.SerializerMethodField()
    not_used = serializers.SerializerMethodField()

    class Meta:
        model = Prediction
        fields = [
            "id",
            "scan",
            "status",
            "label",
            "probability",
            "error",
            "model_version",
            "requested_model",
            "preprocess_ms",
            "inference_ms",
            "attempts",
            "queued_at",
            "started_at",
            "finished_at",
            "heatmap_url",
            "review",
            "not_used",
        ]

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_heatmap_url(self, prediction: Prediction) -> str | None:
        if not prediction.heatmap:
            return None
        return self._absolute(reverse("api:prediction-heatmap", args=[prediction.pk]))

    @extend_schema_field(ReviewOutputSerializer(allow_null=True))
    def get_review(self, prediction: Prediction) -> dict | None:
        review = getattr(prediction, "review", None)
        return ReviewOutputSerializer(review).data if review else None

    @extend_schema_field(NotUsedOutputSerializer(allow_null=True))
    def get_not_used(self, prediction: Prediction) -> dict | None:
        """Set when the clinician left this prediction out of the sign-off, with the reason."""
        exclusion = getattr(prediction, "exclusion", None)
        return NotUsedOutputSerializer(exclusion).data if exclusion else None

    def _absolute(self, path: str) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path


class ScanOutputSerializer(serializers.ModelSerializer):
    uploaded_by = serializers.CharField(source="uploaded_by.get_username")
    file_url = serializers.SerializerMethodField()
    predictions = PredictionSummarySerializer(many=True)

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
            "file_url",
            "predictions",
        ]

    def get_file_url(self, scan: Scan) -> str:
        path = reverse("api:scan-file", args=[scan.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path


class ScanUploadOutputSerializer(ScanOutputSerializer):
    prediction = PredictionStatusSerializer(allow_null=True)

    class Meta(ScanOutputSerializer.Meta):
        fields = [*ScanOutputSerializer.Meta.fields, "prediction"]
