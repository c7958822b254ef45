"""Binary classification metrics in NumPy, threshold choice and matplotlib (Agg) plots."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ml.errors import DataError

if TYPE_CHECKING:
    from ml.data import Sample, UnreadableFile
    from ml.inference import Classifier


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
    probabilities: list[float]
    labels: list[int]
    files: list[str]
    unreadable: list[UnreadableFile] = field(default_factory=list)


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


def roc_curve(y_true: Sequence[int], y_prob: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds); point i predicts positive for score >= thresholds[i]."""
    labels, scores = _as_arrays(y_true, y_prob)
    thresholds = np.concatenate([[np.inf], np.unique(scores)[::-1]])
    n_pos = max(int(labels.sum()), 1)
    n_neg = max(labels.size - int(labels.sum()), 1)
    tpr = np.array([((scores >= t) & (labels == 1)).sum() / n_pos for t in thresholds])
    fpr = np.array([((scores >= t) & (labels == 0)).sum() / n_neg for t in thresholds])
    return fpr, tpr, thresholds


def compute_metrics(
    y_true: Sequence[int], y_prob: Sequence[float], threshold: float = 0.5
) -> EvaluationReport:
    """Every metric at ``threshold`` (score >= threshold means DDD); zero divisions give 0.0."""
    labels, scores = _as_arrays(y_true, y_prob)
    predicted = (scores >= threshold).astype(np.int64)
    tp = int(((predicted == 1) & (labels == 1)).sum())
    tn = int(((predicted == 0) & (labels == 0)).sum())
    fp = int(((predicted == 1) & (labels == 0)).sum())
    fn = int(((predicted == 0) & (labels == 1)).sum())
    recall = _ratio(tp, tp + fn)
    specificity = _ratio(tn, tn + fp)
    precision = _ratio(tp, tp + fp)
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


def choose_threshold(y_true: Sequence[int], y_prob: Sequence[float]) -> float:
    """Threshold maximising Youden's J (sensitivity + specificity - 1, i.e. balanced accuracy).

    Among equally good cut points the midpoint between neighbouring scores is used, so the threshold
    does not sit exactly on one validation score. Falls back to 0.5 without both classes.
    """
    labels, scores = _as_arrays(y_true, y_prob)
    if labels.size == 0 or labels.min() == labels.max():
        return 0.5
    fpr, tpr, thresholds = roc_curve(labels, scores)
    j = tpr - fpr
    best = int(np.argmax(j[1:])) + 1  # skip the +inf point
    below = scores[scores < thresholds[best]]
    cut = (thresholds[best] + below.max()) / 2.0 if below.size else thresholds[best]
    return float(cut)


def evaluate(classifier: Classifier, samples: Sequence[Sample], *, batch_size: int = 16) -> EvaluationResult:
    """Predict every sample with ``classifier`` and report the metrics at its stored threshold.

    Unreadable images are not scored; they are returned in ``EvaluationResult.unreadable``.
    """
    from ml.data import UnreadableFile
    from ml.errors import ImageError
    from ml.preprocessing import load_grayscale

    if not samples:
        raise DataError("no images to evaluate")
    images, labels, files, unreadable = [], [], [], []
    for sample in samples:
        try:
            images.append(load_grayscale(sample.path))
        except ImageError as exc:
            unreadable.append(UnreadableFile(sample.path, str(exc)))
            continue
        labels.append(sample.label)
        files.append(sample.path.name)
    if not images:
        raise DataError(f"none of the {len(samples)} images could be read")
    probabilities = classifier.predict(images, batch_size=batch_size)
    report = compute_metrics(labels, probabilities, classifier.threshold)
    return EvaluationResult(report, probabilities, labels, files, unreadable)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion_matrix(report: EvaluationReport, path: str | Path, *, title: str = "") -> Path:
    plt = _pyplot()
    matrix = np.array(report.confusion_matrix)
    fig, ax = plt.subplots(figsize=(4, 3.6), dpi=100)
    ax.imshow(matrix, cmap="Blues")
    for (row, col), value in np.ndenumerate(matrix):
        colour = "white" if value > matrix.max() / 2 else "black"
        ax.text(col, row, str(value), ha="center", va="center", color=colour, fontsize=14)
    ax.set_xticks([0, 1], ["normal", "DDD"])
    ax.set_yticks([0, 1], ["normal", "DDD"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"threshold {report.threshold:.3f}, n={report.n}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_roc(y_true: Sequence[int], y_prob: Sequence[float], path: str | Path, *, title: str = "") -> Path:
    plt = _pyplot()
    fpr, tpr, _ = roc_curve(y_true, y_prob)
    auc = roc_auc(y_true, y_prob)
    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    ax.plot(fpr, tpr, label=f"AUC {auc:.3f}" if auc is not None else "AUC n/a")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title(title or "ROC")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_training_curves(history: dict[str, list[float]], path: str | Path) -> Path:
    """Loss and AUC per epoch, training vs validation, from a Keras-style history dict."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.4), dpi=100)
    for ax, metric in zip(axes, ("loss", "auc"), strict=True):
        for key, values in history.items():
            if key.endswith(metric) and "disc" not in key and key != "val_ddd_auc":
                ax.plot(range(1, len(values) + 1), values, label=key)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
