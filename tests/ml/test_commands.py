"""train_model, evaluate_model and compare_models on the eight real sample images shipped with the tests
(six training and two validation patients, with Pfirrmann grades and disc boxes)."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from ml.models import ModelVersion
from ml.registry import model_version_register
from tests.ml.eager import eager_execution

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sudirman_sample"
LEVELS = ("L3-L4", "L4-L5", "L5-S1")
IMAGE_KEYS = {
    "accuracy",
    "balanced_accuracy",
    "precision",
    "recall",
    "specificity",
    "f1",
    "roc_auc",
    "confusion_matrix",
    "n",
    "threshold",
    "unreadable",
}
GRADING_KEYS = {"accuracy", "within_one", "weighted_kappa", "confusion_matrix", "n"}
# Small enough to train in seconds; the localiser gets enough epochs to find the discs of its own training
# images, so that the gate lets most of them through and every per-level figure has something to score.
TINY = [
    *("--epochs", "1", "--localizer-epochs", "20", "--batch-size", "2", "--width", "4"),
    *("--localizer-width", "4", "--input-size", "32", "--crop-size", "32"),
    *("--calibration-folds", "2", "--shifted-copies", "0"),
]

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def _train_unregistered(django_db_blocker, name: str, output: Path, *extra: str) -> str:
    """Train through the command, then undo its registration (tests register what they use)."""
    with django_db_blocker.unblock():
        previously_active = ModelVersion.objects.filter(is_active=True).first()
        printed = run(
            "train_model", "--arch", "vgg", "--data", str(SAMPLE), *TINY, *extra, "--output", str(output)
        )
        ModelVersion.objects.filter(name=name).delete()
        if previously_active:
            ModelVersion.objects.filter(pk=previously_active.pk).update(is_active=True)
    return printed


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory, django_db_setup, django_db_blocker) -> Path:
    output = tmp_path_factory.mktemp("models") / "tiny-vgg"
    printed = _train_unregistered(django_db_blocker, "tiny-vgg", output, "--activate")
    assert "registered and activated" in printed
    return output


@pytest.fixture(scope="module")
def retrained_once(trained_once, tmp_path_factory, django_db_setup, django_db_blocker) -> Path:
    """A second model: a wider grader on the first model's localiser."""
    output = tmp_path_factory.mktemp("models") / "tiny-vgg-wide"
    extra = ("--localizer", str(trained_once), "--width", "8", "--name", "tiny-vgg-wide")
    with eager_execution():
        printed = _train_unregistered(django_db_blocker, "tiny-vgg-wide", output, *extra)
    assert f"Reusing the localiser of {trained_once}" in printed
    return output


@pytest.fixture
def trained(trained_once) -> Path:
    model_version_register(artifact_dir=trained_once)
    return trained_once


def test_train_model_writes_one_complete_artifact_that_analyses_a_scan(trained):
    from ml.card import ModelCard
    from ml.levels.pipeline import LevelAnalyser
    from ml.preprocessing import load_grayscale

    assert sorted(p.name for p in trained.iterdir()) == ["grader.keras", "localizer.keras", "model_card.json"]
    assert [p.name for p in trained.parent.iterdir()] == [trained.name]  # no training leftovers
    card = ModelCard.read(trained)
    assert card.name == "tiny-vgg" and card.architecture == "vgg" and card.version == "1"
    assert card.input_size == 32 and card.grader.crop_size == 32
    assert card.facts["cross_validation"]["folds"] == 2
    assert card.validation_metrics["split"] == "val" and card.validation_metrics["n"] == 2
    model_version = ModelVersion.objects.get(name="tiny-vgg")
    assert model_version.parameters == card.parameters > 0
    assert model_version.architecture == "vgg" and model_version.input_size == 32

    analysis = LevelAnalyser.from_artifact(trained).analyse(load_grayscale(next((SAMPLE / "ddd").iterdir())))

    assert analysis.outcome in ("normal", "ddd", "not_assessable")
    if analysis.outcome == "not_assessable":
        assert analysis.reason and analysis.levels == ()
    else:
        assert [finding.level for finding in analysis.levels] == list(LEVELS)
        assert all(1 <= finding.grade <= 5 for finding in analysis.levels)
        assert 0.0 <= analysis.ddd_probability <= 1.0


def test_train_model_reuses_a_trained_localiser(trained, retrained_once):
    from ml.card import ModelCard

    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    assert digest(retrained_once / "localizer.keras") == digest(trained / "localizer.keras")
    first, second = ModelCard.read(trained), ModelCard.read(retrained_once)
    assert second.localizer == first.localizer
    assert second.grader.parameters > first.grader.parameters


def test_evaluate_model_writes_every_figure_and_prints_them(trained, tmp_path):
    report = tmp_path / "metrics.json"

    printed = run("evaluate_model", "--model", "tiny-vgg", "--data", str(SAMPLE), "--json", str(report))

    metrics = json.loads(report.read_text())
    assert IMAGE_KEYS | {"levels", "grading", "localization", "calibration", "not_assessable"} <= set(metrics)
    assert metrics["n"] == 8 and metrics["unreadable"] == 0
    (tn, fp), (fn, tp) = metrics["confusion_matrix"]
    assert tn + fp == 4 and fn + tp == 4
    assessed = 8 - metrics["not_assessable"]
    assert assessed > 0
    assert set(metrics["levels"]) == set(LEVELS)
    for figures in metrics["levels"].values():
        assert GRADING_KEYS <= set(figures) and figures["n"] == assessed
        assert len(figures["confusion_matrix"]) == 5 and all(
            len(row) == 5 for row in figures["confusion_matrix"]
        )
        assert sum(map(sum, figures["confusion_matrix"])) == assessed
    assert GRADING_KEYS | {"balanced_accuracy"} <= set(metrics["grading"])
    assert metrics["grading"]["n"] == 3 * assessed
    assert metrics["localization"]["n"] == 24 and 0.0 <= metrics["localization"]["found_rate"] <= 1.0
    assert {"ece", "brier", "ece_if_perfectly_calibrated"} <= set(metrics["calibration"])
    for label in ("Balanced accuracy", "ROC AUC", "Not assessable", "Calibration ECE", "Discs found"):
        assert label in printed
    assert "Weighted kappa" in printed and "Within one" in printed
    assert all(level in printed for level in LEVELS) and "All levels" in printed
    assert "tiny-vgg (vgg):" in printed and "parameters" in printed


def test_evaluate_model_on_one_split(trained, tmp_path):
    report = tmp_path / "metrics.json"

    run(
        "evaluate_model",
        "--model",
        str(trained),
        "--data",
        str(SAMPLE),
        "--split",
        "val",
        "--json",
        str(report),
    )

    metrics = json.loads(report.read_text())
    assert metrics["n"] == 2 and 0 <= metrics["not_assessable"] <= 2


def test_compare_models_side_by_side(trained, retrained_once):
    printed = run("compare_models", "tiny-vgg", str(retrained_once), "--data", str(SAMPLE))

    assert "8 images" in printed
    header = next(line for line in printed.splitlines() if "tiny-vgg-wide" in line)
    assert header.split() == ["tiny-vgg", "tiny-vgg-wide"]
    assert printed.count("Confusion matrix of") == 2
    assert "ROC AUC" in printed
    for level in (*LEVELS, "All levels"):
        assert f"{level} weighted kappa" in printed and f"{level} within one" in printed
    assert "tiny-vgg (vgg):" in printed and "tiny-vgg-wide (vgg):" in printed


def test_unreadable_files_are_listed_and_counted(trained, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(SAMPLE, data)
    (data / "ddd" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    report = tmp_path / "metrics.json"

    printed = run("evaluate_model", "--model", "tiny-vgg", "--data", str(data), "--json", str(report))

    assert "1 unreadable file(s)" in printed and "broken.png" in printed
    metrics = json.loads(report.read_text())
    assert metrics["unreadable"] == 1 and metrics["n"] == 8


@pytest.mark.parametrize(
    "args, message",
    [
        (["--arch", "invgg", "--data", "does-not-exist"], "not found"),
        (["--arch", "resnet", "--data", str(SAMPLE)], "invalid choice"),
        (["--arch", "vgg", "--data", str(SAMPLE), "--epochs", "0"], "--epochs must be a positive"),
        (["--arch", "vgg", "--data", str(SAMPLE), "--localizer-epochs", "-1"], "positive"),
        (["--arch", "vgg", "--data", str(SAMPLE), "--batch-size", "0"], "positive"),
        (["--arch", "vgg", "--data", str(SAMPLE), "--input-size", "48"], "multiple of 32"),
        (["--arch", "vgg", "--data", str(SAMPLE), "--crop-size", "8"], "at least 16"),
        (["--arch", "vgg", "--data", str(SAMPLE), "--calibration-folds", "1"], "at least 2"),
        (["--arch", "vgg", "--data", str(SAMPLE), "--shifted-copies", "-1"], "not be negative"),
        (["--arch", "vgg", "--data", str(SAMPLE), "--localizer", "nope"], "neither an artifact folder"),
    ],
)
def test_train_model_bad_arguments(args, message):
    with pytest.raises(CommandError, match=message):
        run("train_model", *args)


def test_train_model_refuses_an_existing_output_folder_and_a_taken_name(trained, tmp_path):
    with pytest.raises(CommandError, match="already exists"):
        run("train_model", "--arch", "vgg", "--data", str(SAMPLE), "--output", str(tmp_path))
    with pytest.raises(CommandError, match="'tiny-vgg' is already registered"):
        run("train_model", "--arch", "vgg", "--data", str(SAMPLE), "--name", "tiny-vgg")


def test_train_model_with_more_folds_than_patients_leaves_nothing(tmp_path):
    output = tmp_path / "models" / "too-many-folds"

    with pytest.raises(CommandError, match="needs as many training patients; the training split has 6"):
        run(
            "train_model",
            "--arch",
            "vgg",
            "--data",
            str(SAMPLE),
            "--calibration-folds",
            "7",
            "--output",
            str(output),
        )

    assert list(output.parent.iterdir()) == []


def test_train_model_refuses_empty_and_single_class_folders(tmp_path):
    (tmp_path / "empty" / "normal").mkdir(parents=True)
    with pytest.raises(CommandError, match="no readable images"):
        run("train_model", "--arch", "vgg", "--data", str(tmp_path / "empty"))
    single = tmp_path / "single"
    shutil.copytree(SAMPLE / "ddd", single / "ddd")
    with pytest.raises(CommandError, match="only one class"):
        run("train_model", "--arch", "vgg", "--data", str(single))


def test_evaluate_model_unknown_model():
    with pytest.raises(CommandError, match="neither an artifact folder nor a registered model"):
        run("evaluate_model", "--model", "nope", "--data", str(SAMPLE))
