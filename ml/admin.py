from __future__ import annotations

from django.contrib import admin, messages

from ml.models import ModelVersion
from ml.registry import model_version_activate


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "architecture",
        "version",
        "input_size",
        "threshold",
        "parameters",
        "is_active",
        "trained_at",
    )
    list_filter = ("architecture", "is_active")
    search_fields = ("name", "version", "artifact_path")
    readonly_fields = (
        "name",
        "architecture",
        "version",
        "artifact_path",
        "input_size",
        "threshold",
        "parameters",
        "metrics",
        "trained_at",
        "is_active",
        "created_at",
    )
    actions = ["activate"]

    def has_add_permission(self, request) -> bool:
        # Versions are registered by train_model or from shipped artifacts, never typed in.
        return False

    @admin.action(description="Make the selected model the active one")
    def activate(self, request, queryset) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one model to activate.", messages.ERROR)
            return
        model_version = model_version_activate(model_version=queryset.get())
        self.message_user(request, f"{model_version.name} is now the active model.")
