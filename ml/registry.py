"""The Django edge of the classifier: ModelVersion rows for artifact folders on disk."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils.dateparse import parse_datetime

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


def read_model_card(artifact_dir: Path) -> dict:
    card_path = artifact_dir / "model_card.json"
    if not (artifact_dir / "model.keras").is_file() or not card_path.is_file():
        raise RegistryError(
            f"{artifact_dir} is not a model artifact: it needs model.keras and model_card.json."
        )
    try:
        card = json.loads(card_path.read_text())
    except json.JSONDecodeError as exc:
        raise RegistryError(f"{card_path} is not valid JSON: {exc}") from exc
    missing = [key for key in ("name", "architecture", "input_size", "threshold") if key not in card]
    if missing:
        raise RegistryError(f"{card_path} lacks {', '.join(missing)}.")
    return card


def _validation_metrics(artifact_dir: Path, card: dict) -> dict:
    metrics_path = artifact_dir / "metrics.json"
    if metrics_path.is_file():
        return json.loads(metrics_path.read_text())
    return card.get("validation_metrics") or {}


@transaction.atomic
def model_version_register(*, artifact_dir: Path, activate: bool = False) -> ModelVersion:
    """Create or refresh the ModelVersion for an artifact folder; the card's name is its identity."""
    card = read_model_card(artifact_dir)
    trained_at = card.get("trained_at") or card.get("created_at")
    model_version, _ = ModelVersion.objects.update_or_create(
        name=card["name"],
        defaults={
            "architecture": card["architecture"],
            "version": str(card.get("version", "1")),
            "artifact_path": _stored_path(artifact_dir),
            "input_size": int(card["input_size"]),
            "threshold": float(card["threshold"]),
            "parameters": card.get("parameters"),
            "metrics": _validation_metrics(artifact_dir, card),
            "trained_at": parse_datetime(trained_at) if isinstance(trained_at, str) else None,
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
    is gone, activate the shipped INVGG (the last by name, so the newest version when several ship)."""
    registered = [
        model_version_register(artifact_dir=card.parent)
        for card in sorted(SHIPPED_ARTIFACTS_DIR.glob("*/model_card.json"))
        # A folder training is still writing is hidden (".name.partial") until it is complete.
        if not card.parent.name.startswith(".") and (card.parent / "model.keras").is_file()
    ]
    active = ModelVersion.objects.filter(is_active=True).first()
    if active is not None and not (artifact_dir_for(active) / "model.keras").is_file():
        # e.g. a shipped version replaced by its successor: nothing could be classified with it
        logger.warning("Active model %s has no model file any more; activating a shipped one", active.name)
        active = None
    if active is None:
        preferred = [mv for mv in registered if mv.architecture == DEFAULT_ACTIVE_ARCHITECTURE]
        if preferred:
            model_version_activate(model_version=preferred[-1])
    return registered


def register_shipped_models_after_migrate(sender, using="default", **kwargs) -> None:
    if using == "default":
        register_shipped_models()


_loaded_classifiers: dict[int, tuple[tuple[str, int], object]] = {}


def load_classifier(model_version: ModelVersion):
    """The classifier for a version, loaded once per process: a worker child loads it on its first task,
    after the fork, and keeps it. A version whose model file changed on disk is loaded again."""
    from ml.inference import MODEL_FILE, Classifier

    artifact_dir = artifact_dir_for(model_version)
    try:
        identity = (str(artifact_dir), (artifact_dir / MODEL_FILE).stat().st_mtime_ns)
    except OSError:
        identity = (str(artifact_dir), 0)
    cached = _loaded_classifiers.get(model_version.pk)
    if cached is None or cached[0] != identity:
        started = time.perf_counter()
        _loaded_classifiers[model_version.pk] = (identity, Classifier.from_artifact(artifact_dir))
        logger.info(
            "Loaded model %s in process %s in %.1f s",
            model_version.name,
            os.getpid(),
            time.perf_counter() - started,
        )
    return _loaded_classifiers[model_version.pk][1]
