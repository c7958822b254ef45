"""Training of the disc localiser and the per-disc graders, each written as ``model.keras`` + card.

Both train for a fixed number of epochs with a cosine schedule and never look at the validation split, so
validation figures stay unbiased. Augmentation draws the scanner shifts of ``ShiftSpec`` (field of view,
position, rotation, gamma, brightness/contrast, noise) on most training images.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import keras
import numpy as np

from ml.card import TRAINED_MODEL_FILE, read_trained_card
from ml.data import Sample, load_folder, load_images
from ml.errors import ArtifactError, DataError
from ml.evaluation import roc_auc
from ml.levels.calibration import (
    Calibration,
    cross_validated,
    expected_calibration_error,
    patient_folds,
)
from ml.levels.discs import (
    LEVEL_NAMES,
    N_LEVELS,
    BoxShape,
    ShiftSpec,
    centre_inside,
    level_boxes,
    shift_scan,
    shifted_copies,
)
from ml.levels.gate import GateSpec
from ml.levels.grading import (
    CROP_SCALE,
    DEGENERATED_FROM,
    N_GRADES,
    build_grader,
    crop_discs,
    degenerated_probability,
    ensemble_grader,
    image_probability,
    image_probability_independent_levels,
    level_inputs,
    mean_logit,
    ordinal_targets,
    predicted_grades,
)
from ml.levels.localization import (
    OUTPUT_STRIDE,
    build_localizer,
    decode_heatmaps,
    decode_turned,
    ensemble_localizer,
    flip_averaged,
    heatmap_targets,
    spatial_cross_entropy,
    with_turned_copies,
)
from ml.levels.metrics import balanced_accuracy, grading_metrics
from ml.preprocessing import PreprocessSpec, enhance, preprocess, to_single_channel
from ml.saving import load_keras

SHIFT_PROBABILITY = 0.8
# The data every model here is trained on, recorded in each card.
DATA_ATTRIBUTION = {
    "licence": "CC BY 4.0 (as stated by the sources; research and evaluation use)",
    "sources": [
        {
            "title": "Lumbar Spine MRI Dataset (Sudirman et al.), Mendeley Data V2, 2019",
            "doi": "10.17632/k57fr854j2.2",
        },
        {
            "title": "Multi-disorder annotations for lumbar spine mid-sagittal images (Masood, Taj et al.)",
            "doi": "10.17632/9j9hmy8kbn.1",
        },
        {"title": "LSMA-PQR Pfirrmann grades (Masood, Taj et al.)", "doi": "10.17632/p3r4xd2488.1"},
    ],
}
FLIP_PROBABILITY = 0.5
COPY_THREADS = min(os.cpu_count() or 1, 8)  # OpenCV and NumPy release the GIL on whole-slice operations
MAX_EXTRA_LEVELS = 2  # discs above L3-L4 the localiser can be trained on: L2-L3, L1-L2
GATE_COPIES = 3  # shifted copies of each training slice the gate's orientation margin is read on
# Out-of-fold figures ``cv`` reports for each seed of a grader ensemble, with their mean and spread.
MEMBER_FIGURES = ("weighted_kappa", "within_one", "accuracy", "image_roc_auc", "image_balanced_accuracy")


@dataclass
class LevelData:
    """Decoded images of one split with their (3, 4) level boxes, (3,) grades and the (2, 4) boxes of the
    next discs up (L2-L3, L1-L2; NaN where not shown)."""

    samples: list[Sample]
    images: list[np.ndarray]
    boxes: list[np.ndarray]
    grades: np.ndarray
    upper: list[np.ndarray]
    skipped: int = 0

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples])

    @property
    def patients(self) -> np.ndarray:
        return np.array([s.patient_id for s in self.samples])

    def subset(self, indices: np.ndarray) -> LevelData:
        return LevelData(
            [self.samples[i] for i in indices],
            [self.images[i] for i in indices],
            [self.boxes[i] for i in indices],
            self.grades[indices],
            [self.upper[i] for i in indices],
        )


def load_level_data(root: str | Path, split: str) -> LevelData:
    """Images of ``split`` that have Pfirrmann grades and at least three disc boxes."""
    dataset = load_folder(root, verify_images=False)
    samples, boxes, upper, skipped = [], [], [], 0
    for sample in dataset.subset(split):
        found = level_boxes(sample, dataset.root, above=MAX_EXTRA_LEVELS)
        if found is None or sample.disc_grades is None:
            skipped += 1
            continue
        samples.append(sample)
        boxes.append(found[:N_LEVELS])
        upper.append(found[N_LEVELS:])
    if not samples:
        raise DataError(f"no image of split {split!r} in {root} has grades and three disc boxes")
    images = [to_single_channel(image) for image in load_images(samples)]
    grades = np.array([s.disc_grades for s in samples], dtype=np.int64)
    return LevelData(samples, images, boxes, grades, upper, skipped)


@dataclass
class LevelTrainConfig:
    output_dir: Path
    epochs: int = 40
    batch_size: int = 16
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 20240601
    input_size: int = 128  # localiser
    extra_levels: int = 0  # localiser: discs above L3-L4 it also learns to find (counting from the sacrum)
    coordinates: bool = False  # localiser: row/column position channels
    flip: bool = False  # localiser: mirrored training slices, and the shipped model averages over the mirror
    crop_size: int = 64  # grader
    crop_scale: float = CROP_SCALE  # grader crop side in disc spacings
    shifted_copies: int = 8  # grader: shifted copies per training image
    calibration_folds: int = 0  # grader: out-of-fold runs for the calibration (0: none)
    class_balance: float = 0.0  # grader: loss weight of a disc ~ (share of its grade) ** -class_balance
    width: int = 16
    shift: ShiftSpec = field(default_factory=ShiftSpec)


class _LocalizerBatches(keras.utils.PyDataset):
    """Slices of ``indices``, a shifted copy on most, mirrored on half when ``flip``, with target maps."""

    def __init__(self, copies: list, indices: np.ndarray, grid: int, config: LevelTrainConfig):
        super().__init__()
        self.copies, self.indices, self.grid, self.config = copies, indices, grid, config
        self.rng = np.random.default_rng(config.seed)
        self.order = self.rng.permutation(indices)

    def __len__(self):
        return math.ceil(len(self.order) / self.config.batch_size)

    def __getitem__(self, index):
        x, y = [], []
        for i in self.order[index * self.config.batch_size : (index + 1) * self.config.batch_size]:
            image, boxes = self.copies[i][_pick_copy(self.rng, self.config)]
            centres = boxes[:, :2]
            if self.config.flip and self.rng.random() < FLIP_PROBABILITY:
                image = image[:, ::-1]
                centres = centres * [-1.0, 1.0] + [1.0, 0.0]
            x.append(image)
            y.append(heatmap_targets(centres, self.grid))
        return np.stack(x), np.stack(y)

    def on_epoch_end(self):
        self.order = self.rng.permutation(self.indices)


def _pick_copy(rng: np.random.Generator, config: LevelTrainConfig) -> int:
    """0 (the slice as it is) or, with ``SHIFT_PROBABILITY``, one of its shifted copies."""
    if config.shifted_copies and rng.random() < SHIFT_PROBABILITY:
        return 1 + int(rng.integers(config.shifted_copies))
    return 0


def _cached_copies(
    images: list[np.ndarray], boxes: list[np.ndarray], prepare: Callable, config: LevelTrainConfig
) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """Per image: ``prepare(image)`` with its boxes, then ``shifted_copies`` prepared shifted copies.

    Drawn once: on a CPU, shifting and preparing a whole slice costs about twenty times a training step
    of the grader, and the crop jitter (grader) or mirroring (localiser) still varies every epoch.
    """

    def image_copies(image: np.ndarray, box: np.ndarray, rng: np.random.Generator) -> list:
        shifted = [shift_scan(image, box, rng, config.shift) for _ in range(config.shifted_copies)]
        return [(prepare(image), box)] + [(prepare(s), b) for s, b in shifted]

    # One generator per image, so the copies do not depend on the order in which the threads run.
    rngs = [np.random.default_rng(seed) for seed in np.random.SeedSequence(config.seed).spawn(len(images))]
    with ThreadPoolExecutor(COPY_THREADS) as pool:
        return list(pool.map(image_copies, images, boxes, rngs))


def _localizer_copies(data: LevelData, config: LevelTrainConfig) -> list:
    spec = PreprocessSpec(input_size=config.input_size)
    boxes = [np.vstack([b, u[: config.extra_levels]]) for b, u in zip(data.boxes, data.upper, strict=True)]
    return _cached_copies(data.images, boxes, lambda image: preprocess(image, spec), config)


def _grader_copies(data: LevelData, spec: PreprocessSpec, config: LevelTrainConfig) -> list:
    return _cached_copies(data.images, data.boxes, lambda image: enhance(image, spec), config)


class _GraderBatches(keras.utils.PyDataset):
    """Three disc crops per image of ``indices``, from a shifted copy on most images, with crop jitter."""

    def __init__(self, data: LevelData, copies: list, indices: np.ndarray, config: LevelTrainConfig):
        super().__init__()
        self.data, self.copies, self.indices, self.config = data, copies, indices, config
        self.rng = np.random.default_rng(config.seed)
        self.order = self.rng.permutation(indices)
        self.grade_weight = grade_weights(data.grades[indices], config.class_balance)

    def __len__(self):
        return math.ceil(len(self.order) / self.config.batch_size)

    def __getitem__(self, index):
        chosen = self.order[index * self.config.batch_size : (index + 1) * self.config.batch_size]
        crops = []
        for i in chosen:
            enhanced, boxes = self.copies[i][_pick_copy(self.rng, self.config)]
            crops.append(
                crop_discs(
                    enhanced,
                    boxes[:, :2],
                    self.config.crop_size,
                    scale=self.config.crop_scale,
                    rng=self.rng,
                    jitter=0.12,
                    scale_jitter=0.15,
                    max_rotation_deg=8.0,
                )
            )
        x = {"crop": np.concatenate(crops), "level": level_inputs(len(chosen))}
        grades = self.data.grades[chosen].reshape(-1)
        return x, ordinal_targets(grades), self.grade_weight[grades - 1]

    def on_epoch_end(self):
        self.order = self.rng.permutation(self.indices)


def grade_weights(grades: np.ndarray, balance: float) -> np.ndarray:
    """(5,) loss weight per grade ~ share ** -balance, with mean 1 over the training discs.

    Grades 4 and 5 are a fifth of the discs; without weights the model calls many of them 3. A grade
    absent from the training discs gets the weight of a single disc.
    """
    counts = np.bincount(np.asarray(grades).ravel() - 1, minlength=N_GRADES).astype(np.float64)
    weights = np.maximum(counts, 1.0) ** -balance
    return (weights / (weights * counts).sum() * counts.sum()).astype(np.float32)


class _Progress(keras.callbacks.Callback):
    def __init__(self, log: Callable[[str], None], epochs: int):
        super().__init__()
        self.log, self.epochs, self.started = log, epochs, time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss", float("nan"))
        self.log(
            f"epoch {epoch + 1}/{self.epochs}  loss={loss:.4f}  ({time.monotonic() - self.started:.0f}s)"
        )


def _fit(model: keras.Model, batches, loss, config: LevelTrainConfig, log, *, xla: bool = True) -> float:
    schedule = keras.optimizers.schedules.CosineDecay(
        config.learning_rate, decay_steps=max(config.epochs * len(batches), 1), alpha=0.02
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=schedule, weight_decay=config.weight_decay),
        loss=loss,
        jit_compile="auto" if xla else False,
    )
    started = time.monotonic()
    model.fit(batches, epochs=config.epochs, verbose=0, callbacks=[_Progress(log, config.epochs)])
    return time.monotonic() - started


def _save(model: keras.Model, card: dict, output_dir: Path) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    clean = keras.Model.from_config(model.get_config())
    clean.set_weights(model.get_weights())
    clean.save(output_dir / "model.keras")
    (output_dir / "model_card.json").write_text(json.dumps(card, indent=2) + "\n")


def _check_output(output_dir: Path) -> None:
    if (output_dir / "model.keras").exists():
        raise ArtifactError(f"output folder already holds a model: {output_dir}")


def predict_located(model: keras.Model, images: list[np.ndarray], spec: PreprocessSpec) -> list:
    """Decoded localiser output for each image."""
    x = np.stack([preprocess(image, spec) for image in images])
    logits = model.predict(x, batch_size=32, verbose=0)
    return [decode_heatmaps(map_) for map_ in logits]


def fit_gate(
    model: keras.Model,
    train: LevelData,
    spec: PreprocessSpec,
    shift: ShiftSpec,
    seed: int,
) -> GateSpec:
    """Gate thresholds from the localiser and the annotated geometry of the training split, and from
    fixed-seed shifted copies of it, so that the orientation check leaves scanner shifts alone."""
    return _gate_from_evidence(train, *_gate_evidence(model, train, spec, shift, seed))


def _gate_evidence(
    model: keras.Model, data: LevelData, spec: PreprocessSpec, shift: ShiftSpec, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) the localiser's confidences on the slices, and (GATE_COPIES, N) how much better it
    recognises a turned copy than the slice itself, on ``GATE_COPIES`` shifted copies."""
    located = predict_located(model, data.images, spec)
    advantage = np.empty((GATE_COPIES, len(data.images)))
    for copy in range(GATE_COPIES):
        shifted, _ = shifted_copies(data.images, data.boxes, seed=seed + copy, shift=shift)
        x = np.stack([preprocess(image, spec) for image in shifted])
        own, others = decode_turned(model.predict(with_turned_copies(x), batch_size=32, verbose=0))
        advantage[copy] = others.max(axis=1) - np.array([found.confidence.mean() for found in own])
    return np.array([found.confidence for found in located]), advantage


def _gate_from_evidence(train: LevelData, confidences: np.ndarray, advantage: np.ndarray) -> GateSpec:
    shapes = [image.shape[:2] for image in train.images]
    return GateSpec.fit(
        confidences,
        [boxes[:, :2] * [shape[1], shape[0]] for boxes, shape in zip(train.boxes, shapes, strict=True)],
        [shape[0] for shape in shapes],
        advantage.ravel(),
    )


def out_of_fold_gate(
    train: LevelData,
    config: LevelTrainConfig,
    folds: int,
    *,
    seeds: list[int],
    log: Callable[[str], None] = print,
) -> GateSpec:
    """Gate thresholds from localisers that never saw the slices they are read on: for each patient fold,
    the localiser (an ensemble of ``seeds`` when several) trained on the other folds with ``config``.

    A localiser is more confident on its own training slices than on a new patient's, the more so the
    longer it trains; thresholds read off those slices refuse real scans of new patients more often.
    """
    fold_of = patient_folds(train.patients, folds, seed=seeds[0])
    copies = _localizer_copies(train, config)
    spec = PreprocessSpec(input_size=config.input_size)
    confidences = np.empty((len(train.images), N_LEVELS))
    advantage = np.empty((GATE_COPIES, len(train.images)))
    for fold in range(folds):
        held = np.flatnonzero(fold_of == fold)
        log(f"gate fold {fold + 1}/{folds}: {len(held)} images held out")
        model = _localizer_without(fold_of == fold, copies, config, seeds, log)
        confidences[held], advantage[:, held] = _gate_evidence(
            model, train.subset(held), spec, config.shift, seeds[0]
        )
    return _gate_from_evidence(train, confidences, advantage)


def _localizer_without(
    held: np.ndarray, copies: list, config: LevelTrainConfig, seeds: list[int], log
) -> keras.Model:
    """The localiser trained on the slices not ``held`` (a mask): one per seed, an ensemble when several."""
    fitted = [
        _localizer_fit(copies, np.flatnonzero(~held), replace(config, seed=seed), log)[0] for seed in seeds
    ]
    return ensemble_localizer(fitted) if len(fitted) > 1 else fitted[0]


def _localizer_fit(
    copies: list, indices: np.ndarray, config: LevelTrainConfig, log
) -> tuple[keras.Model, float]:
    """The localiser trained on the images of ``indices`` as shipped (flip-averaged when trained with
    mirrored slices), and its training seconds."""
    keras.utils.set_random_seed(config.seed)

    def build() -> keras.Model:
        return build_localizer(
            config.input_size, config.width, extra_levels=config.extra_levels, coordinates=config.coordinates
        )

    model = build()
    log(f"localiser: {model.count_params():,} parameters, {len(indices)} training images")
    batches = _LocalizerBatches(copies, indices, config.input_size // OUTPUT_STRIDE, config)
    seconds = _fit(model, batches, spatial_cross_entropy, config, log)
    if not config.flip:
        return model, seconds
    # An uncompiled copy: the wrapper's saved config must not carry the training loss.
    trained = build()
    trained.set_weights(model.get_weights())
    return flip_averaged(trained), seconds


def discs_found(
    model: keras.Model, data: LevelData, spec: PreprocessSpec, shift_seed: int
) -> dict[str, np.ndarray]:
    """(N, 3) whether each predicted centre lies in its annotated box, on the plain images ("plain") and
    on fixed-seed shifted copies ("shifted")."""
    shifted = shifted_copies(data.images, data.boxes, seed=shift_seed)
    found = {}
    for name, (images, boxes) in {"plain": (data.images, data.boxes), "shifted": shifted}.items():
        located = predict_located(model, images, spec)
        found[name] = np.array([centre_inside(f.centres, b) for f, b in zip(located, boxes, strict=True)])
    return found


def cross_validate_localizer(
    train: LevelData,
    config: LevelTrainConfig,
    folds: int,
    *,
    members: int = 1,
    log: Callable[[str], None] = print,
) -> dict:
    """Found rates of localisers trained without each patient fold, on that fold (plain and shifted);
    with ``members`` above one, of ensembles of that many seeds (``config.seed``, + 1000, ...)."""
    fold_of = patient_folds(train.patients, folds, seed=config.seed)
    spec = PreprocessSpec(input_size=config.input_size)
    found = {name: np.zeros((len(train.images), N_LEVELS), bool) for name in ("plain", "shifted")}
    copies = _localizer_copies(train, config)
    for fold in range(folds):
        held = np.flatnonzero(fold_of == fold)
        log(f"fold {fold + 1}/{folds}: {len(held)} images held out")
        model = _localizer_without(fold_of == fold, copies, config, member_seeds(config.seed, members), log)
        for name, hits in discs_found(model, train.subset(held), spec, config.seed + fold).items():
            found[name][held] = hits
    return {
        "folds": folds,
        "by": "patient",
        "members": members,
        **{f"found_rate_{name}": round(float(hits.mean()), 4) for name, hits in found.items()},
        **{f"images_with_a_miss_{name}": int((~hits).any(axis=1).sum()) for name, hits in found.items()},
        "n": int(found["plain"].size),
    }


def member_seeds(seed: int, members: int) -> list[int]:
    """The seeds of an ``members``-seed ensemble scored by ``cv``: ``seed``, ``seed`` + 1000, ..."""
    return list(range(seed, seed + 1000 * members, 1000))


def train_localizer(
    train: LevelData, config: LevelTrainConfig, *, log: Callable[[str], None] = print
) -> dict:
    """Train the localiser, fit the box shape and the gate on the training split, write the artifact."""
    output_dir = Path(config.output_dir)
    _check_output(output_dir)
    spec = PreprocessSpec(input_size=config.input_size)
    indices = np.arange(len(train.images))
    model, seconds = _localizer_fit(_localizer_copies(train, config), indices, config, log)
    shapes = [image.shape[:2] for image in train.images]
    gate = fit_gate(model, train, spec, config.shift, config.seed)
    card = {
        "kind": "disc_localizer",
        "level_names": list(LEVEL_NAMES),
        "preprocess": spec.to_dict(),
        "output_stride": OUTPUT_STRIDE,
        "extra_levels": config.extra_levels,
        "coordinates": config.coordinates,
        "flip_averaged": config.flip,
        "box_shape": asdict(BoxShape.fit(train.boxes, shapes)),
        "gate": gate.to_dict(),
        "parameters": int(model.count_params()),
        "training": {**_training_facts(config, len(train.images)), "seconds": round(seconds, 1)},
        "data_attribution": DATA_ATTRIBUTION,
    }
    _save(model, card, output_dir)
    log(f"localiser written to {output_dir} after {seconds:.0f}s; gate {gate}")
    return card


def _grader_fit(
    arch: str, train: LevelData, copies: list, indices: np.ndarray, config: LevelTrainConfig, log
) -> tuple[keras.Model, float]:
    keras.utils.set_random_seed(config.seed)
    model = build_grader(arch, config.crop_size, width=config.width)
    batches = _GraderBatches(train, copies, indices, config)
    # XLA on the CPU makes the involution's unfold-and-sum slower: an INVGG grader step (batch 16) takes
    # 230 ms without it and 260 ms with it; a VGG step 58 ms with it and 64 ms without.
    xla = arch != "invgg"
    return model, _fit(model, batches, keras.losses.BinaryCrossentropy(), config, log, xla=xla)


def out_of_fold_grading(
    arch: str,
    train: LevelData,
    copies: list,
    config: LevelTrainConfig,
    folds: int,
    log: Callable[[str], None],
    *,
    fold_seed: int | None = None,
) -> np.ndarray:
    """(N, 3, 4) P(grade > k) of every training image from a grader trained without its patient's fold;
    the folds are drawn with ``fold_seed`` (default: the training seed)."""
    fold_of = patient_folds(train.patients, folds, seed=config.seed if fold_seed is None else fold_seed)
    above = np.empty((len(train.images), N_LEVELS, N_GRADES - 1))
    for fold in range(folds):
        held = np.flatnonzero(fold_of == fold)
        log(f"fold {fold + 1}/{folds}: {len(held)} images held out")
        model, _ = _grader_fit(arch, train, copies, np.flatnonzero(fold_of != fold), config, log)
        # copies[i][0] is the unshifted slice and its annotated boxes
        crops = np.concatenate(
            [
                crop_discs(copies[i][0][0], copies[i][0][1][:, :2], config.crop_size, scale=config.crop_scale)
                for i in held
            ]
        )
        predicted = model.predict({"crop": crops, "level": level_inputs(len(held))}, batch_size=64, verbose=0)
        above[held] = predicted.reshape(len(held), N_LEVELS, -1)
    return above


def _cross_validation_card(above: np.ndarray, train: LevelData, folds: int) -> tuple[Calibration, dict]:
    """Platt calibration fitted on out-of-fold image probabilities, and the out-of-fold figures."""
    flat = above.reshape(-1, above.shape[-1])
    levels = degenerated_probability(flat).reshape(-1, N_LEVELS)
    probability = image_probability(levels)
    calibration = replace(
        Calibration.fit(probability, train.labels),
        fitted_on=f"out-of-fold probabilities on the training split, {len(train.images)} images",
    )
    grades = predicted_grades(flat).reshape(-1, N_LEVELS)
    grading = grading_metrics(train.grades, grades)
    # Each fold's probabilities calibrated by the other folds: the error a held-out set would see.
    calibrated = cross_validated(probability, train.labels, train.patients, seed=1)
    figures = {
        "folds": folds,
        "by": "patient",
        "weighted_kappa": round(grading["weighted_kappa"], 4),
        "within_one": round(grading["within_one"], 4),
        "accuracy": round(grading["accuracy"], 4),
        "confusion_matrix": grading["confusion_matrix"],
        "image_roc_auc": round(float(roc_auc(train.labels, probability)), 4),
        "image_roc_auc_independent_levels": round(
            float(roc_auc(train.labels, image_probability_independent_levels(levels))), 4
        ),
        "image_balanced_accuracy": round(
            balanced_accuracy(train.labels, (grades >= DEGENERATED_FROM).any(axis=1)), 4
        ),
        "ece_uncalibrated": round(expected_calibration_error(probability, train.labels), 4),
        "ece_calibrated": round(expected_calibration_error(calibrated, train.labels), 4),
    }
    return calibration, figures


def cross_validate_grader(
    arch: str,
    train: LevelData,
    config: LevelTrainConfig,
    folds: int,
    *,
    members: int = 1,
    log: Callable[[str], None] = print,
) -> dict:
    """Out-of-fold grading figures of ``arch`` with ``config`` on the training split, by patient.

    With ``members`` above one, of the ensemble (mean logits, as ``ensemble_grader``) of graders trained
    with that many seeds (``member_seeds``) on the same patient folds, with each seed's figures and their
    spread beside it: a change of setting has to beat that spread to be more than a change of seed.
    """
    copies = _grader_copies(train, PreprocessSpec(input_size=config.crop_size), config)
    seeds = member_seeds(config.seed, members)
    scores = [
        out_of_fold_grading(
            arch, train, copies, replace(config, seed=seed), folds, log, fold_seed=config.seed
        )
        for seed in seeds
    ]
    if members == 1:
        return _cross_validation_card(scores[0], train, folds)[1]
    figures = _cross_validation_card(mean_logit(np.stack(scores)), train, folds)[1]
    each = [_cross_validation_card(above, train, folds)[1] for above in scores]
    return {
        **figures,
        "members": [
            {"seed": seed, **{key: one[key] for key in MEMBER_FIGURES}}
            for seed, one in zip(seeds, each, strict=True)
        ],
        "member_spread": {key: _mean_and_sd([one[key] for one in each]) for key in MEMBER_FIGURES},
    }


def _mean_and_sd(values: list[float]) -> dict:
    return {"mean": round(float(np.mean(values)), 4), "sd": round(float(np.std(values, ddof=1)), 4)}


def _scores_of(saved, train: LevelData) -> bool:
    """Whether saved out-of-fold scores are of the images of ``train``."""
    return np.array_equal(saved["patients"], train.patients) and np.array_equal(saved["labels"], train.labels)


def recalibrate_grader(grader_dir: Path, train: LevelData, *, log: Callable[[str], None] = print) -> dict:
    """Fit the calibration and the out-of-fold figures again from the out-of-fold scores that training with
    ``calibration_folds`` kept beside the grader (after a change of the image rule, say), into its card."""
    grader_dir = Path(grader_dir)
    try:
        saved = np.load(grader_dir / "out_of_fold.npz")
    except OSError as exc:
        raise ArtifactError(f"no out-of-fold scores in {grader_dir}; train with --calibration-folds") from exc
    if not _scores_of(saved, train):
        raise DataError(f"the out-of-fold scores in {grader_dir} are of other images than this training set")
    card_path = grader_dir / "model_card.json"
    card = json.loads(card_path.read_text())
    folds = card["cross_validation"]["folds"]
    calibration, figures = _cross_validation_card(saved["above"], train, folds)
    card["calibration"] = calibration.to_dict()
    card["cross_validation"] = figures
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    log(f"out of fold: {figures}; calibration {calibration}")
    return card


def train_grader(
    arch: str, train: LevelData, config: LevelTrainConfig, *, log: Callable[[str], None] = print
) -> dict:
    """Train a ``vgg`` or ``invgg`` grader on crops around the annotated discs, write the artifact.

    With ``calibration_folds``, graders trained on the other folds first score each held-out patient; the
    image probability's calibration is fitted on those out-of-fold scores (the final grader's own scores on
    its training images are over-confident), and the out-of-fold figures go into the card.
    """
    output_dir = Path(config.output_dir)
    _check_output(output_dir)
    spec = PreprocessSpec(input_size=config.crop_size)
    copies = _grader_copies(train, spec, config)
    extra = {}
    if config.calibration_folds:
        above = out_of_fold_grading(arch, train, copies, config, config.calibration_folds, log)
        # Kept beside the grader (not bundled): the image rule and its calibration can be examined again
        # from these without training again.
        output_dir.mkdir(parents=True, exist_ok=True)
        np.savez(output_dir / "out_of_fold.npz", above=above, labels=train.labels, patients=train.patients)
        calibration, figures = _cross_validation_card(above, train, config.calibration_folds)
        log(f"out of fold: {figures}; calibration {calibration}")
        extra = {"calibration": calibration.to_dict(), "cross_validation": figures}
    model, seconds = _grader_fit(arch, train, copies, np.arange(len(train.images)), config, log)
    log(f"{arch} grader: {model.count_params():,} parameters, {3 * len(train.images)} training discs")
    card = {
        "kind": "disc_grader",
        "architecture": arch,
        "level_names": list(LEVEL_NAMES),
        "preprocess": spec.to_dict(),
        "crop_size": config.crop_size,
        "crop_scale": config.crop_scale,
        "gradcam_layer": "features",
        "parameters": int(model.count_params()),
        "training": {
            **_training_facts(config, len(train.images)),
            "shifted_copies": config.shifted_copies,
            "class_balance": config.class_balance,
            "seconds": round(seconds, 1),
        },
        **extra,
        "data_attribution": DATA_ATTRIBUTION,
    }
    _save(model, card, output_dir)
    log(f"{arch} grader written to {output_dir} after {seconds:.0f}s")
    return card


def ensemble_graders(
    grader_dirs: list[Path], train: LevelData, output_dir: Path, *, log: Callable[[str], None] = print
) -> dict:
    """One grader folder from graders of one architecture and crop trained with different seeds
    (``ensemble_grader``: the mean of their logits). Where every member kept out-of-fold scores of
    ``train``, the ensemble's are the mean of theirs (each member's are out of fold, so their mean is too),
    and its calibration and out-of-fold figures are fitted on them; otherwise it is left uncalibrated, for
    ``evaluate --store-calibration``.
    """
    output_dir = Path(output_dir)
    shared = ("architecture", "preprocess", "crop_size", "crop_scale", "gradcam_layer")
    cards, members = _ensemble_members(grader_dirs, "disc_grader", shared, output_dir)
    model = ensemble_grader(members)
    card = _ensemble_card(cards, shared, model, "mean of the members' threshold logits")
    scores = [folder / "out_of_fold.npz" for folder in grader_dirs]
    if all(path.is_file() for path in scores):
        saved = [np.load(path) for path in scores]
        if not all(_scores_of(kept, train) for kept in saved):
            raise DataError("the graders' out-of-fold scores are of other images than this training set")
        above = mean_logit(np.stack([kept["above"] for kept in saved]))
        calibration, figures = _cross_validation_card(above, train, cards[0]["cross_validation"]["folds"])
        card["calibration"], card["cross_validation"] = calibration.to_dict(), figures
        output_dir.mkdir(parents=True, exist_ok=True)
        np.savez(output_dir / "out_of_fold.npz", above=above, labels=train.labels, patients=train.patients)
        log(f"out of fold: {figures}; calibration {calibration}")
    else:
        log("not every grader kept out-of-fold scores: the ensemble is left uncalibrated")
    _save(model, card, output_dir)
    log(f"ensemble of {len(members)} graders ({card['parameters']:,} parameters) written to {output_dir}")
    return card


def ensemble_localizers(
    localizer_dirs: list[Path],
    train: LevelData,
    output_dir: Path,
    *,
    gate_folds: int = 0,
    log: Callable[[str], None] = print,
) -> dict:
    """One localiser folder from localisers of one setting trained with different seeds
    (``ensemble_localizer``: the mean of their logits), with its input gate fitted again on ``train``:
    averaging changes how peaked the maps are, and the gate reads their peaks. With ``gate_folds``, the
    gate is fitted out of fold (``out_of_fold_gate``, the members' setting and seeds trained again per
    fold), otherwise on the ensemble's own training slices, as ``train_localizer`` fits it."""
    output_dir = Path(output_dir)
    # Members fitted on one training split share the box shape fitted on it.
    shared = ("preprocess", "output_stride", "extra_levels", "coordinates", "flip_averaged", "box_shape")
    cards, members = _ensemble_members(localizer_dirs, "disc_localizer", shared, output_dir)
    model = ensemble_localizer(members)
    config = _localizer_config(cards[0], members[0])
    card = _ensemble_card(cards, shared, model, "mean of the members' heatmap logits")
    if gate_folds:
        seeds = card["training"]["seeds"]
        gate = out_of_fold_gate(train, config, gate_folds, seeds=seeds, log=log)
        card["training"]["gate_fitted_on"] = f"out of fold: {gate_folds} patient folds of the training split"
    else:
        spec = PreprocessSpec.from_dict(cards[0]["preprocess"])  # the members' own, checked shared above
        gate = fit_gate(model, train, spec, config.shift, config.seed)
        card["training"]["gate_fitted_on"] = "the training slices the members were trained on"
    card["gate"] = gate.to_dict()
    _save(model, card, output_dir)
    log(f"ensemble of {len(members)} localisers ({card['parameters']:,} parameters) written to {output_dir}")
    return card


def _localizer_config(card: dict, model: keras.Model) -> LevelTrainConfig:
    """The training settings of a trained localiser, from its card (checked against its model)."""
    training = card["training"]
    config = LevelTrainConfig(
        output_dir=None,
        epochs=training["epochs"],
        batch_size=training["batch_size"],
        learning_rate=training["learning_rate"],
        seed=training["seed"],
        input_size=card["preprocess"]["input_size"],
        extra_levels=card["extra_levels"],
        coordinates=card["coordinates"],
        flip=card["flip_averaged"],
        # Cards from before the width was recorded: every localiser then had the default width.
        width=training.get("width", LevelTrainConfig.width),
        shift=ShiftSpec(**{key: _tuple_if_list(value) for key, value in training["augmentation"].items()}),
    )
    rebuilt = build_localizer(
        config.input_size, config.width, extra_levels=config.extra_levels, coordinates=config.coordinates
    )
    if rebuilt.count_params() * (2 if config.flip else 1) != model.count_params():
        raise DataError("the localiser's card does not describe its model (width?); train it again")
    return config


def _ensemble_members(
    folders: list[Path], kind: str, shared: tuple[str, ...], output_dir: Path
) -> tuple[list[dict], list[keras.Model]]:
    """The cards and models of an ensemble's member folders, checked to be two or more of one setting."""
    _check_output(output_dir)
    folders = [Path(folder) for folder in folders]
    if len(set(folders)) != len(folders) or len(folders) < 2:
        raise DataError(f"an ensemble needs at least two different {kind.removeprefix('disc_')} folders")
    cards = [read_trained_card(folder, kind) for folder in folders]
    for key in shared:
        if any(card.get(key) != cards[0].get(key) for card in cards):
            raise DataError(f"the members differ in {key}; an ensemble takes models of one setting")
    return cards, [load_keras(folder / TRAINED_MODEL_FILE) for folder in folders]


def _ensemble_card(cards: list[dict], shared: tuple[str, ...], model: keras.Model, rule: str) -> dict:
    """The card of an ensemble: its members' shared settings, their seeds and training times."""
    return {
        **{key: cards[0][key] for key in ("kind", "level_names", *shared)},
        "parameters": int(model.count_params()),
        "training": {
            **{key: value for key, value in cards[0]["training"].items() if key not in ("seed", "seconds")},
            "seeds": [card["training"]["seed"] for card in cards],
            "seconds": [card["training"]["seconds"] for card in cards],
        },
        "ensemble": {"members": len(cards), "rule": rule},
        "data_attribution": cards[0]["data_attribution"],
    }


def _tuple_if_list(value):
    return tuple(value) if isinstance(value, list) else value


def _training_facts(config: LevelTrainConfig, n_images: int) -> dict:
    return {
        "images": n_images,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "seed": config.seed,
        "width": config.width,
        "augmentation": asdict(config.shift),
        "shift_probability": SHIFT_PROBABILITY,
    }
