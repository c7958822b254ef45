"""Query parameters for lists, validated like any other input: a bad value is a 400, never a 500."""

from __future__ import annotations

from django.db.models import QuerySet
from rest_framework import serializers

# Ids beyond a signed 64-bit integer overflow the database driver, so they are refused up front.
MAX_ID = 2**63 - 1
DATE_FORMATS = ["iso-8601", "%Y-%m-%d"]


def id_field(**kwargs) -> serializers.IntegerField:
    return serializers.IntegerField(min_value=1, max_value=MAX_ID, **kwargs)


def ordering_field(*names: str) -> serializers.ChoiceField:
    choices = [option for name in names for option in (name, f"-{name}")]
    return serializers.ChoiceField(
        choices=choices, required=False, help_text="Sort by this field; a leading '-' sorts descending."
    )


class ListFilterSerializer(serializers.Serializer):
    """`lookups` maps a parameter to its queryset lookup; `orderings` maps an ordering name to a field."""

    lookups: dict[str, str] = {}
    orderings: dict[str, str] = {}

    created_after = serializers.DateTimeField(
        required=False, input_formats=DATE_FORMATS, help_text="Created at or after (ISO 8601 date or time)."
    )
    created_before = serializers.DateTimeField(
        required=False, input_formats=DATE_FORMATS, help_text="Created at or before (ISO 8601 date or time)."
    )

    def validate(self, attrs: dict) -> dict:
        after, before = attrs.get("created_after"), attrs.get("created_before")
        if after and before and after > before:
            raise serializers.ValidationError({"created_before": ["Must not be before created_after."]})
        return attrs

    def filter(self, queryset: QuerySet) -> QuerySet:
        data = self.validated_data
        conditions = {lookup: data[name] for name, lookup in self.lookups.items() if name in data}
        queryset = queryset.filter(**conditions)
        if "ordering" in data:
            descending = data["ordering"].startswith("-")
            field = self.orderings[data["ordering"].lstrip("-")]
            queryset = queryset.order_by(f"-{field}" if descending else field, "-pk" if descending else "pk")
        return queryset


def filtered(serializer_class: type[ListFilterSerializer], request, queryset: QuerySet) -> QuerySet:
    filters = serializer_class(data=request.query_params)
    filters.is_valid(raise_exception=True)
    return filters.filter(queryset)


class IdConverter:
    """A database id in a URL: digits that fit a 64-bit integer; anything longer is simply not found."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)
