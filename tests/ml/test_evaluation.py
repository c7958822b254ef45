from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from ml.evaluation import label_metrics, roc_auc

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sudirman_sample"


def test_metrics_match_hand_computed_values():
    y_true = [1, 1, 1, 1, 0, 0, 0, 1, 0, 1]
    y_prob = [0.9, 0.8, 0.4, 0.7, 0.6, 0.2, 0.1, 0.55, 0.3, 0.35]

    report = label_metrics(y_true, [int(p >= 0.5) for p in y_prob], y_prob, threshold=0.5)

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
    assert label_metrics([0, 0], [0, 1], [0.1, 0.7], threshold=0.5).roc_auc is None


def test_zero_divisions_give_zero():
    report = label_metrics([1, 1, 0], [0, 0, 0], [0.1, 0.2, 0.3], threshold=0.9)

    assert report.precision == 0.0 and report.recall == 0.0 and report.f1 == 0.0
    assert report.specificity == 1.0
    assert report.confusion_matrix == [[1, 0], [2, 0]]


def test_label_metrics_score_labels_decided_elsewhere():
    y_true = [1, 1, 1, 0, 0]
    y_pred = [1, 1, 0, 1, 0]
    y_prob = [0.9, 0.3, 0.2, 0.6, 0.1]

    report = label_metrics(y_true, y_pred, y_prob, threshold=0.5)

    # the labels, not the scores at 0.5, make the matrix: tp=2, fn=1, fp=1, tn=1
    assert report.confusion_matrix == [[1, 1], [1, 2]]
    assert report.recall == pytest.approx(2 / 3) and report.specificity == pytest.approx(1 / 2)
    assert report.balanced_accuracy == pytest.approx((2 / 3 + 1 / 2) / 2)
    # the AUC still ranks the scores: positive/negative pairs 2 + 1 + 1 of 6
    assert report.roc_auc == pytest.approx(4 / 6)
    assert report.threshold == 0.5


class _AnnotationAnalyser:
    """Finds every annotated disc and grades it right, except that it refuses the images in ``refuse`` and
    calls every L5-S1 grade one higher (capped at 5): an analyser whose figures are known in advance."""

    def __init__(self, refuse: set[str]):
        self.refuse, self.card, self.queue = refuse, SimpleNamespace(threshold=0.5), []

    def analyse_many(self, images):
        return [self.queue.pop(0) for _ in images]

    def expect(self, sample, root):
        from ml.levels.discs import level_boxes
        from ml.levels.pipeline import NOT_ASSESSABLE, LevelFinding, ScanAnalysis
        from ml.preprocessing import load_grayscale

        if sample.path.name in self.refuse:
            self.queue.append(ScanAnalysis(NOT_ASSESSABLE, "no spine", None, ()))
            return
        height, width = load_grayscale(sample.path).shape[:2]
        grades = [*sample.disc_grades[:2], min(sample.disc_grades[2] + 1, 5)]
        levels = tuple(
            LevelFinding(
                name,
                (
                    int((cx - w / 2) * width),
                    int((cy - h / 2) * height),
                    int((cx + w / 2) * width),
                    int((cy + h / 2) * height),
                ),
                grade,
                (0.2,) * 5,
                0.9 if grade >= 3 else 0.1,
            )
            for name, (cx, cy, w, h), grade in zip(
                ("L3-L4", "L4-L5", "L5-S1"), level_boxes(sample, root), grades, strict=True
            )
        )
        outcome = "ddd" if max(grades) >= 3 else "normal"
        self.queue.append(ScanAnalysis(outcome, "", 0.9 if outcome == "ddd" else 0.1, levels))


def test_evaluate_scores_levels_localisation_and_refusals():
    from ml.data import load_folder
    from ml.evaluation import evaluate

    dataset = load_folder(SAMPLE)
    refused = dataset.samples[0]
    analyser = _AnnotationAnalyser({refused.path.name})
    for sample in dataset.samples:
        analyser.expect(sample, dataset.root)

    result = evaluate(analyser, dataset.samples, root=dataset.root)

    figures, n = result.figures, len(dataset.samples)
    assert figures["not_assessable"] == 1
    # the refused image counts as an error: its label is taken as wrong, its probability as 1 - label
    assert result.report.n == n and result.report.accuracy < 1.0
    assert result.probabilities[0] == 1 - refused.label
    assert figures["localization"] == {"found_rate": pytest.approx((n - 1) / n), "n": 3 * n}
    assert figures["levels"]["L3-L4"]["accuracy"] == 1.0 and figures["levels"]["L3-L4"]["n"] == n - 1
    assert figures["levels"]["L4-L5"]["weighted_kappa"] == pytest.approx(1.0)
    l5s1 = figures["levels"]["L5-S1"]
    assert l5s1["within_one"] == 1.0 and l5s1["accuracy"] < 1.0
    assert len(l5s1["confusion_matrix"]) == 5 and all(len(row) == 5 for row in l5s1["confusion_matrix"])
    assert figures["grading"]["n"] == 3 * (n - 1)
    assert 0.0 <= figures["grading"]["balanced_accuracy"] <= 1.0
    assert set(figures["calibration"]) >= {"ece", "brier"}


def test_evaluate_keeps_the_level_keys_when_every_image_is_refused():
    from ml.data import load_folder
    from ml.evaluation import evaluate

    dataset = load_folder(SAMPLE)
    analyser = _AnnotationAnalyser({sample.path.name for sample in dataset.samples})
    for sample in dataset.samples:
        analyser.expect(sample, dataset.root)

    figures = evaluate(analyser, dataset.samples, root=dataset.root).figures

    assert figures["not_assessable"] == len(dataset.samples) and "calibration" not in figures
    assert figures["levels"]["L4-L5"] == {"n": 0} and figures["grading"] == {"n": 0}
    assert figures["localization"]["found_rate"] == 0.0
