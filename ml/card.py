"""The model card: one typed object, read in one place, for everything the worker and the commands need.

A shipped model is one artifact folder holding ``localizer.keras`` (finds the discs), ``grader.keras``
(grades each disc) and ``model_card.json``. ``ModelCard.read`` validates the card and gives the pipeline its
typed settings; unknown keys (training facts, figures, attribution) are kept as they are in ``facts``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ml.errors import ArtifactError
from ml.levels.calibration import Calibration
from ml.levels.discs import LEVEL_NAMES, BoxShape
from ml.levels.gate import GateSpec
from ml.preprocessing import PreprocessSpec

CARD_FILE = "model_card.json"
LOCALIZER_FILE = "localizer.keras"
GRADER_FILE = "grader.keras"
TRAINED_MODEL_FILE = "model.keras"  # what training writes for one model
ARCHITECTURES = ("vgg", "invgg")
# The image label follows from the levels: DDD when any level is graded 3 or more (the data's definition).
LABEL_RULE = "ddd when any level's grade is 3 or more"
# What a grader whose card has no calibration yet is evaluated with (the identity); it is never bundled.
NOT_CALIBRATED = Calibration(fitted_on="not fitted")


@dataclass(frozen=True)
class LocalizerSettings:
    preprocess: PreprocessSpec
    box_shape: BoxShape
    gate: GateSpec
    parameters: int


@dataclass(frozen=True)
class GraderSettings:
    preprocess: PreprocessSpec
    crop_size: int
    crop_scale: float
    gradcam_layer: str
    parameters: int


@dataclass(frozen=True)
class ModelCard:
    name: str
    version: str
    architecture: str  # of the grader: "vgg" or "invgg"
    level_names: tuple[str, ...]
    localizer: LocalizerSettings
    grader: GraderSettings
    calibration: Calibration
    # The calibrated image probability a page marks as the decision point. The label itself follows the
    # grades (LABEL_RULE); with a calibrated probability the two mostly agree around 0.5.
    threshold: float = 0.5
    trained_at: str | None = None
    validation_metrics: dict = field(default_factory=dict)
    facts: dict = field(default_factory=dict)

    @property
    def input_size(self) -> int:
        """The localiser's input side in pixels (the whole slice is resized to it)."""
        return self.localizer.preprocess.input_size

    @property
    def parameters(self) -> int:
        return self.localizer.parameters + self.grader.parameters

    @classmethod
    def from_dict(cls, data: dict) -> ModelCard:
        try:
            localizer, grader = data["localizer"], data["grader"]
            card = cls(
                name=str(data["name"]),
                version=str(data["version"]),
                architecture=str(data["architecture"]),
                level_names=tuple(data["level_names"]),
                localizer=LocalizerSettings(
                    preprocess=PreprocessSpec.from_dict(localizer["preprocess"]),
                    box_shape=BoxShape(**localizer["box_shape"]),
                    gate=GateSpec.from_dict(localizer["gate"]),
                    parameters=int(localizer["parameters"]),
                ),
                grader=GraderSettings(
                    preprocess=PreprocessSpec.from_dict(grader["preprocess"]),
                    crop_size=int(grader["crop_size"]),
                    crop_scale=float(grader["crop_scale"]),
                    gradcam_layer=str(grader.get("gradcam_layer", "features")),
                    parameters=int(grader["parameters"]),
                ),
                calibration=Calibration.from_dict(data["calibration"]),
                threshold=float(data.get("threshold", 0.5)),
                trained_at=data.get("trained_at"),
                validation_metrics=dict(data.get("validation_metrics") or {}),
                facts={key: value for key, value in data.items() if key not in _TYPED_KEYS},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"the model card is incomplete or malformed: {exc!r}") from exc
        if card.architecture not in ARCHITECTURES:
            raise ArtifactError(f"unknown architecture {card.architecture!r} (expected vgg or invgg)")
        if card.level_names != LEVEL_NAMES:
            raise ArtifactError(f"the card names levels {card.level_names}, expected {LEVEL_NAMES}")
        if not 0.0 <= card.threshold <= 1.0:
            raise ArtifactError(f"threshold {card.threshold} is not a probability")
        return card

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "architecture": self.architecture,
            "kind": "disc_levels",
            "level_names": list(self.level_names),
            "label_rule": LABEL_RULE,
            "threshold": self.threshold,
            "calibration": self.calibration.to_dict(),
            "localizer": {
                "file": LOCALIZER_FILE,
                "preprocess": self.localizer.preprocess.to_dict(),
                "box_shape": {
                    "width": self.localizer.box_shape.width,
                    "height": self.localizer.box_shape.height,
                },
                "gate": self.localizer.gate.to_dict(),
                "parameters": self.localizer.parameters,
            },
            "grader": {
                "file": GRADER_FILE,
                "preprocess": self.grader.preprocess.to_dict(),
                "crop_size": self.grader.crop_size,
                "crop_scale": self.grader.crop_scale,
                "gradcam_layer": self.grader.gradcam_layer,
                "parameters": self.grader.parameters,
            },
            "parameters": self.parameters,
            "trained_at": self.trained_at,
            "validation_metrics": self.validation_metrics,
            **self.facts,
        }

    @classmethod
    def read(cls, artifact_dir: str | Path) -> ModelCard:
        """The card of an artifact folder; ArtifactError when the folder is not a complete model artifact."""
        folder = Path(artifact_dir)
        missing = [name for name in (CARD_FILE, LOCALIZER_FILE, GRADER_FILE) if not (folder / name).is_file()]
        if missing:
            raise ArtifactError(f"{folder} is not a model artifact: it lacks {', '.join(missing)}")
        try:
            data = json.loads((folder / CARD_FILE).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"unreadable {folder / CARD_FILE}: {exc}") from exc
        if not isinstance(data, dict):
            raise ArtifactError(f"{folder / CARD_FILE} is not a JSON object")
        return cls.from_dict(data)

    def write(self, artifact_dir: str | Path) -> Path:
        path = Path(artifact_dir) / CARD_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path


_TYPED_KEYS = frozenset(
    {
        "name",
        "version",
        "architecture",
        "kind",
        "level_names",
        "label_rule",
        "threshold",
        "calibration",
        "localizer",
        "grader",
        "parameters",
        "trained_at",
        "validation_metrics",
    }
)


def trained_pair_card(
    localizer_dir: Path, grader_dir: Path, *, name: str, version: str, extra: dict | None = None
) -> ModelCard:
    """The card of a localiser and a grader as training wrote them (``python -m ml.train_levels`` folders).
    A grader not calibrated yet gets the identity calibration, marked as not fitted."""
    localizer, grader = (
        read_trained_card(localizer_dir, "disc_localizer"),
        read_trained_card(grader_dir, "disc_grader"),
    )
    return ModelCard.from_dict(
        {
            "name": name,
            "version": version,
            "architecture": grader.get("architecture"),
            "level_names": grader.get("level_names"),
            "calibration": grader.get("calibration", NOT_CALIBRATED.to_dict()),
            "localizer": localizer,
            "grader": grader,
            "trained_at": datetime.fromtimestamp(
                (Path(grader_dir) / TRAINED_MODEL_FILE).stat().st_mtime, UTC
            ).isoformat(timespec="seconds"),
            "training": {"localizer": localizer.get("training"), "grader": grader.get("training")},
            "cross_validation": grader.get("cross_validation"),
            "data_attribution": grader.get("data_attribution"),
            **(extra or {}),
        }
    )


def assemble_artifact(
    *,
    localizer_dir: Path,
    grader_dir: Path,
    output_dir: Path,
    name: str,
    version: str,
    extra: dict | None = None,
) -> ModelCard:
    """One shipped artifact from a trained localiser and grader (``python -m ml.train_levels`` folders):
    their model files copied side by side and one card that holds everything both need."""
    card = trained_pair_card(localizer_dir, grader_dir, name=name, version=version, extra=extra)
    if card.calibration == NOT_CALIBRATED:
        raise ArtifactError(
            f"{grader_dir} has no calibration; train it with --calibration-folds or fit it on validation "
            "with `python -m ml.train_levels evaluate --store-calibration`"
        )
    output_dir = Path(output_dir)
    if output_dir.exists():
        raise ArtifactError(f"{output_dir} already exists; choose a new folder")
    partial = output_dir.with_name(f".{output_dir.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    shutil.copyfile(Path(localizer_dir) / TRAINED_MODEL_FILE, partial / LOCALIZER_FILE)
    shutil.copyfile(Path(grader_dir) / TRAINED_MODEL_FILE, partial / GRADER_FILE)
    card.write(partial)
    partial.rename(output_dir)
    return card


def read_trained_card(folder: Path, kind: str) -> dict:
    """The card of one model as ``python -m ml.train_levels`` wrote it, checked to be of ``kind``."""
    path = Path(folder) / CARD_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"unreadable {path}: {exc}") from exc
    if data.get("kind") != kind or not (Path(folder) / TRAINED_MODEL_FILE).is_file():
        raise ArtifactError(f"{folder} is not a trained {kind} (model.keras and a {kind} card)")
    return data
