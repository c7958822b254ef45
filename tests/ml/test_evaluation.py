from __future__ import annotations

import pytest

from ml.evaluation import (
    choose_threshold,
    compute_metrics,
    plot_confusion_matrix,
    plot_roc,
    plot_training_curves,
    roc_auc,
)


def test_metrics_match_hand_computed_values():
    y_true = [1, 1, 1, 1, 0, 0, 0, 1, 0, 1]
    y_prob = [0.9, 0.8, 0.4, 0.7, 0.6, 0.2, 0.1, 0.55, 0.3, 0.35]

    report = compute_metrics(y_true, y_prob, threshold=0.5)

    # predicted positive: 0.9, 0.8, 0.7, 0.6, 0.55 -> tp=4, fp=1; negatives: 0.4, 0.35 are fn; tn=3
    assert report.confusion_matrix == [[3, 1], [2, 4]]
    assert report.n == 10
    assert report.accuracy == pytest.approx(0.7)
    assert report.recall == pytest.approx(4 / 6)
    assert report.specificity == pytest.approx(3 / 4)
    assert report.balanced_accuracy == pytest.approx((4 / 6 + 3 / 4) / 2)
    assert report.precision == pytest.approx(4 / 5)
    assert report.f1 == pytest.approx(2 * 0.8 * (4 / 6) / (0.8 + 4 / 6))
    # positive/negative pairs ranked correctly: 4 + 4 + 3 + 4 + 3 + 3 = 21 of 24
    assert report.roc_auc == pytest.approx(21 / 24)
    assert set(report.to_dict()) >= {
        "accuracy", "balanced_accuracy", "precision", "recall", "specificity", "f1", "roc_auc",
        "confusion_matrix", "n",
    }  # fmt: skip


def test_roc_auc_counts_ties_as_half():
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9]) == pytest.approx(0.875)


def test_roc_auc_is_none_without_both_classes():
    assert roc_auc([1, 1, 1], [0.2, 0.5, 0.9]) is None
    assert compute_metrics([0, 0], [0.1, 0.7]).roc_auc is None


def test_zero_divisions_give_zero():
    report = compute_metrics([1, 1, 0], [0.1, 0.2, 0.3], threshold=0.9)

    assert report.precision == 0.0 and report.recall == 0.0 and report.f1 == 0.0
    assert report.specificity == 1.0
    assert report.confusion_matrix == [[1, 0], [2, 0]]


def test_choose_threshold_separates_separable_scores():
    y_true = [0, 0, 0, 1, 1, 1]
    y_prob = [0.1, 0.3, 0.35, 0.6, 0.7, 0.9]

    threshold = choose_threshold(y_true, y_prob)

    assert threshold == pytest.approx((0.35 + 0.6) / 2)
    assert compute_metrics(y_true, y_prob, threshold).balanced_accuracy == 1.0


def test_plots_are_written_as_png(tmp_path):
    y_true, y_prob = [0, 1, 1, 0], [0.2, 0.8, 0.6, 0.4]
    report = compute_metrics(y_true, y_prob)
    history = {"loss": [0.7, 0.5], "val_loss": [0.8, 0.6], "ddd_auc": [0.6, 0.8], "val_ddd_auc": [0.5, 0.7]}

    paths = [
        plot_confusion_matrix(report, tmp_path / "cm.png"),
        plot_roc(y_true, y_prob, tmp_path / "roc.png"),
        plot_training_curves(history, tmp_path / "curves.png"),
    ]

    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
