"""Calibration of the image-level DDD probability: Platt scaling on the logit, and its error measures.

``Calibration`` maps p to sigmoid(a * logit(p) + b): ``1 / a`` is the temperature, ``b`` shifts the prior.
``cross_validated`` gives honest out-of-fold calibrated probabilities for the set it is fitted on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

EPSILON = 1e-6


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPSILON, 1 - EPSILON)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class Calibration:
    slope: float = 1.0
    intercept: float = 0.0
    fitted_on: str = ""  # what it was fitted on, for the model card

    def apply(self, p: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.slope * logit(p) + self.intercept)))

    def to_dict(self) -> dict:
        data = {"method": "platt", **asdict(self)}
        if not self.fitted_on:
            del data["fitted_on"]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Calibration:
        return cls(float(data["slope"]), float(data["intercept"]), str(data.get("fitted_on", "")))

    @classmethod
    def fit(cls, p: np.ndarray, labels: np.ndarray, *, l2: float = 1e-3, steps: int = 50) -> Calibration:
        """Damped Newton's method on the log loss (a tiny L2 term keeps separable data finite)."""
        x = logit(p)
        y = np.asarray(labels, dtype=np.float64)
        if x.size == 0 or y.min() == y.max():
            raise ValueError("calibration needs probabilities for both classes")
        features = np.stack([x, np.ones_like(x)], axis=1)

        def loss(theta: np.ndarray) -> float:
            z = features @ theta
            return float(np.sum(np.logaddexp(0.0, z) - y * z) + l2 / 2 * theta @ theta)

        theta = np.array([1.0, 0.0])
        for _ in range(steps):
            q = 1.0 / (1.0 + np.exp(-np.clip(features @ theta, -50, 50)))
            gradient = features.T @ (q - y) + l2 * theta
            hessian = (features.T * (q * (1 - q))) @ features + l2 * np.eye(2)
            step = np.linalg.solve(hessian, gradient)
            # A full Newton step can overshoot on strongly over-confident inputs: halve until it helps.
            scale = 1.0
            while loss(theta - scale * step) > loss(theta) and scale > 1e-4:
                scale /= 2
            theta -= scale * step
            if np.abs(scale * step).max() < 1e-8:
                break
        return cls(round(float(theta[0]), 6), round(float(theta[1]), 6))


def patient_folds(groups: np.ndarray, folds: int, *, seed: int = 0) -> np.ndarray:
    """Fold number (0 to folds - 1) of each item, every group (patient) wholly inside one fold."""
    unique = np.unique(groups)
    fold_of = dict(
        zip(np.random.default_rng(seed).permutation(unique), np.arange(len(unique)) % folds, strict=True)
    )
    return np.array([fold_of[g] for g in groups])


def cross_validated(p: np.ndarray, labels: np.ndarray, groups: np.ndarray, *, folds: int = 5, seed: int = 0):
    """Out-of-fold calibrated probabilities, folds by group (patient), each fold calibrated by the others."""
    assigned = patient_folds(groups, folds, seed=seed)
    calibrated = np.empty(len(p))
    for fold in range(folds):
        held = assigned == fold
        calibrated[held] = Calibration.fit(p[~held], labels[~held]).apply(p[held])
    return calibrated


def expected_calibration_error(p: np.ndarray, labels: np.ndarray, *, bins: int = 10) -> float:
    """Weighted mean |accuracy - confidence| over equal-width probability bins of P(positive)."""
    p, labels = np.asarray(p, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    which = np.minimum((p * bins).astype(int), bins - 1)
    error = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            error += inside.mean() * abs(labels[inside].mean() - p[inside].mean())
    return float(error)


def ece_if_perfectly_calibrated(
    p: np.ndarray, *, bins: int = 10, draws: int = 2000, seed: int = 0
) -> dict[str, float]:
    """The expected calibration error a perfectly calibrated model would read with these probabilities on
    this many images: labels drawn as Bernoulli(p), `draws` times. ECE is biased upwards on a small set (a
    bin of a few images is far from its mean by chance), so a measured ECE near this floor is all the set
    can show, whatever the model."""
    p = np.asarray(p, dtype=np.float64)
    rng = np.random.default_rng(seed)
    errors = np.array(
        [expected_calibration_error(p, rng.random(len(p)) < p, bins=bins) for _ in range(draws)]
    )
    return {"mean": round(float(errors.mean()), 4), "p95": round(float(np.quantile(errors, 0.95)), 4)}


def brier_score(p: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean((np.asarray(p, dtype=np.float64) - np.asarray(labels)) ** 2))
