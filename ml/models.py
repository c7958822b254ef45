from __future__ import annotations

from django.db import models
from django.db.models import Q


class ModelVersion(models.Model):
    class Architecture(models.TextChoices):
        VGG = "vgg", "VGG"
        INVGG = "invgg", "INVGG (involution VGG)"

    name = models.CharField(max_length=100, unique=True)
    architecture = models.CharField(max_length=10, choices=Architecture.choices)
    version = models.CharField(max_length=50)
    artifact_path = models.CharField(
        max_length=500, help_text="Artifact folder; relative paths are relative to the repository root."
    )
    input_size = models.PositiveIntegerField()
    threshold = models.FloatField(default=0.5)
    parameters = models.PositiveBigIntegerField(null=True, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    trained_at = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"], condition=Q(is_active=True), name="one_active_model_version"
            ),
            models.CheckConstraint(
                condition=Q(architecture__in=["vgg", "invgg"]), name="model_architecture_valid"
            ),
            models.CheckConstraint(
                condition=Q(threshold__gte=0.0, threshold__lte=1.0), name="model_threshold_range"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name}{' (active)' if self.is_active else ''}"
