"""What the ML commands share: resolving a model, evaluating it on a data folder and printing the figures."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import CommandError

from ml.card import CARD_FILE
from ml.errors import MLError
from ml.models import ModelVersion
from ml.registry import artifact_dir_for

IMAGE_ROWS = (
    ("accuracy", "Accuracy"),
    ("balanced_accuracy", "Balanced accuracy"),
    ("precision", "Precision"),
    ("recall", "Recall (sensitivity)"),
    ("specificity", "Specificity"),
    ("f1", "F1"),
    ("roc_auc", "ROC AUC"),
    ("threshold", "Threshold"),
    ("n", "Images"),
    ("not_assessable", "Not assessable"),
    ("calibration.ece", "Calibration ECE"),
    ("calibration.brier", "Brier score"),
    ("localization.found_rate", "Discs found"),
)
LEVEL_COLUMNS = (
    ("accuracy", "Accuracy"),
    ("within_one", "Within one"),
    ("weighted_kappa", "Weighted kappa"),
    ("balanced_accuracy", "Bal. acc. (>= 3)"),
    ("n", "Discs"),
)
POOLED = "All levels"
COLUMN_WIDTH = 12


def resolve_artifact_dir(name_or_dir: str) -> Path:
    """An artifact folder given directly, or the folder of a registered ModelVersion by name."""
    path = Path(name_or_dir)
    if (path / CARD_FILE).is_file():
        return path
    model_version = ModelVersion.objects.filter(name=name_or_dir).first()
    if model_version is None:
        known = ", ".join(ModelVersion.objects.values_list("name", flat=True)) or "none registered"
        raise CommandError(f"{name_or_dir!r} is neither an artifact folder nor a registered model ({known}).")
    artifact_dir = artifact_dir_for(model_version)
    if not (artifact_dir / CARD_FILE).is_file():
        raise CommandError(f"The artifact folder of {model_version.name} is missing: {artifact_dir}")
    return artifact_dir


def load_analyser_from(artifact_dir: Path):
    from ml.levels.pipeline import LevelAnalyser

    try:
        return LevelAnalyser.from_artifact(artifact_dir)
    except (MLError, OSError) as exc:
        raise CommandError(f"Cannot load the model in {artifact_dir}: {exc}") from exc


def load_samples(data_dir: str, split: str | None):
    from ml.data import load_folder

    try:
        dataset = load_folder(data_dir)
        samples = dataset.subset(split) if split else dataset.samples
    except MLError as exc:
        raise CommandError(str(exc)) from exc
    return dataset, samples


def evaluate_artifact(artifact_dir: Path, dataset, samples, stdout):
    """The analyser of an artifact folder and every figure of it on ``samples`` as one JSON-ready dict:
    the image-level keys, ``unreadable``, and ``levels``, ``grading``, ``localization``, ``calibration``
    and ``not_assessable`` where the data allows them."""
    from ml.evaluation import evaluate

    analyser = load_analyser_from(artifact_dir)
    try:
        result = evaluate(analyser, samples, root=dataset.root)
    except MLError as exc:
        raise CommandError(str(exc)) from exc
    report_unreadable(stdout, result.unreadable)
    metrics = {
        **result.report.to_dict(),
        "unreadable": len(dataset.unreadable) + len(result.unreadable),
        **result.figures,
    }
    return analyser, metrics


def report_unreadable(stdout, unreadable) -> None:
    if not unreadable:
        return
    stdout.write(f"{len(unreadable)} unreadable file(s), not scored:")
    for item in unreadable:
        stdout.write(f"  {item.path}: {item.reason}")


def format_value(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _lookup(metrics: dict, dotted: str):
    value = metrics
    for key in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _table(header: list[str], rows: list[tuple[str, list]]) -> str:
    label_width = max(len(label) for label, _ in rows) + 2
    width = max(COLUMN_WIDTH, *(len(name) + 2 for name in header))
    lines = ["".ljust(label_width) + "".join(name.rjust(width) for name in header)]
    for label, values in rows:
        lines.append(label.ljust(label_width) + "".join(format_value(v).rjust(width) for v in values))
    return "\n".join(lines)


def _levels_of(metrics: dict) -> dict[str, dict]:
    """Per-level figures and the pooled ones (``grading``), in reading order; empty without grades."""
    levels = dict(metrics.get("levels") or {})
    if metrics.get("grading"):
        levels[POOLED] = metrics["grading"]
    return levels


def image_table(columns: dict[str, dict]) -> str:
    """Image-level metrics, one column per model, and each model's confusion matrix."""
    names = list(columns)
    rows = [(label, [_lookup(columns[name], key) for name in names]) for key, label in IMAGE_ROWS]
    lines = [_table(names, rows)]
    for name in names:
        (tn, fp), (fn, tp) = columns[name]["confusion_matrix"]
        lines.append(f"Confusion matrix of {name}: [[tn={tn}, fp={fp}], [fn={fn}, tp={tp}]]")
    return "\n".join(lines)


def level_table(metrics: dict) -> str:
    """One model's grading figures: one row per level and the pooled row, one column per figure."""
    levels = _levels_of(metrics)
    if not levels:
        return "No per-level figures: the images have no Pfirrmann grades or none was assessable."
    rows = [(level, [figures.get(key) for key, _ in LEVEL_COLUMNS]) for level, figures in levels.items()]
    return _table([label for _, label in LEVEL_COLUMNS], rows)


def levels_side_by_side(columns: dict[str, dict]) -> str:
    """Grading figures of several models: one row per level and figure, one column per model."""
    names = list(columns)
    per_model = {name: _levels_of(metrics) for name, metrics in columns.items()}
    level_names = list(dict.fromkeys(level for levels in per_model.values() for level in levels))
    if not level_names:
        return "No per-level figures: the images have no Pfirrmann grades or none was assessable."
    rows = [
        (f"{level} {label.lower()}", [per_model[name].get(level, {}).get(key) for name in names])
        for level in level_names
        for key, label in LEVEL_COLUMNS
        if any(key in per_model[name].get(level, {}) for name in names)
    ]
    return _table(names, rows)


def parameters_line(analyser) -> str:
    card = analyser.card
    return (
        f"{card.name} ({card.architecture}): {card.parameters:,} parameters "
        f"(localiser {card.localizer.parameters:,}, grader {card.grader.parameters:,})"
    )
