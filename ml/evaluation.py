"""Evaluation of a model on labelled images: image-level metrics in NumPy and the per-level grading and
localisation figures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ml.errors import DataError

if TYPE_CHECKING:
    from ml.data import Sample, UnreadableFile
    from ml.levels.pipeline import LevelAnalyser


@dataclass(frozen=True)
class EvaluationReport:
    accuracy: float
    balanced_accuracy: float
    precision: float
    recall: float
    specificity: float
    f1: float
    roc_auc: float | None
    confusion_matrix: list[list[int]]  # [[tn, fp], [fn, tp]]
    n: int
    threshold: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class EvaluationResult:
    report: EvaluationReport
    probabilities: list[float]  # calibrated P(DDD); a refused image scores as wrong as it can (1 - label)
    labels: list[int]
    files: list[str]
    unreadable: list[UnreadableFile] = field(default_factory=list)
    figures: dict = field(default_factory=dict)  # levels, grading, localization, calibration, not_assessable


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0


def _as_arrays(y_true: Sequence[int], y_prob: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(y_true, dtype=np.int64).ravel()
    scores = np.asarray(y_prob, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"{labels.size} labels but {scores.size} scores")
    if labels.size and not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    return labels, scores


def roc_auc(y_true: Sequence[int], y_prob: Sequence[float]) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties count 1/2); None without both classes."""
    labels, scores = _as_arrays(y_true, y_prob)
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(labels.size, dtype=np.float64)
    start = 0
    while start < labels.size:
        end = start
        while end + 1 < labels.size and sorted_scores[end + 1] == sorted_scores[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2.0 + 1.0
        start = end + 1
    return float((ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def label_metrics(
    y_true: Sequence[int], y_pred: Sequence[int], y_prob: Sequence[float], threshold: float
) -> EvaluationReport:
    """Every image-level figure for labels decided elsewhere (a model's own rule), with the ROC AUC of
    ``y_prob``; ``threshold`` is only reported. Zero divisions give 0.0."""
    labels, scores = _as_arrays(y_true, y_prob)
    predicted = np.asarray(y_pred, dtype=np.int64).ravel()
    tp = int(((predicted == 1) & (labels == 1)).sum())
    tn = int(((predicted == 0) & (labels == 0)).sum())
    fp = int(((predicted == 1) & (labels == 0)).sum())
    fn = int(((predicted == 0) & (labels == 1)).sum())
    recall, specificity, precision = _ratio(tp, tp + fn), _ratio(tn, tn + fp), _ratio(tp, tp + fp)
    has_both = (tp + fn) > 0 and (tn + fp) > 0
    return EvaluationReport(
        accuracy=_ratio(tp + tn, labels.size),
        balanced_accuracy=(recall + specificity) / 2.0 if has_both else (recall if tp + fn else specificity),
        precision=precision,
        recall=recall,
        specificity=specificity,
        f1=_ratio(2 * precision * recall, precision + recall),
        roc_auc=roc_auc(labels, scores),
        confusion_matrix=[[tn, fp], [fn, tp]],
        n=int(labels.size),
        threshold=float(threshold),
    )


def evaluate(
    analyser: LevelAnalyser, samples: Sequence[Sample], *, root: Path | None = None, batch_size: int = 8
) -> EvaluationResult:
    """Analyse every sample and score the image outcome, the grade per level and the disc localisation.

    A refused ("not assessable") image counts as an error in the image figures (its label is taken as
    wrong and its probability as 1 - label). Grading figures cover the images with grades that the gate
    let through; localisation figures every image with annotated boxes under ``root`` (a refused image's
    discs count as not found). Unreadable images are not scored; they are returned in ``unreadable``.
    """
    from ml.data import UnreadableFile
    from ml.errors import ImageError
    from ml.levels.pipeline import NOT_ASSESSABLE
    from ml.preprocessing import load_grayscale

    if not samples:
        raise DataError("no images to evaluate")
    images, kept, unreadable = [], [], []
    for sample in samples:
        try:
            images.append(load_grayscale(sample.path))
        except ImageError as exc:
            unreadable.append(UnreadableFile(sample.path, str(exc)))
            continue
        kept.append(sample)
    if not images:
        raise DataError(f"none of the {len(samples)} images could be read")
    analyses = []
    for start in range(0, len(images), batch_size):
        analyses.extend(analyser.analyse_many(images[start : start + batch_size]))
    labels = [sample.label for sample in kept]
    refused = [a.outcome == NOT_ASSESSABLE for a in analyses]
    predicted = [
        1 - y if r else int(a.outcome == "ddd") for y, r, a in zip(labels, refused, analyses, strict=True)
    ]
    probabilities = [
        float(1 - y) if r else float(a.ddd_probability)
        for y, r, a in zip(labels, refused, analyses, strict=True)
    ]
    report = label_metrics(labels, predicted, probabilities, analyser.card.threshold)
    figures = {"not_assessable": int(sum(refused))}
    assessed = [i for i, r in enumerate(refused) if not r]
    if assessed:
        from ml.levels.calibration import (
            brier_score,
            ece_if_perfectly_calibrated,
            expected_calibration_error,
        )

        p = np.array([probabilities[i] for i in assessed])
        y = np.array([labels[i] for i in assessed])
        figures["calibration"] = {
            "ece": expected_calibration_error(p, y),
            "brier": brier_score(p, y),
            "n": len(assessed),
            # What a perfectly calibrated model would read here: the floor this many images allow.
            "ece_if_perfectly_calibrated": ece_if_perfectly_calibrated(p),
        }
    figures.update(_level_figures(kept, analyses, images, root))
    return EvaluationResult(report, probabilities, labels, [s.path.name for s in kept], unreadable, figures)


def _level_figures(samples: Sequence[Sample], analyses: list, images: list, root: Path | None) -> dict:
    """``levels`` and ``grading`` (samples with Pfirrmann grades), ``localization`` (with boxes)."""
    from ml.levels.discs import LEVEL_NAMES, centre_inside, level_boxes
    from ml.levels.metrics import balanced_accuracy, grading_metrics

    figures = {}
    graded = [
        (s.disc_grades, a) for s, a in zip(samples, analyses, strict=True) if s.disc_grades and a.levels
    ]
    if not graded and any(s.disc_grades for s in samples):
        # Every graded image was refused: the keys are there, with nothing to score.
        figures["levels"] = {name: {"n": 0} for name in LEVEL_NAMES}
        figures["grading"] = {"n": 0}
    if graded:
        true = np.array([grades for grades, _ in graded])
        predicted = np.array([[finding.grade for finding in a.levels] for _, a in graded])
        figures["levels"] = {
            name: grading_metrics(true[:, i], predicted[:, i]) for i, name in enumerate(LEVEL_NAMES)
        }
        figures["grading"] = {
            **grading_metrics(true, predicted),
            "balanced_accuracy": balanced_accuracy(true.ravel() >= 3, predicted.ravel() >= 3),
        }
    if root is not None:
        found = []
        for sample, analysis, image in zip(samples, analyses, images, strict=True):
            boxes = level_boxes(sample, root)
            if boxes is None:
                continue
            if not analysis.levels:
                found.extend([False] * len(LEVEL_NAMES))
                continue
            height, width = image.shape[:2]
            centres = np.array(
                [
                    [(f.box[0] + f.box[2]) / 2 / width, (f.box[1] + f.box[3]) / 2 / height]
                    for f in analysis.levels
                ]
            )
            found.extend(centre_inside(centres, boxes).tolist())
        if found:
            figures["localization"] = {"found_rate": float(np.mean(found)), "n": len(found)}
    return figures
