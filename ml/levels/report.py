"""Validation figures for a localiser and one or more graders, on the plain split and on shifted copies.

Figures: localisation found rate; per level and pooled grading metrics from the localiser's boxes (and,
for reference, from the annotated boxes); image-level ROC AUC with a bootstrap 95% interval, balanced
accuracy, ECE and Brier before and after calibration; gate refusals on the split and on synthetic
negatives; warm time per scan. The card's calibration (fitted out of fold on the training split) is scored
as it stands; for reference, Platt scaling is also fitted on the plain split itself, scored in-sample
(optimistic) and out-of-fold (5 folds by patient).
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from ml.errors import ArtifactError
from ml.levels.calibration import (
    Calibration,
    brier_score,
    cross_validated,
    ece_if_perfectly_calibrated,
    expected_calibration_error,
)
from ml.levels.discs import LEVEL_NAMES, centre_inside, shifted_copies
from ml.levels.grading import (
    DEGENERATED_FROM,
    degenerated_probability,
    image_probability,
    image_probability_independent_levels,
    predicted_grades,
)
from ml.levels.metrics import (
    auc_with_ci,
    balanced_accuracy,
    bootstrap_ci,
    grading_metrics,
    linear_weighted_kappa,
)
from ml.levels.pipeline import NOT_ASSESSABLE, LevelAnalyser
from ml.levels.training import LevelData, load_level_data
from ml.preprocessing import to_unit_float


def synthetic_negatives(images: list[np.ndarray], *, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Inputs the gate must refuse: noise, flat, gradients, real slices upside down or turned 90 degrees."""
    rng = np.random.default_rng(seed)
    size = 384
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size] / size
    return {
        "noise": [rng.random((size, size), dtype=np.float32) for _ in range(10)],
        "flat": [np.full((size, size), value, dtype=np.float32) for value in np.linspace(0.0, 1.0, 5)],
        "gradient": [
            np.tile(ramp, (size, 1)),
            np.tile(ramp[:, None], (1, size)),
            ((xx + yy) / 2).astype(np.float32),
        ],
        "rings": [(0.5 + 0.5 * np.sin(40 * np.hypot(xx - 0.5, yy - 0.5))).astype(np.float32)],
        "upside_down": [np.flipud(image) for image in images],
        "rotated_90": [np.rot90(image) for image in images],
        "blurred_blob": [cv2.GaussianBlur(to_unit_float(image), (0, 0), 25) for image in images[:10]],
    }


def _image_figures(labels: np.ndarray, raw: np.ndarray, refused: np.ndarray, outcome_ddd: np.ndarray) -> dict:
    # A refused scan counts as wrong in the label figures: it got no diagnosis.
    correct_label = np.where(refused, 1 - labels, outcome_ddd)
    return {
        **auc_with_ci(labels, raw),
        "balanced_accuracy": balanced_accuracy(labels, correct_label),
        "not_assessable": int(refused.sum()),
        "n": int(len(labels)),
    }


def _calibration_figures(p: np.ndarray, labels: np.ndarray) -> dict:
    return {
        "ece": expected_calibration_error(p, labels),
        "brier": brier_score(p, labels),
        "ece_if_perfectly_calibrated": ece_if_perfectly_calibrated(p),
    }


def _evaluate_variant(
    analyser: LevelAnalyser, data: LevelData, images: list[np.ndarray], boxes: list
) -> dict:
    started = time.monotonic()
    analyses = analyser.analyse_many(images)
    located = analyser.locate(images)
    centres = [found.centres for found in located]
    found = np.array([centre_inside(c, b) for c, b in zip(centres, boxes, strict=True)])
    above, _ = analyser.grade(images, centres)
    above_annotated, _ = analyser.grade(images, [b[:, :2] for b in boxes])
    grades = np.array([predicted_grades(a) for a in above])
    grades_annotated = np.array([predicted_grades(a) for a in above_annotated])
    degenerated = np.array([degenerated_probability(a) for a in above])
    raw = image_probability(degenerated)
    refused = np.array([a.outcome == NOT_ASSESSABLE for a in analyses])
    labels = data.labels
    levels = {name: grading_metrics(data.grades[:, i], grades[:, i]) for i, name in enumerate(LEVEL_NAMES)}
    pooled = grading_metrics(data.grades, grades)
    # Resampling images keeps each image's three discs together, as they are not independent.
    pooled["weighted_kappa_ci95"] = _rounded(
        bootstrap_ci(lambda idx: linear_weighted_kappa(data.grades[idx], grades[idx]), len(grades))
    )
    pooled["balanced_accuracy"] = balanced_accuracy(
        data.grades.ravel() >= DEGENERATED_FROM, grades.ravel() >= DEGENERATED_FROM
    )
    outcome_ddd = (grades >= DEGENERATED_FROM).any(axis=1).astype(int)
    return {
        "localization": {
            "found_rate": float(found.mean()),
            "found_rate_ci95": _rounded(bootstrap_ci(lambda idx: float(found[idx].mean()), len(found))),
            "per_level": {name: float(found[:, i].mean()) for i, name in enumerate(LEVEL_NAMES)},
            "n": int(found.size),
        },
        "levels": levels,
        "grading": pooled,
        "grading_from_annotated_boxes": grading_metrics(data.grades, grades_annotated),
        "image": _image_figures(labels, raw, refused, outcome_ddd),
        "image_independent_levels_rule": auc_with_ci(
            labels, image_probability_independent_levels(degenerated)
        ),
        "refusal_reasons": sorted({a.reason for a in analyses if a.outcome == NOT_ASSESSABLE}),
        "raw_probability": raw,
        "seconds": round(time.monotonic() - started, 1),
    }


def _rounded(interval: tuple[float, float]) -> list[float]:
    return [round(value, 4) for value in interval]


def _time_per_scan(analyser: LevelAnalyser, paths: list[Path]) -> dict:
    from ml.preprocessing import load_grayscale

    analyser.warm_up()
    times = []
    for path in paths:
        data = path.read_bytes()
        started = time.perf_counter()
        analyser.analyse(load_grayscale(data))
        times.append((time.perf_counter() - started) * 1000)
    return {
        "median_ms": round(float(np.median(times)), 1),
        "p90_ms": round(float(np.percentile(times, 90)), 1),
        "n": len(times),
    }


def evaluate_levels(args) -> dict:
    # Fail before minutes of work, not after the first model.
    for folder in (args.localizer, *args.grader):
        if not (Path(folder) / "model_card.json").is_file():
            raise ArtifactError(f"no model artifact (model_card.json) in {folder}")
    data = load_level_data(args.data, args.split)
    shifted_images, shifted_boxes = shifted_copies(data.images, data.boxes, seed=args.shift_seed)
    negatives = synthetic_negatives(data.images)
    labels = data.labels
    groups = np.array([s.patient_id for s in data.samples])
    results = {"split": args.split, "images": len(data.images), "shift_seed": args.shift_seed, "graders": {}}
    for grader_dir in args.grader:
        analyser = LevelAnalyser.from_trained(args.localizer, grader_dir)
        name = Path(grader_dir).name
        training = analyser.card.facts["training"]
        figures = {
            "parameters": {
                "grader": int(analyser.grader.count_params()),
                "localizer": int(analyser.localizer.count_params()),
            },
            "training_seconds": {
                "grader": training["grader"]["seconds"],
                "localizer": training["localizer"]["seconds"],
            },
        }
        plain = _evaluate_variant(analyser, data, data.images, data.boxes)
        shifted = _evaluate_variant(analyser, data, shifted_images, shifted_boxes)
        raw_plain, raw_shifted = plain.pop("raw_probability"), shifted.pop("raw_probability")
        calibration = Calibration.fit(raw_plain, labels)
        out_of_fold = cross_validated(raw_plain, labels, groups)
        plain["calibration"] = {
            "uncalibrated": _calibration_figures(raw_plain, labels),
            "card": _calibration_figures(analyser.calibration.apply(raw_plain), labels),
            "fitted_and_scored_on_split": _calibration_figures(calibration.apply(raw_plain), labels),
            "out_of_fold_5": _calibration_figures(out_of_fold, labels),
            "out_of_fold_auc": auc_with_ci(labels, out_of_fold)["roc_auc"],
            "balanced_accuracy_at_half": balanced_accuracy(labels, calibration.apply(raw_plain) >= 0.5),
        }
        shifted["calibration"] = {
            "uncalibrated": _calibration_figures(raw_shifted, labels),
            "card": _calibration_figures(analyser.calibration.apply(raw_shifted), labels),
            "with_split_calibration": _calibration_figures(calibration.apply(raw_shifted), labels),
        }
        figures["calibration"] = {
            "card": analyser.calibration.to_dict(),
            "fitted_on_split": calibration.to_dict(),
        }
        figures["cross_validation"] = analyser.card.facts.get("cross_validation")
        figures["plain"], figures["shifted"] = plain, shifted
        figures["gate_synthetic"] = {
            kind: {
                "refused": sum(a.outcome == NOT_ASSESSABLE for a in analyser.analyse_many(images)),
                "n": len(images),
            }
            for kind, images in negatives.items()
        }
        figures["time_per_scan"] = _time_per_scan(analyser, [s.path for s in data.samples[:30]])
        results["graders"][name] = figures
        print(json.dumps({name: _headline(figures)}, indent=2))
        if args.store_calibration:
            card_path = Path(grader_dir) / "model_card.json"
            card = json.loads(card_path.read_text())
            fitted_on = f"{args.split} split, {len(labels)} images"
            card["calibration"] = replace(calibration, fitted_on=fitted_on).to_dict()
            card_path.write_text(json.dumps(card, indent=2) + "\n")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


def _headline(figures: dict) -> dict:
    def pick(variant: dict) -> dict:
        return {
            "found_rate": variant["localization"]["found_rate"],
            "found_rate_ci95": variant["localization"]["found_rate_ci95"],
            "kappa": variant["grading"]["weighted_kappa"],
            "kappa_ci95": variant["grading"]["weighted_kappa_ci95"],
            "within_one": variant["grading"]["within_one"],
            "accuracy": variant["grading"]["accuracy"],
            "auc": variant["image"]["roc_auc"],
            "auc_ci95": variant["image"]["roc_auc_ci95"],
            "balanced_accuracy": variant["image"]["balanced_accuracy"],
            "not_assessable": variant["image"]["not_assessable"],
        }

    return {
        "plain": pick(figures["plain"]),
        "shifted": pick(figures["shifted"]),
        "calibration": figures["plain"]["calibration"],
    }
