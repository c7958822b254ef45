"""Worker-side analysis of a stored scan. Keras is imported on the first call, inside the worker process
that runs the task, never in the web process or in the worker's parent before it forks."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from diagnosis.imaging import ImageRejected, load_model_view
from diagnosis.models import Scan
from ml.errors import MLError
from ml.models import ModelVersion
from ml.registry import load_analyser


class InferenceError(Exception):
    """The scan cannot be analysed; retrying will not help."""


@dataclass(frozen=True)
class Outcome:
    label: str  # "normal", "ddd" or "not_assessable"
    reason: str  # why it is not assessable, else ""
    probability: float | None  # calibrated probability of DDD; None when not assessable
    levels: tuple  # ml.levels.pipeline.LevelFinding per disc level; empty when not assessable
    input_sha256: str  # of the stored file the model read (the re-encoded or de-identified copy)
    preprocess_ms: float  # decoding the stored file into the grey view the model sees
    inference_ms: float  # gate, localiser, grader and Grad-CAM
    heatmap_png: bytes | None  # Grad-CAM overlay, the same size as the scan; None when not assessable


def classify_scan(*, scan: Scan, model_version: ModelVersion) -> Outcome:
    from ml.explain import overlay_png

    try:
        with scan.file.open("rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise InferenceError("the stored scan file is missing") from None
    try:
        analyser = load_analyser(model_version)
    except MLError as exc:
        raise InferenceError(f"the model {model_version.name} cannot be loaded: {exc}") from None
    started = time.perf_counter()
    try:
        view = load_model_view(data)
    except ImageRejected as exc:
        raise InferenceError(f"the stored scan cannot be read: {exc}") from None
    decoded = time.perf_counter()
    try:
        analysis = analyser.analyse(view)
    except MLError as exc:
        raise InferenceError(f"the scan cannot be analysed: {exc}") from None
    analysed = time.perf_counter()
    return Outcome(
        label=analysis.outcome,
        reason=analysis.reason,
        probability=analysis.ddd_probability,
        levels=analysis.levels,
        input_sha256=hashlib.sha256(data).hexdigest(),
        preprocess_ms=(decoded - started) * 1000,
        inference_ms=(analysed - decoded) * 1000,
        heatmap_png=overlay_png(view, analysis.heatmap) if analysis.heatmap is not None else None,
    )
