"""Loading a saved model: every custom layer registered first, and one error type for a bad file."""

from __future__ import annotations

from pathlib import Path

import keras

# Imported for the layers they register for deserialisation: involution, ordinal thresholds, flip averaging.
import ml.involution  # noqa: F401
import ml.levels.grading  # noqa: F401
import ml.levels.localization  # noqa: F401
from ml.errors import ArtifactError


def load_keras(path: Path) -> keras.Model:
    """A saved Keras model, uncompiled; ArtifactError for a damaged or missing file."""
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for a damaged or missing file
        raise ArtifactError(f"cannot load {path}: {exc}") from exc
