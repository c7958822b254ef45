"""Ordinal grade decoding, grading metrics, calibration and the input gate's rules."""

from __future__ import annotations

import numpy as np
import pytest

from ml.levels.calibration import (
    Calibration,
    brier_score,
    cross_validated,
    ece_if_perfectly_calibrated,
    expected_calibration_error,
)
from ml.levels.gate import GateSpec, check_input
from ml.levels.grading import (
    degenerated_probability,
    grade_probabilities,
    image_probability,
    image_probability_independent_levels,
    ordinal_targets,
    predicted_grades,
)
from ml.levels.localization import Located
from ml.levels.metrics import auc_with_ci, balanced_accuracy, grading_metrics, linear_weighted_kappa

GATE = GateSpec(
    min_confidence=0.2,
    gap_ratio=(0.5, 2.0),
    spacing=(0.05, 0.3),
    max_lateral_step=1.0,
    orientation_margin=0.05,
)
SPINE = np.array([[0.55, 0.50], [0.57, 0.62], [0.60, 0.74]])


def _scan() -> np.ndarray:
    return np.random.default_rng(0).random((384, 384)).astype(np.float32)


def test_ordinal_targets_count_the_thresholds_below_the_grade():
    assert ordinal_targets(np.array([1, 3, 5])).tolist() == [[0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]]


def test_grade_probabilities_are_a_distribution_even_for_unordered_thresholds():
    above = np.array([[0.9, 0.7, 0.2, 0.05], [0.4, 0.6, 0.1, 0.3]])

    probabilities = grade_probabilities(above)

    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    assert (probabilities >= 0).all()
    np.testing.assert_allclose(probabilities[0], [0.1, 0.2, 0.5, 0.15, 0.05])


def test_predicted_grade_degenerated_and_image_probabilities():
    above = np.array([[0.95, 0.2, 0.1, 0.0], [0.99, 0.9, 0.7, 0.2], [0.1, 0.05, 0.0, 0.0]])

    assert predicted_grades(above).tolist() == [2, 4, 1]
    np.testing.assert_allclose(degenerated_probability(above), [0.2, 0.9, 0.05])
    # The most degenerated level scores the image; the independent-levels rule would say 0.6.
    np.testing.assert_allclose(image_probability(np.array([[0.2, 0.5, 0.0]])), [0.5])
    np.testing.assert_allclose(image_probability_independent_levels(np.array([[0.2, 0.5, 0.0]])), [0.6])


def test_two_near_misses_add_up_to_the_next_grade():
    # No threshold past grade 2 reaches one half, but together they put the expected grade at 2.8.
    above = np.array([[0.99, 0.45, 0.36, 0.0], [0.99, 0.45, 0.0, 0.0]])

    assert predicted_grades(above).tolist() == [3, 2]


def test_grading_metrics_on_a_known_example():
    true = np.array([1, 2, 2, 3, 4, 5])
    predicted = np.array([1, 2, 3, 3, 2, 5])

    metrics = grading_metrics(true, predicted)

    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["within_one"] == pytest.approx(5 / 6)
    assert metrics["confusion_matrix"][3] == [0, 1, 0, 0, 0]
    assert metrics["n"] == 6
    assert linear_weighted_kappa(true, true) == pytest.approx(1.0)
    # by hand: observed weighted disagreement (1/4 + 2/4) / 6, expected 52 / 36 / 4 from the marginals
    assert metrics["weighted_kappa"] == pytest.approx(1 - 0.125 / (52 / 144))


def test_grading_metrics_refuse_grades_outside_one_to_five():
    with pytest.raises(ValueError, match="1 to 5"):
        grading_metrics(np.array([0, 2]), np.array([1, 2]))


def test_balanced_accuracy_and_auc_interval():
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.7, 0.6, 0.8, 0.9, 0.95, 0.3])

    assert balanced_accuracy(labels, scores > 0.5) == pytest.approx((2 / 3 + 4 / 5) / 2)
    figures = auc_with_ci(labels, scores)
    low, high = figures["roc_auc_ci95"]
    assert low <= figures["roc_auc"] <= high


def test_platt_calibration_recovers_a_known_distortion():
    rng = np.random.default_rng(1)
    true_p = rng.uniform(0.02, 0.98, 4000)
    labels = (rng.random(4000) < true_p).astype(int)
    logit = np.log(true_p / (1 - true_p))
    overconfident = 1 / (1 + np.exp(-(3 * logit + 1)))

    calibration = Calibration.fit(overconfident, labels)

    assert calibration.slope == pytest.approx(1 / 3, abs=0.05)
    assert calibration.intercept == pytest.approx(-1 / 3, abs=0.1)
    before = expected_calibration_error(overconfident, labels)
    after = expected_calibration_error(calibration.apply(overconfident), labels)
    assert after < 0.03 < before
    assert brier_score(calibration.apply(overconfident), labels) < brier_score(overconfident, labels)
    assert Calibration.from_dict(calibration.to_dict()) == calibration


def test_cross_validated_calibration_never_scores_a_patient_it_was_fitted_on():
    p = np.array([0.9, 0.8, 0.2, 0.1] * 10)
    labels = np.array([1, 1, 0, 0] * 10)
    groups = np.repeat(np.arange(20), 2)

    calibrated = cross_validated(p, labels, groups, folds=5)

    assert calibrated.shape == p.shape
    assert (calibrated[labels == 1] > 0.5).all() and (calibrated[labels == 0] < 0.5).all()


def test_calibration_needs_both_classes():
    with pytest.raises(ValueError, match="both classes"):
        Calibration.fit(np.array([0.2, 0.3]), np.array([1, 1]))


def test_ece_of_a_hand_made_example():
    p = np.array([0.05, 0.05, 0.95, 0.95])
    labels = np.array([0, 1, 1, 1])

    assert expected_calibration_error(p, labels) == pytest.approx(0.5 * 0.45 + 0.5 * 0.05)


def test_the_ece_floor_of_a_perfect_model_shrinks_as_the_set_grows():
    """Labels drawn from the probabilities themselves: a perfectly calibrated model still reads an ECE
    above zero, the more so the fewer the images."""
    rng = np.random.default_rng(1)
    small, large = rng.uniform(0.02, 0.98, 80), rng.uniform(0.02, 0.98, 8000)
    floor_small = ece_if_perfectly_calibrated(small, draws=300)
    floor_large = ece_if_perfectly_calibrated(large, draws=50)
    assert 0.04 < floor_small["mean"] < floor_small["p95"] < 0.2
    assert floor_large["mean"] < 0.015
    assert ece_if_perfectly_calibrated(small, draws=300) == floor_small  # seeded: the same each time


def test_gate_accepts_a_plausible_spine():
    assert check_input(_scan(), Located(SPINE, np.full(3, 0.6)), GATE).assessable


@pytest.mark.parametrize(
    ("image", "centres", "confidence", "reason"),
    [
        (np.full((384, 384), 0.4, dtype=np.float32), SPINE, np.full(3, 0.6), "no contrast"),
        (None, SPINE, np.array([0.6, 0.05, 0.6]), "L4-L5"),
        (None, SPINE[::-1], np.full(3, 0.6), "upside down"),
        (None, SPINE[:, ::-1], np.full(3, 0.6), "vertical column"),
        (None, np.array([[0.5, 0.5], [0.5, 0.52], [0.5, 0.7]]), np.full(3, 0.6), "spacing"),
        (None, np.array([[0.5, 0.1], [0.5, 0.5], [0.5, 0.9]]), np.full(3, 0.6), "large"),
    ],
)
def test_gate_refuses_with_a_reason(image, centres, confidence, reason):
    decision = check_input(_scan() if image is None else image, Located(centres, confidence), GATE)

    assert not decision.assessable
    assert reason in decision.reason


def test_gate_refuses_a_slice_recognised_better_turned():
    located = Located(SPINE, np.full(3, 0.6))

    assert check_input(_scan(), located, GATE, other_orientations=[0.3, 0.64, 0.2]).assessable
    decision = check_input(_scan(), located, GATE, other_orientations=[0.9, 0.2, 0.2])
    assert not decision.assessable and "upside down" in decision.reason


def test_gate_spec_fitted_on_training_geometry_accepts_it():
    centres = [SPINE * 384, (SPINE + [0.05, -0.1]) * 384]
    spec = GateSpec.fit(
        np.array([[0.5, 0.6, 0.7], [0.4, 0.8, 0.9]]), centres, [384, 384], np.array([-0.3, 0.02])
    )

    assert spec.min_confidence < 0.4
    assert 0.0 < spec.orientation_margin <= 0.02
    for c in centres:
        assert check_input(_scan(), Located(c / 384, np.full(3, 0.5)), spec).assessable
    assert GateSpec.from_dict(spec.to_dict()) == spec
