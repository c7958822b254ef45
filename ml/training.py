"""Train a vgg / invgg classifier on a labelled folder and write a self-describing artifact folder.

Artifact folder: ``model.keras``, ``model_card.json``, ``metrics.json`` (validation metrics at the stored
threshold, with test-time augmentation when the card enables it), ``history.json`` and the plots
``confusion_matrix.png``, ``roc_curve.png``, ``training_curves.png``. The folder is written next to its
final place and renamed at the end, so a failed run leaves nothing half-written.

Decision threshold: the one maximising Youden's J on the validation split (equivalently balanced
accuracy), placed midway between neighbouring validation scores.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import keras
import numpy as np

from ml.architectures import DISC_NAMES, GRADCAM_LAYER, build_model
from ml.data import Dataset, Sample, derive_roi, load_images
from ml.errors import ArtifactError, DataError
from ml.evaluation import (
    choose_threshold,
    compute_metrics,
    plot_confusion_matrix,
    plot_roc,
    plot_training_curves,
    roc_auc,
)
from ml.preprocessing import FULL_IMAGE, AugmentSpec, PreprocessSpec, preprocess, preprocess_augmented

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
INTENDED_USE = (
    "Decision support for research and evaluation: flags a mid-sagittal T2-weighted lumbar MRI slice as "
    "likely degenerative disc disease (Pfirrmann grade >= 3 at L3-L4, L4-L5 or L5-S1) for review by a "
    "clinician. Not a medical device; not for diagnosis without a radiologist."
)
LIMITATIONS = [
    "Trained on a few hundred images from one public dataset (one population, scanners and protocol); "
    "performance on other sites, field strengths or sequences is unknown.",
    "Expects a single mid-sagittal T2 slice of the lumbar spine in the usual orientation; the fixed "
    "region-of-interest crop assumes the lower lumbar discs sit where they do in the training images.",
    "Only L3-L4, L4-L5 and L5-S1 were graded: changes at upper lumbar levels are ignored by the labels.",
    "Validation metrics come from a small split (tens of patients) and have wide confidence intervals.",
    "Grad-CAM heatmaps show where the network looked, not a segmentation of disease.",
]


# Settings that are paths, top-level card keys or recorded elsewhere in the card (roi: preprocessing).
CARD_EXCLUDED_SETTINGS = ("output_dir", "overwrite", "roi", "name", "version")


@dataclass
class TrainConfig:
    arch: str
    output_dir: Path
    epochs: int = 30
    image_size: int = 128
    batch_size: int = 16
    seed: int = 20240601
    width: int = 16
    stem_stride: int = 2
    group_channels: int = 8  # invgg: channels sharing one generated kernel
    dropout: float = 0.3
    learning_rate: float = 2e-3
    weight_decay: float = 1e-3
    patience: int = 10
    disc_targets: bool = True
    disc_loss_weight: float = 0.5
    augment: bool = True
    test_time_augmentation: bool = True
    roi: str | tuple[float, float, float, float] | None = "auto"  # "auto": from yolo_labels/ of train
    name: str | None = None
    version: str = "1"
    jit_compile: bool | str = "auto"  # Keras default: XLA where every layer supports it
    max_train_seconds: float | None = None  # stop after the epoch that passes it; best weights kept
    overwrite: bool = False


@dataclass
class TrainResult:
    artifact_dir: Path
    card: dict
    metrics: dict
    seconds: float
    history: dict[str, list[float]] = field(default_factory=dict)


class _TrainingBatches(keras.utils.PyDataset):
    """Augmented, class-weighted training batches, reshuffled each epoch with a seeded generator."""

    def __init__(self, images, samples, spec, augment, batch_size, seed, disc_targets, class_weights):
        super().__init__()
        self.images, self.samples, self.spec, self.augment = images, samples, spec, augment
        self.batch_size, self.disc_targets = batch_size, disc_targets
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(samples))
        self.labels = np.array([s.label for s in samples], dtype=np.float32)
        self.weights = np.array([class_weights[s.label] for s in samples], dtype=np.float32)
        self.discs, self.disc_mask = _disc_arrays(samples)

    def __len__(self):
        return math.ceil(len(self.samples) / self.batch_size)

    def __getitem__(self, index):
        chosen = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        if self.augment is None:
            x = np.stack([preprocess(self.images[i], self.spec) for i in chosen])
        else:
            x = np.stack(
                [preprocess_augmented(self.images[i], self.spec, self.rng, self.augment) for i in chosen]
            )
        targets = {"ddd": self.labels[chosen, None]}
        weights = {"ddd": self.weights[chosen]}
        if self.disc_targets:
            targets["discs"] = self.discs[chosen]
            weights["discs"] = self.disc_mask[chosen]
        return x, targets, weights

    def on_epoch_end(self):
        self.order = self.rng.permutation(len(self.samples))


def _disc_arrays(samples: Sequence[Sample]) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) per-disc targets and an (N,) mask that zeroes the disc loss where grades are unknown."""
    discs = np.zeros((len(samples), len(DISC_NAMES)), dtype=np.float32)
    mask = np.zeros(len(samples), dtype=np.float32)
    for i, sample in enumerate(samples):
        if sample.disc_labels is not None:
            discs[i] = sample.disc_labels
            mask[i] = 1.0
    return discs, mask


class _ValidationAUC(keras.callbacks.Callback):
    """Exact validation ROC AUC each epoch as ``val_auc``.

    Keras' AUC metric buckets scores into 200 thresholds, so the near-constant scores of the first
    epochs all fall into one bucket and read as 0.5; early stopping needs the exact value.
    """

    def __init__(self, val_x: np.ndarray, val_labels: Sequence[int], batch_size: int):
        super().__init__()
        self.val_x, self.val_labels, self.batch_size = val_x, list(val_labels), batch_size
        self.values: list[float] = []

    def on_epoch_end(self, epoch, logs=None):
        outputs = self.model.predict(self.val_x, batch_size=self.batch_size, verbose=0)
        scores = outputs["ddd"] if isinstance(outputs, dict) else outputs
        auc = roc_auc(self.val_labels, np.asarray(scores).reshape(-1)) or 0.0
        self.values.append(auc)
        if logs is not None:
            logs["val_auc"] = auc


class _TimeLimit(keras.callbacks.Callback):
    def __init__(self, seconds: float | None, log: Callable[[str], None]):
        super().__init__()
        self.seconds, self.log, self.started = seconds, log, time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        if self.seconds is not None and time.monotonic() - self.started > self.seconds:
            self.log(f"time limit of {self.seconds:.0f}s reached after epoch {epoch + 1}: stopping")
            self.model.stop_training = True


class _Progress(keras.callbacks.Callback):
    def __init__(self, log: Callable[[str], None], epochs: int):
        super().__init__()
        self.log, self.epochs, self.started = log, epochs, time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        shown = "  ".join(
            f"{key}={logs[key]:.4f}" for key in ("loss", "ddd_auc", "val_loss", "val_auc") if key in logs
        )
        self.log(f"epoch {epoch + 1}/{self.epochs}  {shown}  ({time.monotonic() - self.started:.0f}s)")


def _resolve_roi(config: TrainConfig, dataset: Dataset, log) -> tuple[tuple[float, ...], str]:
    if config.roi is None:
        return FULL_IMAGE, "full image"
    if config.roi != "auto":
        return tuple(float(v) for v in config.roi), "given"
    roi = derive_roi(dataset.train, dataset.root)
    if roi is None:
        log("no yolo_labels/ disc boxes for the training images: using the full image")
        return FULL_IMAGE, "full image (no disc boxes found)"
    return roi, "lowest three disc boxes of the training split (2nd/98th percentile, 5% margin, squared)"


def _class_weights(samples: Sequence[Sample]) -> dict[int, float]:
    counts = np.bincount([s.label for s in samples], minlength=2)
    if counts.min() == 0:
        raise DataError("the training split needs images of both classes")
    return {label: float(len(samples) / (2.0 * counts[label])) for label in (0, 1)}


def _compile(model: keras.Model, config: TrainConfig, steps_per_epoch: int) -> None:
    schedule = keras.optimizers.schedules.CosineDecay(
        config.learning_rate, decay_steps=max(config.epochs * steps_per_epoch, 1), alpha=0.05
    )
    losses = {"ddd": keras.losses.BinaryCrossentropy()}
    loss_weights = {"ddd": 1.0}
    metrics = {"ddd": [keras.metrics.AUC(name="auc")]}
    if config.disc_targets:
        losses["discs"] = keras.losses.BinaryCrossentropy()
        loss_weights["discs"] = config.disc_loss_weight
        metrics["discs"] = [keras.metrics.AUC(name="auc", multi_label=True)]
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=schedule, weight_decay=config.weight_decay),
        loss=losses,
        loss_weights=loss_weights,
        metrics=metrics,
        jit_compile=config.jit_compile,
    )


def _inference_copy(model: keras.Model) -> keras.Model:
    """The trained model without optimizer state, so model.keras stays small."""
    clean = keras.Model.from_config(model.get_config())
    clean.set_weights(model.get_weights())
    return clean


def train(config: TrainConfig, dataset: Dataset, *, log: Callable[[str], None] = print) -> TrainResult:
    """Train ``config.arch`` on ``dataset.train``; ``dataset.val`` drives early stopping and the threshold."""
    from ml.inference import Classifier

    started = time.monotonic()
    output_dir = Path(config.output_dir)
    name = config.name or output_dir.name
    if output_dir.exists() and not config.overwrite:
        raise ArtifactError(f"output folder already exists: {output_dir}")
    train_samples, val_samples = dataset.train, dataset.val
    class_weights = _class_weights(train_samples)
    if len({s.label for s in val_samples}) < 2:
        raise DataError("the validation split needs images of both classes for AUC and the threshold")
    keras.utils.set_random_seed(config.seed)

    roi, roi_source = _resolve_roi(config, dataset, log)
    spec = PreprocessSpec(input_size=config.image_size, roi=roi)
    augment = AugmentSpec()
    log(
        f"training {config.arch} on {len(train_samples)} images, validating on {len(val_samples)}; "
        f"input {config.image_size}px, roi {roi}"
    )
    train_images = load_images(train_samples)
    val_images = load_images(val_samples)
    use_discs = config.disc_targets and any(s.disc_labels is not None for s in train_samples)
    batches = _TrainingBatches(
        train_images,
        train_samples,
        spec,
        augment if config.augment else None,
        config.batch_size,
        config.seed,
        use_discs,
        class_weights,
    )
    val_x = np.stack([preprocess(image, spec) for image in val_images])
    val_y = {"ddd": np.array([[s.label] for s in val_samples], dtype=np.float32)}
    if use_discs:
        val_y["discs"] = _disc_arrays(val_samples)[0]

    model = build_model(
        config.arch,
        config.image_size,
        width=config.width,
        stem_stride=config.stem_stride,
        group_channels=config.group_channels,
        dropout=config.dropout,
        disc_outputs=use_discs,
    )
    _compile(model, config, len(batches))
    log(f"{config.arch}: {model.count_params():,} parameters")
    val_auc = _ValidationAUC(val_x, [s.label for s in val_samples], config.batch_size)
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_auc", mode="max", patience=config.patience, restore_best_weights=True, verbose=0
    )
    fit = model.fit(
        batches,
        validation_data=(val_x, val_y),
        epochs=config.epochs,
        callbacks=[
            val_auc,
            stopper,
            _Progress(log, config.epochs),
            _TimeLimit(config.max_train_seconds, log),
        ],
        verbose=0,
    )
    history = {key: [float(v) for v in values] for key, values in fit.history.items()}
    history["val_auc"] = val_auc.values
    best_epoch = int(np.argmax(val_auc.values)) + 1
    train_seconds = time.monotonic() - started

    staging = output_dir.parent / f".{output_dir.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        _inference_copy(model).save(staging / "model.keras")
        card = {
            "name": name,
            "architecture": config.arch,
            "version": config.version,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "parameters": int(model.count_params()),
            "input_size": config.image_size,
            "threshold": 0.5,
            "threshold_method": "Youden J (max sensitivity + specificity) on the validation split",
            "preprocessing": spec.to_dict(),
            "roi_source": roi_source,
            "test_time_augmentation": {
                "enabled": config.test_time_augmentation,
                "variants": [list(v) for v in augment.tta_variants],
                "variant_format": "(zoom, shift_x, shift_y) as fractions of the image, averaged",
            },
            "gradcam_layer": GRADCAM_LAYER,
            "outputs": {"ddd": "probability of DDD", "discs": list(DISC_NAMES) if use_discs else None},
            "data": dataset.summary(),
            "training": {
                **{k: v for k, v in asdict(config).items() if k not in CARD_EXCLUDED_SETTINGS},
                "epochs_run": len(history["loss"]),
                "best_epoch": best_epoch,
                "optimizer": "AdamW, cosine decay",
                "loss": "binary cross-entropy (+ per-disc binary cross-entropy)",
                "class_weights": {"normal": class_weights[0], "ddd": class_weights[1]},
                "early_stopping": f"exact val AUC, patience {config.patience}, best weights restored",
                "augmentation": asdict(augment) if config.augment else None,
                "keras_version": keras.__version__,
            },
            "training_seconds": None,
            "validation_metrics": None,
            "intended_use": INTENDED_USE,
            "limitations": LIMITATIONS,
            "data_attribution": DATA_ATTRIBUTION,
        }
        (staging / "model_card.json").write_text(json.dumps(card, indent=2))
        classifier = Classifier.from_artifact(staging)
        val_probabilities = classifier.predict(val_images, batch_size=config.batch_size)
        val_labels = [s.label for s in val_samples]
        threshold = choose_threshold(val_labels, val_probabilities)
        report = compute_metrics(val_labels, val_probabilities, threshold)
        metrics = {"split": "val", **report.to_dict()}
        seconds = time.monotonic() - started
        card.update(threshold=threshold, validation_metrics=metrics, training_seconds=round(seconds, 1))
        (staging / "model_card.json").write_text(json.dumps(card, indent=2))
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2))
        (staging / "history.json").write_text(json.dumps(history, indent=2))
        plot_confusion_matrix(report, staging / "confusion_matrix.png", title=f"{name} (validation)")
        plot_roc(val_labels, val_probabilities, staging / "roc_curve.png", title=f"{name} (validation)")
        plot_training_curves(history, staging / "training_curves.png")
        if output_dir.exists():
            shutil.rmtree(output_dir)
        staging.rename(output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log(
        f"done in {seconds:.0f}s (fit {train_seconds:.0f}s): val AUC {report.roc_auc}, balanced accuracy "
        f"{report.balanced_accuracy:.3f}, threshold {threshold:.3f}"
    )
    return TrainResult(output_dir, card, metrics, seconds, history)
