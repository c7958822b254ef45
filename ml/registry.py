"""The Django edge of the classifier: ModelVersion rows for artifact folders on disk."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils.dateparse import parse_datetime

from ml.card import CARD_FILE, GRADER_FILE, LOCALIZER_FILE, ModelCard
from ml.errors import ArtifactError, MLError
from ml.models import ModelVersion

logger = logging.getLogger(__name__)

SHIPPED_ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"
DEFAULT_ACTIVE_ARCHITECTURE = "invgg"


class RegistryError(ValueError):
    pass


def artifact_dir_for(model_version: ModelVersion) -> Path:
    path = Path(model_version.artifact_path)
    return path if path.is_absolute() else Path(settings.BASE_DIR) / path


def _stored_path(artifact_dir: Path) -> str:
    """Store paths inside the repository relative to it, so the database survives a move of the checkout."""
    resolved = artifact_dir.resolve()
    try:
        return str(resolved.relative_to(Path(settings.BASE_DIR).resolve()))
    except ValueError:
        return str(resolved)


def read_model_card(artifact_dir: Path) -> ModelCard:
    try:
        return ModelCard.read(artifact_dir)
    except ArtifactError as exc:
        raise RegistryError(str(exc)) from exc


@transaction.atomic
def model_version_register(*, artifact_dir: Path, activate: bool = False) -> ModelVersion:
    """Create or refresh the ModelVersion for an artifact folder; the card's name is its identity."""
    card = read_model_card(artifact_dir)
    model_version, _ = ModelVersion.objects.update_or_create(
        name=card.name,
        defaults={
            "architecture": card.architecture,
            "version": card.version,
            "artifact_path": _stored_path(artifact_dir),
            "input_size": card.input_size,
            "threshold": card.threshold,
            "parameters": card.parameters,
            "metrics": card.validation_metrics,
            "trained_at": parse_datetime(card.trained_at) if card.trained_at else None,
        },
    )
    if activate:
        model_version = model_version_activate(model_version=model_version)
    return model_version


@transaction.atomic
def model_version_activate(*, model_version: ModelVersion) -> ModelVersion:
    ModelVersion.objects.filter(is_active=True).exclude(pk=model_version.pk).update(is_active=False)
    ModelVersion.objects.filter(pk=model_version.pk).update(is_active=True)
    model_version.refresh_from_db()
    return model_version


def register_shipped_models() -> list[ModelVersion]:
    """Register every artifact under ml/artifacts/. If no model is active, or the active one's model file
    is gone, activate the shipped INVGG (the last by name, so the newest version when several ship), or the
    last shipped model of another architecture when no INVGG ships."""
    registered = [
        model_version_register(artifact_dir=card.parent)
        for card in sorted(SHIPPED_ARTIFACTS_DIR.glob(f"*/{CARD_FILE}"))
        # A folder training is still writing is hidden (".name.partial") until it is complete.
        if not card.parent.name.startswith(".") and _is_artifact(card.parent)
    ]
    active = ModelVersion.objects.filter(is_active=True).first()
    if active is not None and not _is_artifact(artifact_dir_for(active)):
        # e.g. a shipped version replaced by its successor: nothing could be classified with it
        logger.warning("Active model %s has no model file any more; activating a shipped one", active.name)
        active = None
    if active is None and registered:
        preferred = [mv for mv in registered if mv.architecture == DEFAULT_ACTIVE_ARCHITECTURE]
        model_version_activate(model_version=(preferred or registered)[-1])
    return registered


def _is_artifact(folder: Path) -> bool:
    return all((folder / name).is_file() for name in (CARD_FILE, LOCALIZER_FILE, GRADER_FILE))


def register_shipped_models_after_migrate(sender, using="default", **kwargs) -> None:
    if using == "default":
        register_shipped_models()


_loaded_analysers: dict[int, tuple[tuple[str, int], object]] = {}


def load_analyser(model_version: ModelVersion):
    """The ``LevelAnalyser`` of a version, loaded and traced once per process: a worker child loads it at
    its start (``warm_up_active_model``) or on its first task, after the fork, and keeps it. A version whose
    card changed on disk (a new artifact in the same folder) is loaded again."""
    from ml.levels.pipeline import LevelAnalyser

    artifact_dir = artifact_dir_for(model_version)
    try:
        identity = (str(artifact_dir), (artifact_dir / CARD_FILE).stat().st_mtime_ns)
    except OSError:
        identity = (str(artifact_dir), 0)
    cached = _loaded_analysers.get(model_version.pk)
    if cached is None or cached[0] != identity:
        started = time.perf_counter()
        analyser = LevelAnalyser.from_artifact(artifact_dir)
        analyser.warm_up()
        _loaded_analysers[model_version.pk] = (identity, analyser)
        logger.info(
            "Loaded and traced model %s in process %s in %.1f s",
            model_version.name,
            os.getpid(),
            time.perf_counter() - started,
        )
    return _loaded_analysers[model_version.pk][1]


def warm_up(model_version: ModelVersion) -> None:
    """Load and trace a model now (a worker process at its start), so that the first upload is not slower
    than the next. A missing or broken artifact is logged here; the task reports it per scan."""
    try:
        load_analyser(model_version)
    except MLError as exc:
        logger.warning("Could not load model %s at start: %s", model_version.name, exc)
