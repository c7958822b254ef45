"""Ordinal grading metrics and image-level figures with bootstrap confidence intervals (NumPy only)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ml.evaluation import roc_auc

N_GRADES = 5


def confusion_5x5(true: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Rows true grade 1-5, columns predicted grade 1-5."""
    matrix = np.zeros((N_GRADES, N_GRADES), dtype=np.int64)
    np.add.at(matrix, (np.asarray(true) - 1, np.asarray(predicted) - 1), 1)
    return matrix


def linear_weighted_kappa(true: np.ndarray, predicted: np.ndarray) -> float:
    """Cohen's kappa with linear disagreement weights |i - j| / 4 over grades 1-5."""
    observed = confusion_5x5(true, predicted).astype(np.float64)
    total = observed.sum()
    if total == 0:
        return 0.0
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / total
    grades = np.arange(N_GRADES)
    weights = np.abs(grades[:, None] - grades[None, :]) / (N_GRADES - 1)
    disagreement_expected = (weights * expected).sum()
    if disagreement_expected == 0:
        return 1.0
    return float(1.0 - (weights * observed).sum() / disagreement_expected)


def grading_metrics(true: np.ndarray, predicted: np.ndarray) -> dict:
    """accuracy, within_one, weighted_kappa (linear), confusion_matrix (5x5) and n."""
    true, predicted = np.asarray(true).ravel(), np.asarray(predicted).ravel()
    if true.size == 0:
        raise ValueError("no grades to compare")
    if not (np.isin(true, range(1, 6)).all() and np.isin(predicted, range(1, 6)).all()):
        raise ValueError("grades must be integers 1 to 5")
    return {
        "accuracy": float((true == predicted).mean()),
        "within_one": float((np.abs(true - predicted) <= 1).mean()),
        "weighted_kappa": linear_weighted_kappa(true, predicted),
        "confusion_matrix": confusion_5x5(true, predicted).tolist(),
        "n": int(true.size),
    }


def balanced_accuracy(labels: np.ndarray, predicted: np.ndarray) -> float:
    """Mean of sensitivity and specificity (binary)."""
    labels, predicted = np.asarray(labels).astype(bool), np.asarray(predicted).astype(bool)
    recalls = [
        (predicted[labels == value] == value).mean() for value in (True, False) if (labels == value).any()
    ]
    return float(np.mean(recalls))


def bootstrap_ci(
    statistic: Callable[[np.ndarray], float | None],
    n_items: int,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of ``statistic(indices)`` over resamples of the items (None values skipped)."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_resamples):
        value = statistic(rng.integers(0, n_items, n_items))
        if value is not None:
            values.append(value)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def auc_with_ci(labels: np.ndarray, scores: np.ndarray, *, seed: int = 0) -> dict:
    """ROC AUC and its bootstrap 95% interval (resampling images)."""
    labels, scores = np.asarray(labels), np.asarray(scores)
    interval = bootstrap_ci(lambda idx: roc_auc(labels[idx], scores[idx]), len(labels), seed=seed)
    return {"roc_auc": roc_auc(labels, scores), "roc_auc_ci95": [round(v, 4) for v in interval]}
