"""What the ML commands share: resolving a model, loading a data folder and printing metrics."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import CommandError

from ml.errors import MLError
from ml.models import ModelVersion
from ml.registry import artifact_dir_for

METRIC_ROWS = (
    ("accuracy", "Accuracy"),
    ("balanced_accuracy", "Balanced accuracy"),
    ("precision", "Precision"),
    ("recall", "Recall (sensitivity)"),
    ("specificity", "Specificity"),
    ("f1", "F1"),
    ("roc_auc", "ROC AUC"),
    ("threshold", "Threshold"),
    ("n", "Images"),
)


def resolve_artifact_dir(name_or_dir: str) -> Path:
    """An artifact folder given directly, or the folder of a registered ModelVersion by name."""
    path = Path(name_or_dir)
    if (path / "model_card.json").is_file():
        return path
    model_version = ModelVersion.objects.filter(name=name_or_dir).first()
    if model_version is None:
        known = ", ".join(ModelVersion.objects.values_list("name", flat=True)) or "none registered"
        raise CommandError(f"{name_or_dir!r} is neither an artifact folder nor a registered model ({known}).")
    artifact_dir = artifact_dir_for(model_version)
    if not (artifact_dir / "model_card.json").is_file():
        raise CommandError(f"The artifact folder of {model_version.name} is missing: {artifact_dir}")
    return artifact_dir


def load_classifier_from(artifact_dir: Path):
    from ml.inference import Classifier

    try:
        return Classifier.from_artifact(artifact_dir)
    except (MLError, OSError, ValueError) as exc:
        raise CommandError(f"Cannot load the model in {artifact_dir}: {exc}") from exc


def evaluate_artifact(artifact_dir: Path, samples, stdout):
    """The classifier of an artifact folder and its metrics on ``samples``, unreadable files reported."""
    from ml.evaluation import evaluate

    classifier = load_classifier_from(artifact_dir)
    try:
        result = evaluate(classifier, samples)
    except MLError as exc:
        raise CommandError(str(exc)) from exc
    report_unreadable(stdout, result.unreadable)
    return classifier, result


def load_samples(data_dir: str, split: str | None):
    from ml.data import load_folder

    try:
        dataset = load_folder(data_dir)
        samples = dataset.subset(split) if split else dataset.samples
    except MLError as exc:
        raise CommandError(str(exc)) from exc
    return dataset, samples


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


def metrics_table(columns: dict[str, dict]) -> str:
    """Rows of metrics, one column per model."""
    names = list(columns)
    width = max(len(label) for _, label in METRIC_ROWS) + 2
    lines = ["".ljust(width) + "".join(name[:24].rjust(26) for name in names)]
    for key, label in METRIC_ROWS:
        lines.append(label.ljust(width) + "".join(format_value(columns[n].get(key)).rjust(26) for n in names))
    for name in names:
        (tn, fp), (fn, tp) = columns[name]["confusion_matrix"]
        lines.append(f"Confusion matrix of {name}: [[tn={tn}, fp={fp}], [fn={fn}, tp={tp}]]")
    return "\n".join(lines)
