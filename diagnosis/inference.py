"""Worker-side classification of a stored scan. Keras is imported on the first call, inside the worker
process that runs the task, never in the web process or in the worker's parent before it forks."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from diagnosis.imaging import ImageRejected, load_model_view
from diagnosis.models import Prediction, Scan
from ml.errors import MLError
from ml.models import ModelVersion
from ml.registry import load_classifier


class InferenceError(Exception):
    """The scan cannot be classified; retrying will not help."""


@dataclass(frozen=True)
class Outcome:
    label: str
    probability: float  # of DDD
    input_sha256: str  # of the stored file the model read (the re-encoded or de-identified copy)
    preprocess_ms: float  # decoding the stored file into the grey view the model sees
    inference_ms: float  # Classifier.predict: the shared `preprocess` (and test-time variants), the model
    heatmap_png: bytes  # Grad-CAM overlay, the same size as the scan


def classify_scan(*, scan: Scan, model_version: ModelVersion) -> Outcome:
    from ml.explain import overlay_png

    try:
        with scan.file.open("rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise InferenceError("the stored scan file is missing") from None
    try:
        classifier = load_classifier(model_version)
    except MLError as exc:
        raise InferenceError(f"the model {model_version.name} cannot be loaded: {exc}") from None
    started = time.perf_counter()
    try:
        view = load_model_view(data)
    except ImageRejected as exc:
        raise InferenceError(f"the stored scan cannot be read: {exc}") from None
    decoded = time.perf_counter()
    try:
        probability = classifier.predict([view])[0]
        inferred = time.perf_counter()
        heatmap = classifier.explain(view)
    except MLError as exc:
        raise InferenceError(f"the scan cannot be classified: {exc}") from None
    label = Prediction.Label.DDD if probability >= model_version.threshold else Prediction.Label.NORMAL
    return Outcome(
        label=label,
        probability=probability,
        input_sha256=hashlib.sha256(data).hexdigest(),
        preprocess_ms=(decoded - started) * 1000,
        inference_ms=(inferred - decoded) * 1000,
        heatmap_png=overlay_png(view, heatmap),
    )
