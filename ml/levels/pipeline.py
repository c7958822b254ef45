"""End-to-end analysis of one scan: gate, localise, grade each level, image outcome with its probability.

Loads a localiser and a grader artifact. Forward passes run as traced TensorFlow graphs (see
``ml.inference.Classifier`` for why); ``warm_up`` traces them so the first scan is not slower than the next.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import ml.involution  # noqa: F401  (registers the Involution layer for deserialisation)
from ml.errors import ArtifactError
from ml.inference import MODEL_FILE, read_card
from ml.levels.calibration import Calibration
from ml.levels.discs import LEVEL_NAMES, N_LEVELS, BoxShape
from ml.levels.gate import GateSpec, check_input
from ml.levels.grading import (
    CROP_SCALE,
    DEGENERATED_FROM,
    crop_discs,
    degenerated_probability,
    grade_probabilities,
    image_probability,
    level_inputs,
    predicted_grades,
)
from ml.levels.localization import Located, decode_heatmaps, decode_turned, with_turned_copies
from ml.preprocessing import PreprocessSpec, enhance, preprocess

NOT_ASSESSABLE = "not_assessable"


@dataclass(frozen=True)
class LevelFinding:
    level: str
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in image pixels
    grade: int
    grade_probabilities: tuple[float, ...]  # grades 1-5
    degenerated_probability: float


@dataclass(frozen=True)
class ScanAnalysis:
    outcome: str  # "normal", "ddd" or "not_assessable"
    reason: str
    ddd_probability: float | None  # calibrated; None when not assessable
    levels: tuple[LevelFinding, ...]


def _load(path: Path) -> tuple[keras.Model, dict]:
    if not path.is_dir():
        raise ArtifactError(f"model artifact folder not found: {path}")
    card = read_card(path)
    try:
        return keras.saving.load_model(path / MODEL_FILE, compile=False), card
    except Exception as exc:  # Keras raises many types for a damaged or missing file
        raise ArtifactError(f"cannot load {path / MODEL_FILE}: {exc}") from exc


class LevelAnalyser:
    def __init__(self, localizer_dir: str | Path, grader_dir: str | Path):
        self.localizer, self.localizer_card = _load(Path(localizer_dir))
        self.grader, self.grader_card = _load(Path(grader_dir))
        if (
            self.localizer_card.get("kind") != "disc_localizer"
            or self.grader_card.get("kind") != "disc_grader"
        ):
            raise ArtifactError("expected a disc_localizer and a disc_grader artifact")
        self.localizer_spec = PreprocessSpec.from_dict(self.localizer_card["preprocess"])
        self.grader_spec = PreprocessSpec.from_dict(self.grader_card["preprocess"])
        self.crop_size = int(self.grader_card["crop_size"])
        self.crop_scale = float(self.grader_card.get("crop_scale", CROP_SCALE))
        self.box_shape = BoxShape(**self.localizer_card["box_shape"])
        self.gate = GateSpec.from_dict(self.localizer_card["gate"])
        stored = self.grader_card.get("calibration")
        self.calibration = Calibration.from_dict(stored) if stored else Calibration()

    @cached_property
    def _locate(self):
        model = self.localizer
        signature = [tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)]
        return tf.function(lambda x: model(x, training=False), input_signature=signature)

    @cached_property
    def _grade(self):
        model = self.grader
        signature = [
            tf.TensorSpec((None, self.crop_size, self.crop_size, 1), tf.float32),
            tf.TensorSpec((None, N_LEVELS), tf.float32),
        ]
        return tf.function(
            lambda crop, level: model({"crop": crop, "level": level}, training=False),
            input_signature=signature,
        )

    def warm_up(self) -> None:
        """Trace both graphs now (a worker calls this when its process starts)."""
        self.analyse(np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (64, 1)))

    def locate(self, images: list[np.ndarray]) -> list[Located]:
        x = np.stack([preprocess(image, self.localizer_spec) for image in images])
        return [decode_heatmaps(logits) for logits in np.asarray(self._locate(x))]

    def locate_oriented(self, images: list[np.ndarray]) -> tuple[list[Located], np.ndarray]:
        """Localiser output per image and (N, 3) mean confidences on its turned copies."""
        x = np.stack([preprocess(image, self.localizer_spec) for image in images])
        return decode_turned(np.asarray(self._locate(with_turned_copies(x))))

    def grade(self, images: list[np.ndarray], centres: list[np.ndarray]) -> np.ndarray:
        """(N, 3, 4) P(grade > k) for the discs at ``centres`` (fractions) of each image."""
        crops = np.concatenate(
            [
                crop_discs(enhance(image, self.grader_spec), c, self.crop_size, scale=self.crop_scale)
                for image, c in zip(images, centres, strict=True)
            ]
        )
        above = np.asarray(self._grade(crops, level_inputs(len(images))))
        return above.reshape(len(images), N_LEVELS, -1)

    def analyse_many(self, images: list[np.ndarray]) -> list[ScanAnalysis]:
        located, others = self.locate_oriented(images)
        above = self.grade(images, [found.centres for found in located])
        return [
            self._finding(image, found, a, other)
            for image, found, a, other in zip(images, located, above, others, strict=True)
        ]

    def analyse(self, image: np.ndarray) -> ScanAnalysis:
        return self.analyse_many([image])[0]

    def _finding(
        self, image: np.ndarray, located: Located, above: np.ndarray, other_orientations: np.ndarray
    ) -> ScanAnalysis:
        decision = check_input(image, located, self.gate, other_orientations=other_orientations)
        if not decision.assessable:
            return ScanAnalysis(NOT_ASSESSABLE, decision.reason, None, ())
        height, width = np.asarray(image).shape[:2]
        boxes = self.box_shape.boxes(located.centres, (height, width))
        grades = predicted_grades(above)
        probabilities = grade_probabilities(above)
        degenerated = degenerated_probability(above)
        levels = tuple(
            LevelFinding(
                level=name,
                box=_pixel_box(box, width, height),
                grade=int(grade),
                grade_probabilities=tuple(round(float(p), 4) for p in probs),
                degenerated_probability=round(float(p_deg), 4),
            )
            for name, box, grade, probs, p_deg in zip(
                LEVEL_NAMES, boxes, grades, probabilities, degenerated, strict=True
            )
        )
        outcome = "ddd" if (grades >= DEGENERATED_FROM).any() else "normal"
        probability = float(self.calibration.apply(image_probability(degenerated[np.newaxis]))[0])
        return ScanAnalysis(outcome, "", round(probability, 4), levels)


def _pixel_box(box: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    cx, cy, w, h = box
    return (
        int(np.clip(round((cx - w / 2) * width), 0, width - 1)),
        int(np.clip(round((cy - h / 2) * height), 0, height - 1)),
        int(np.clip(round((cx + w / 2) * width), 1, width)),
        int(np.clip(round((cy + h / 2) * height), 1, height)),
    )
