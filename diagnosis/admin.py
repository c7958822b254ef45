from __future__ import annotations

from functools import cached_property

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connections, transaction
from simple_history.admin import SimpleHistoryAdmin

from diagnosis.models import (
    AccessEvent,
    Case,
    CaseReport,
    Patient,
    Prediction,
    PredictionLevel,
    Referral,
    Review,
    ReviewLevel,
    Scan,
    Series,
)
from diagnosis.services.cases import case_refresh_status

# Below this many rows (by PostgreSQL's estimate) a whole-table list is counted exactly.
ESTIMATED_COUNT_FROM = 10_000


class EstimatedCountPaginator(Paginator):
    """An unfiltered changelist of a big table on PostgreSQL is counted from the planner's row estimate
    (pg_class.reltuples, kept current by autovacuum) instead of COUNT(*) over every row; a filtered or
    searched list, a small table and other databases get the exact count."""

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        connection = connections[queryset.db]
        if connection.vendor == "postgresql" and not queryset.query.where:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                    [connection.ops.quote_name(queryset.model._meta.db_table)],
                )
                row = cursor.fetchone()
            if row and row[0] >= ESTIMATED_COUNT_FROM:
                return row[0]
        return super().count


class BigTableAdmin:
    """Mixed into the admin of a table that grows with every case: one count per changelist view (not a
    second one of the whole table for "N total"), estimated when it is the whole table."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False
    # Half of Django's 100: rendering the rows is most of such a list's time.
    list_per_page = 50


class KeepsCaseCountsOnDelete:
    """Mixed into the admin of rows a case's status and prediction counts follow (services.cases): deleting
    some here refreshes their cases, as the services do after every change they make."""

    case_id_path: str

    def delete_model(self, request, obj) -> None:
        self.delete_queryset(request, type(obj).objects.filter(pk=obj.pk))

    def delete_queryset(self, request, queryset) -> None:
        with transaction.atomic():
            case_ids = set(queryset.values_list(self.case_id_path, flat=True))
            super().delete_queryset(request, queryset)
            for case_id in sorted(case_ids):
                case_refresh_status(case_id=case_id)


class ModalityFilter(admin.SimpleListFilter):
    """DICOM's Modality (0008,0060) defined terms a spine service meets, offered as they are rather than
    found with SELECT DISTINCT over every scan; uploads without DICOM have none."""

    title = "modality"
    parameter_name = "modality"
    MODALITIES = (
        ("MR", "MR (magnetic resonance)"),
        ("CT", "CT (computed tomography)"),
        ("CR", "CR (computed radiography)"),
        ("DX", "DX (digital radiography)"),
        ("OT", "OT (other)"),
        ("", "None (not from DICOM)"),
    )

    def lookups(self, request, model_admin):
        # An empty string is not a value a filter link can carry: "none" stands for it.
        return [(code or "none", label) for code, label in self.MODALITIES]

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset
        return queryset.filter(modality="" if value == "none" else value)


# Every admin below is a SimpleHistoryAdmin: its "History" button lists each recorded version of a record,
# who saved it and what changed (reverting is disabled in settings: changes go through the services).


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class CaseInline(ReadOnlyInline):
    model = Case
    fields = ("status", "owner", "clinical_question", "created_at")
    readonly_fields = fields


class ScanInline(ReadOnlyInline):
    model = Scan
    fields = ("original_name", "format", "width", "height", "uploaded_by", "uploaded_at")
    readonly_fields = fields


class CaseReportInline(ReadOnlyInline):
    model = CaseReport
    fields = (
        "version",
        "signed_by",
        "signed_at",
        "conclusion",
        "reopened_by",
        "reopened_at",
        "reopen_reason",
    )
    readonly_fields = fields
    show_change_link = False


class PredictionInline(ReadOnlyInline):
    model = Prediction
    fields = ("status", "label", "probability", "model_version", "queued_at", "finished_at")
    readonly_fields = fields


@admin.register(Patient)
class PatientAdmin(BigTableAdmin, SimpleHistoryAdmin):
    list_display = ("identifier", "name", "birth_date", "sex", "created_by", "created_at")
    list_filter = ("sex", "created_at")
    search_fields = ("identifier", "name")
    readonly_fields = ("created_by", "created_at", "updated_at")
    inlines = [CaseInline]

    def save_model(self, request, obj, form, change) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(Case)
class CaseAdmin(BigTableAdmin, SimpleHistoryAdmin):
    list_display = ("id", "patient", "owner", "status", "created_at", "updated_at")
    list_filter = ("status", "created_at", "owner")
    search_fields = ("patient__identifier", "patient__name", "clinical_question", "notes")
    list_select_related = ("patient", "owner")
    autocomplete_fields = ("patient",)
    # The status follows the predictions, the sign-off and the reopen (services.signoff), never an edit.
    readonly_fields = ("status", "created_at", "updated_at")
    inlines = [CaseReportInline, ScanInline]


@admin.register(Scan)
class ScanAdmin(KeepsCaseCountsOnDelete, BigTableAdmin, SimpleHistoryAdmin):
    case_id_path = "case_id"
    list_display = ("id", "original_name", "case", "format", "width", "height", "uploaded_by", "uploaded_at")
    list_filter = ("format", ModalityFilter, "uploaded_at")
    search_fields = ("original_name", "sha256", "case__patient__identifier", "study_uid", "series_uid")
    list_select_related = ("case", "case__patient", "uploaded_by")
    # The file is patient data: shown by name only, never linked to a public URL.
    readonly_fields = tuple(field.name for field in Scan._meta.fields if field.name != "file") + (
        "stored_file",
    )
    exclude = ("file",)
    inlines = [PredictionInline]

    @admin.display(description="Stored file")
    def stored_file(self, scan: Scan) -> str:
        return scan.file.name

    def has_add_permission(self, request) -> bool:
        # Scans come in through the upload service, which checks and de-identifies the file.
        return False


@admin.register(Series)
class SeriesAdmin(BigTableAdmin, admin.ModelAdmin):
    """For looking up a series (by its UID, say): series arrive through the upload and the DICOM receiver,
    which de-identify and order them, and change through the case page (the chosen slice)."""

    list_display = ("id", "series_description", "case", "modality", "plane", "source", "created_at")
    list_filter = ("plane", "source", "created_at")
    search_fields = ("series_uid", "study_uid", "series_description", "case__patient__identifier")
    list_select_related = ("case", "case__patient")
    readonly_fields = tuple(field.name for field in Series._meta.fields)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class PredictionLevelInline(admin.TabularInline):
    model = PredictionLevel
    fields = ("level", "grade", "grade_probabilities", "degenerated_probability", "box")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Prediction)
class PredictionAdmin(KeepsCaseCountsOnDelete, BigTableAdmin, SimpleHistoryAdmin):
    case_id_path = "scan__case_id"
    list_display = (
        "id",
        "scan",
        "status",
        "label",
        "probability",
        "model_version",
        "queued_at",
        "finished_at",
    )
    list_filter = ("status", "label", "model_version", "queued_at")
    search_fields = ("scan__original_name", "scan__case__patient__identifier", "error")
    list_select_related = ("scan", "model_version")
    exclude = ("heatmap",)
    readonly_fields = ("heatmap_file",)
    inlines = [PredictionLevelInline]

    @admin.display(description="Heatmap")
    def heatmap_file(self, prediction: Prediction) -> str:
        return prediction.heatmap.name or "-"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        # Predictions are the model's output: viewable, never edited by hand.
        return False


class ReviewLevelInline(admin.TabularInline):
    """The grade given per level, shown with the review and, like it, never edited."""

    model = ReviewLevel
    fields = ("finding", "grade")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Review)
class ReviewAdmin(BigTableAdmin, SimpleHistoryAdmin):
    """Shown, never edited nor deleted, not even by a superuser: a review is the clinician's own words, and
    an amendment is a new version by its author (diagnosis.services.reviews)."""

    list_display = (
        "id",
        "prediction",
        "kind",
        "version",
        "reviewer",
        "decision",
        "final_label",
        "created_at",
    )
    list_filter = ("kind", "decision", "final_label", "created_at")
    search_fields = ("comment", "reviewer__username", "prediction__scan__case__patient__identifier")
    list_select_related = ("prediction", "reviewer")
    inlines = [ReviewLevelInline]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Referral)
class ReferralAdmin(SimpleHistoryAdmin):
    """Referrals are made and withdrawn by the case owner on the case page; here they are only shown."""

    list_display = ("id", "case", "clinician", "referred_by", "created_at", "withdrawn_at", "withdrawn_by")
    list_filter = ("created_at", "withdrawn_at")
    search_fields = ("clinician__username", "referred_by__username", "case__patient__identifier", "note")
    list_select_related = ("case", "case__patient", "clinician", "referred_by", "withdrawn_by")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AccessEvent)
class AccessEventAdmin(BigTableAdmin, admin.ModelAdmin):
    """The access log: browsed and searched, never written or changed by hand."""

    list_display = ("at", "user", "action", "case_id", "patient_id", "object_type", "object_id", "detail")
    list_filter = ("action", "at")
    search_fields = ("user__username", "detail", "=case__id", "=patient__id")
    list_select_related = ("user",)
    date_hierarchy = "at"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
