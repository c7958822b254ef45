"""Query parameters for lists, validated like any other input: a bad value is a 400, never a 500.
django-filter checks them with a form; DjangoFilterBackend raises its errors as a ValidationError, which
diagnosis.api.errors answers in the API's error shape."""

from __future__ import annotations

from datetime import UTC

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.db.models.functions import Lower
from django_filters.constants import EMPTY_VALUES
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from diagnosis.models import Case, IncomingSeries, Patient, Prediction, Scan, Series
from diagnosis.selectors import case_list_referred, case_list_waiting_for, patient_search
from ml.models import ModelVersion

# Ids beyond a signed 64-bit integer overflow the database driver, so they are refused up front.
MAX_ID = 2**63 - 1


def id_field(**kwargs) -> serializers.IntegerField:
    return serializers.IntegerField(min_value=1, max_value=MAX_ID, **kwargs)


@extend_schema_field({"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_ID})
class IdFilter(django_filters.NumberFilter):
    """A database id: a whole number (NumberFilter alone would take decimals) within the database's range."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, min_value=1, max_value=MAX_ID, **kwargs)


class StrictNullBooleanField(forms.NullBooleanField):
    """Django's NullBooleanField reads a word it does not know as "no filter"; here a typo is a 400. The
    words are the ones DRF's BooleanField takes in request bodies."""

    widget = forms.TextInput

    def to_python(self, value):
        if value in self.empty_values or value in serializers.BooleanField.NULL_VALUES:
            return None
        if value in serializers.BooleanField.TRUE_VALUES:
            return True
        if value in serializers.BooleanField.FALSE_VALUES:
            return False
        raise ValidationError("Must be true or false.", code="invalid")


class BooleanFilter(django_filters.BooleanFilter):
    field_class = StrictNullBooleanField


class Ordering(django_filters.OrderingFilter):
    """Ties are broken by id in the same direction, so that pages of a sorted list never overlap. Names
    (`names`) sort whatever their case: the databases compare bytes (PostgreSQL's C collation, SQLite's
    BINARY), which put "de Vries" after "Zulkarnain"."""

    def __init__(self, *fields: str, names: tuple[str, ...] = ()) -> None:
        super().__init__(fields=fields, help_text="Sort by this field; a leading '-' sorts descending.")
        self.names = set(names)

    def filter(self, qs, value):
        ordering = [self.get_ordering_value(param) for param in value or [] if param not in EMPTY_VALUES]
        if not ordering:
            return qs
        tie_break = "-pk" if ordering[0].startswith("-") else "pk"
        return qs.order_by(*(self._ignoring_case(field) for field in ordering), tie_break)

    def _ignoring_case(self, field: str):
        name = field.removeprefix("-")
        if name not in self.names:
            return field
        return Lower(name).desc() if field.startswith("-") else Lower(name).asc()


class UtcDateTimeField(forms.DateTimeField):
    """An ISO 8601 date or time, with whatever offset it names, as UTC: PostgreSQL refuses offsets past
    15:59, and a time that leaves the calendar when shifted is a bad value, not a server error."""

    def to_python(self, value):
        moment = super().to_python(value)
        if moment is None:
            return None
        try:
            return moment.astimezone(UTC)
        except OverflowError:
            raise ValidationError("Enter a valid date/time.", code="invalid") from None


class DateTimeFilter(django_filters.DateTimeFilter):
    field_class = UtcDateTimeField


class PeriodForm(forms.Form):
    def clean(self) -> dict:
        cleaned_data = super().clean()
        after, before = cleaned_data.get("created_after"), cleaned_data.get("created_before")
        if after and before and after > before:
            self.add_error("created_before", "Must not be before created_after.")
        return cleaned_data


def created_period(field_name: str) -> tuple[DateTimeFilter, DateTimeFilter]:
    """`created_after` and `created_before` on the field that says when a row of this list was created."""
    return (
        DateTimeFilter(
            field_name=field_name, lookup_expr="gte", help_text="Created at or after (ISO 8601 date or time)."
        ),
        DateTimeFilter(
            field_name=field_name,
            lookup_expr="lte",
            help_text="Created at or before (ISO 8601 date or time).",
        ),
    )


class PatientFilter(django_filters.FilterSet):
    search = django_filters.CharFilter(
        method="filter_search", max_length=100, help_text="Identifier or name."
    )
    created_after, created_before = created_period("created_at")
    ordering = Ordering("identifier", "name", "created_at", names=("name",))

    class Meta:
        model = Patient
        fields: list[str] = []
        form = PeriodForm

    def filter_search(self, queryset, name: str, value: str):
        return patient_search(queryset=queryset, search=value)


class CaseFilter(django_filters.FilterSet):
    """The API's case list and the worklist's cases: the same filters and orderings on both."""

    patient = IdFilter(field_name="patient_id")
    patient_identifier = django_filters.CharFilter(
        field_name="patient__identifier",
        lookup_expr="icontains",
        max_length=64,
        help_text="Part of the patient's identifier, upper or lower case alike.",
    )
    created_after, created_before = created_period("created_at")
    needs_my_review = BooleanFilter(
        method="filter_needs_my_review",
        help_text="Cases with a finished result waiting for your review (or, when referred, your opinion).",
    )
    referred_to_me = BooleanFilter(
        method="filter_referred_to_me", help_text="Cases referred to you for a second opinion."
    )
    signed_off = BooleanFilter(method="filter_signed_off", help_text="Signed-off cases, or the others.")
    ordering = Ordering("created_at", "updated_at", "status", ("patient__identifier", "patient_identifier"))

    class Meta:
        model = Case
        fields = ["status"]
        form = PeriodForm

    def filter_needs_my_review(self, queryset, name: str, value: bool):
        waiting = case_list_waiting_for(user=self.request.user, cases=queryset)
        return waiting if value else queryset.exclude(pk__in=waiting.values("pk"))

    def filter_referred_to_me(self, queryset, name: str, value: bool):
        referred = case_list_referred(user=self.request.user, cases=queryset)
        return referred if value else queryset.exclude(pk__in=referred.values("pk"))

    def filter_signed_off(self, queryset, name: str, value: bool):
        signed_off = Q(status=Case.Status.SIGNED_OFF)
        return queryset.filter(signed_off) if value else queryset.exclude(signed_off)


class ScanFilter(django_filters.FilterSet):
    created_after, created_before = created_period("uploaded_at")
    ordering = Ordering("uploaded_at", "original_name", names=("original_name",))

    class Meta:
        model = Scan
        fields: list[str] = []
        form = PeriodForm


class SeriesFilter(django_filters.FilterSet):
    plane = django_filters.ChoiceFilter(choices=Series.Plane.choices)
    patient_mismatch = BooleanFilter(method="filter_patient_mismatch")
    created_after, created_before = created_period("created_at")
    ordering = Ordering("created_at", "study_date")

    class Meta:
        model = Series
        fields: list[str] = []
        form = PeriodForm

    def filter_patient_mismatch(self, queryset, name, value):
        mismatch = Q(patient_id_check=Series.PatientCheck.MISMATCH) | Q(
            patient_name_check=Series.PatientCheck.MISMATCH
        )
        return queryset.filter(mismatch) if value else queryset.exclude(mismatch)


class IncomingSeriesFilter(django_filters.FilterSet):
    ordering = Ordering("received_at", "patient_id")

    class Meta:
        model = IncomingSeries
        fields: list[str] = []


class PredictionFilter(django_filters.FilterSet):
    patient = IdFilter(field_name="scan__case__patient_id")
    case = IdFilter(field_name="scan__case_id")
    current = BooleanFilter(
        field_name="superseded_at",
        lookup_expr="isnull",
        help_text="Only each scan's current prediction (true), or only those a re-run or another chosen "
        "slice superseded (false).",
    )
    created_after, created_before = created_period("queued_at")
    ordering = Ordering("queued_at", "finished_at", "probability", "status")

    class Meta:
        model = Prediction
        fields = ["status", "label"]
        form = PeriodForm


class ModelVersionFilter(django_filters.FilterSet):
    is_active = BooleanFilter()
    created_after, created_before = created_period("created_at")
    ordering = Ordering("name", "created_at", "trained_at")

    class Meta:
        model = ModelVersion
        fields: list[str] = []
        form = PeriodForm


class IdConverter:
    """A database id in a URL: digits that fit a 64-bit integer; anything longer is simply not found."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)
