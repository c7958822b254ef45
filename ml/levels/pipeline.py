"""End-to-end analysis of one scan: gate, localise, grade each level, image outcome, Grad-CAM heatmap.

Loads one artifact folder (``ml.card``: localiser, grader and their card). Forward passes run as traced
TensorFlow graphs: eager execution dispatches every involution tap as its own operation and is many times
slower. The grader's graph returns the grades and each crop's Grad-CAM together, so one trace serves both;
``warm_up`` traces both graphs so the first scan is not slower than the next.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import cv2
import keras
import numpy as np
import tensorflow as tf

from ml.card import GRADER_FILE, LOCALIZER_FILE, TRAINED_MODEL_FILE, ModelCard, trained_pair_card
from ml.errors import ArtifactError
from ml.levels.discs import LEVEL_NAMES, N_LEVELS, disc_spacing
from ml.levels.gate import check_input
from ml.levels.grading import (
    DEGENERATED_FROM,
    crop_discs,
    degenerated_probability,
    grade_probabilities,
    image_probability,
    level_inputs,
    predicted_grades,
)
from ml.levels.localization import Located, decode_heatmaps, decode_turned, with_turned_copies
from ml.preprocessing import enhance, preprocess
from ml.saving import load_keras

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
    heatmap: np.ndarray | None = None  # Grad-CAM in [0, 1], image-sized; None when not assessable


class LevelAnalyser:
    """A loaded model artifact: ``analyse`` turns a decoded slice into a ``ScanAnalysis``."""

    def __init__(self, card: ModelCard, localizer: keras.Model, grader: keras.Model):
        self.card, self.localizer, self.grader = card, localizer, grader
        self.localizer_spec = card.localizer.preprocess
        self.grader_spec = card.grader.preprocess
        self.crop_size = card.grader.crop_size
        self.crop_scale = card.grader.crop_scale
        self.box_shape = card.localizer.box_shape
        self.gate = card.localizer.gate
        self.calibration = card.calibration

    @classmethod
    def from_artifact(cls, artifact_dir: str | Path) -> LevelAnalyser:
        folder = Path(artifact_dir)
        card = ModelCard.read(folder)
        return cls(card, load_keras(folder / LOCALIZER_FILE), load_keras(folder / GRADER_FILE))

    @classmethod
    def from_trained(cls, localizer_dir: str | Path, grader_dir: str | Path) -> LevelAnalyser:
        """A localiser and a grader as training wrote them, before they are bundled into an artifact."""
        localizer_dir, grader_dir = Path(localizer_dir), Path(grader_dir)
        card = trained_pair_card(localizer_dir, grader_dir, name=grader_dir.name, version="")
        localizer = load_keras(localizer_dir / TRAINED_MODEL_FILE)
        return cls(card, localizer, load_keras(grader_dir / TRAINED_MODEL_FILE))

    @cached_property
    def _locate(self):
        model = self.localizer
        signature = [tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)]
        return tf.function(lambda x: model(x, training=False), input_signature=signature)

    @cached_property
    def _grade(self):
        """(crops, levels) -> (P(grade > k) (B, 4), Grad-CAM of P(degenerated) per crop (B, h, w))."""
        try:
            features_layer = self.grader.get_layer(self.card.grader.gradcam_layer)
        except ValueError as exc:
            raise ArtifactError(f"the grader has no layer {self.card.grader.gradcam_layer!r}") from exc
        model = keras.Model(self.grader.input, [features_layer.output, self.grader.output])
        signature = [
            tf.TensorSpec((None, self.crop_size, self.crop_size, 1), tf.float32),
            tf.TensorSpec((None, N_LEVELS), tf.float32),
        ]

        def grade(crop, level):
            with tf.GradientTape() as tape:
                features, above = model({"crop": crop, "level": level}, training=False)
                # Each crop's score depends on its own features only, so one gradient of the sum gives all.
                score = tf.reduce_sum(above[:, DEGENERATED_FROM - 2])
            # (B, h, w, C) -> (B, C): channel importance = spatially averaged gradient, per crop
            weights = tf.reduce_mean(tape.gradient(score, features), axis=(1, 2))
            return above, tf.nn.relu(tf.einsum("bhwc,bc->bhw", features, weights))

        return tf.function(grade, input_signature=signature)

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

    def grade(self, images: list[np.ndarray], centres: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3, 4) P(grade > k) and (N, 3, h, w) Grad-CAMs for the discs at ``centres`` (fractions)."""
        crops = np.concatenate(
            [
                crop_discs(enhance(image, self.grader_spec), c, self.crop_size, scale=self.crop_scale)
                for image, c in zip(images, centres, strict=True)
            ]
        )
        above, cams = self._grade(crops, level_inputs(len(images)))
        above, cams = np.asarray(above), np.asarray(cams)
        return above.reshape(len(images), N_LEVELS, -1), cams.reshape(len(images), N_LEVELS, *cams.shape[1:])

    def analyse_many(self, images: list[np.ndarray]) -> list[ScanAnalysis]:
        located, others = self.locate_oriented(images)
        above, cams = self.grade(images, [found.centres for found in located])
        return [
            self._finding(image, *per_image)
            for image, per_image in zip(images, zip(located, above, cams, others, strict=True), strict=True)
        ]

    def analyse(self, image: np.ndarray) -> ScanAnalysis:
        return self.analyse_many([image])[0]

    def _finding(
        self,
        image: np.ndarray,
        located: Located,
        above: np.ndarray,
        cams: np.ndarray,
        other_orientations: np.ndarray,
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
        heatmap = _heatmap(cams, located.centres, (height, width), self.crop_scale)
        return ScanAnalysis(outcome, "", round(probability, 4), levels, heatmap)


def _heatmap(cams: np.ndarray, centres: np.ndarray, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Each level's crop Grad-CAM put back where its crop came from (the inverse of ``crop_discs`` without
    jitter), the strongest level setting the scale: (3, h, w) -> (H, W) in [0, 1]."""
    height, width = shape
    centres_px = centres * [width, height]
    side = scale * max(disc_spacing(centres_px), 4.0)
    heatmap = np.zeros((height, width), dtype=np.float32)
    for cam, (cx, cy) in zip(cams, centres_px, strict=True):
        size = cam.shape[0]
        factor = size / side
        # image -> cam grid, as crop_discs maps image -> crop; WARP_INVERSE_MAP applies it the other way
        matrix = np.array([[factor, 0.0, size / 2 - factor * cx], [0.0, factor, size / 2 - factor * cy]])
        placed = cv2.warpAffine(
            cam.astype(np.float32),
            matrix,
            (width, height),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderValue=0.0,
        )
        np.maximum(heatmap, placed, out=heatmap)
    peak = float(heatmap.max())
    return heatmap / peak if peak > 0 else heatmap


def _pixel_box(box: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    cx, cy, w, h = box
    return (
        int(np.clip(round((cx - w / 2) * width), 0, width - 1)),
        int(np.clip(round((cy - h / 2) * height), 0, height - 1)),
        int(np.clip(round((cx + w / 2) * width), 1, width)),
        int(np.clip(round((cy + h / 2) * height), 1, height)),
    )
