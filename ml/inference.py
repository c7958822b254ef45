"""Load a trained artifact folder and predict / explain. Imports TensorFlow: workers and ML commands only."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import cv2
import keras
import numpy as np
import tensorflow as tf

import ml.involution  # noqa: F401  (registers the Involution layer for deserialisation)
from ml.errors import ArtifactError
from ml.preprocessing import AugmentSpec, PreprocessSpec, preprocess, tta_inputs

MODEL_FILE = "model.keras"
CARD_FILE = "model_card.json"


def read_card(artifact_dir: str | Path) -> dict:
    path = Path(artifact_dir) / CARD_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ArtifactError(f"no {CARD_FILE} in {artifact_dir}") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"unreadable {path}: {exc}") from exc


def _main_output(outputs) -> np.ndarray:
    if isinstance(outputs, dict):
        outputs = outputs["ddd"]
    return np.asarray(outputs).reshape(-1)


@dataclass
class Classifier:
    """A loaded artifact. Forward passes and Grad-CAM run as TensorFlow graphs, traced on first use (seconds
    for INVGG): eager execution dispatches every involution tap as its own operation and is 8x slower.
    Not XLA: on the CPU it saved INVGG 15 ms per scan but cost 265 MB more per worker process."""

    model: keras.Model
    card: dict

    @classmethod
    def from_artifact(cls, path: str | Path) -> Classifier:
        artifact_dir = Path(path)
        if not artifact_dir.is_dir():
            raise ArtifactError(f"model artifact folder not found: {path}")
        card = read_card(artifact_dir)
        model_path = artifact_dir / MODEL_FILE
        if not model_path.is_file():
            raise ArtifactError(f"no {MODEL_FILE} in {artifact_dir}")
        try:
            model = keras.saving.load_model(model_path, compile=False)
        except Exception as exc:  # Keras raises many types for a damaged file
            raise ArtifactError(f"cannot load {model_path}: {exc}") from exc
        return cls(model, card)

    @property
    def name(self) -> str:
        return self.card["name"]

    @property
    def architecture(self) -> str:
        return self.card["architecture"]

    @property
    def version(self) -> str:
        return str(self.card.get("version", "1"))

    @property
    def threshold(self) -> float:
        return float(self.card["threshold"])

    @property
    def input_size(self) -> int:
        return int(self.card["input_size"])

    @property
    def spec(self) -> PreprocessSpec:
        return PreprocessSpec.from_dict(self.card["preprocessing"])

    @property
    def tta(self) -> AugmentSpec | None:
        tta = self.card.get("test_time_augmentation") or {}
        if not tta.get("enabled"):
            return None
        return AugmentSpec(tta_variants=tuple(tuple(v) for v in tta["variants"]))

    def predict(self, images: Sequence[np.ndarray], *, batch_size: int = 16) -> list[float]:
        """Probability of DDD per image (raw arrays: any size, 8/16-bit or float, grey/RGB/RGBA)."""
        spec, tta = self.spec, self.tta
        per_image = len(tta.tta_variants) if tta else 1
        probabilities: list[float] = []
        chunk = max(batch_size // per_image, 1)
        for start in range(0, len(images), chunk):
            batch = []
            for image in images[start : start + chunk]:
                batch.extend(tta_inputs(image, spec, tta) if tta else [preprocess(image, spec)])
            scores = _main_output(self._forward(np.stack(batch)))
            probabilities.extend(float(p) for p in scores.reshape(-1, per_image).mean(axis=1))
        return probabilities

    def explain(self, image: np.ndarray) -> np.ndarray:
        """Grad-CAM heatmap in [0, 1] for the DDD output, with the same height and width as ``image``."""
        spec = self.spec
        cam = self._gradcam(preprocess(image, spec)[np.newaxis]).numpy()
        cam = cam / cam.max() if cam.max() > 0 else np.zeros_like(cam)
        return _cam_to_image(cam.astype(np.float32), np.asarray(image).shape[:2], spec)

    def _input_signature(self) -> list[tf.TensorSpec]:
        # (B, H, W, 1) with any batch size, so the graph is traced once
        return [tf.TensorSpec((None, *self.model.input_shape[1:]), tf.float32)]

    @cached_property
    def _forward(self):
        model = self.model
        return tf.function(
            lambda x: model(x, training=False), input_signature=self._input_signature(), jit_compile=False
        )

    @cached_property
    def _gradcam(self):
        layer_name = self.card.get("gradcam_layer", "features")
        try:
            features_layer = self.model.get_layer(layer_name)
        except ValueError as exc:
            raise ArtifactError(f"model has no layer {layer_name!r} for Grad-CAM") from exc
        grad_model = keras.Model(
            self.model.inputs, [features_layer.output, self.model.get_layer("ddd").output]
        )

        def gradcam(x):
            with tf.GradientTape() as tape:
                features, outputs = grad_model(x, training=False)
                score = tf.reshape(outputs, (-1,))[0]
            # (1, h, w, C) -> (C,): channel importance = spatially averaged gradient
            weights = tf.reduce_mean(tape.gradient(score, features), axis=(0, 1, 2))
            # (1, h, w, C) . (C,) -> (h, w)
            return tf.nn.relu(tf.tensordot(features[0], weights, axes=1))

        return tf.function(gradcam, input_signature=self._input_signature(), jit_compile=False)


def _cam_to_image(cam: np.ndarray, shape: tuple[int, int], spec: PreprocessSpec) -> np.ndarray:
    """Place the ROI-sized heatmap back into a zero map of the original image size."""
    from ml.preprocessing import crop_box

    height, width = shape
    left, top, right, bottom = crop_box((height, width), spec.roi)
    heatmap = np.zeros((height, width), dtype=np.float32)
    heatmap[top:bottom, left:right] = cv2.resize(
        cam, (right - left, bottom - top), interpolation=cv2.INTER_CUBIC
    )
    return np.clip(heatmap, 0.0, 1.0)
