"""train_model, evaluate_model and compare_models on the eight real sample images shipped with the tests."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from ml.models import ModelVersion
from ml.registry import model_version_register

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sudirman_sample"
METRIC_KEYS = {
    "accuracy",
    "balanced_accuracy",
    "precision",
    "recall",
    "specificity",
    "f1",
    "roc_auc",
    "confusion_matrix",
    "n",
}

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


TINY = ["--epochs", "1", "--image-size", "64", "--batch-size", "4", "--width", "4"]


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory, django_db_setup, django_db_blocker) -> Path:
    """One tiny training run through the command, shared by the module; its registration is undone."""
    output = tmp_path_factory.mktemp("models") / "tiny-invgg"
    with django_db_blocker.unblock():
        previously_active = ModelVersion.objects.filter(is_active=True).first()
        printed = run(
            "train_model",
            "--arch",
            "invgg",
            "--data",
            str(SAMPLE),
            *TINY,
            "--output",
            str(output),
            "--activate",
        )
        assert "registered and activated" in printed
        model_version = ModelVersion.objects.get(name="tiny-invgg")
        assert model_version.is_active
        ModelVersion.objects.filter(pk=model_version.pk).delete()
        if previously_active:
            ModelVersion.objects.filter(pk=previously_active.pk).update(is_active=True)
    return output


@pytest.fixture
def trained(trained_once) -> Path:
    model_version_register(artifact_dir=trained_once)
    return trained_once


def test_train_model_writes_artifact_and_registers_a_loadable_model(trained):
    from ml.inference import Classifier

    for name in (
        "model.keras",
        "metrics.json",
        "model_card.json",
        "confusion_matrix.png",
        "roc_curve.png",
        "training_curves.png",
    ):
        assert (trained / name).is_file(), name
    card = json.loads((trained / "model_card.json").read_text())
    assert card["architecture"] == "invgg"
    assert card["input_size"] == 64
    assert card["name"] == "tiny-invgg"
    assert card["parameters"] > 0 and 0.0 <= card["threshold"] <= 1.0
    model_version = ModelVersion.objects.get(name="tiny-invgg")
    assert model_version.parameters == card["parameters"]
    classifier = Classifier.from_artifact(trained)
    probabilities = classifier.predict([classifier_input() for _ in range(2)])
    assert len(probabilities) == 2 and all(0.0 <= p <= 1.0 for p in probabilities)


def classifier_input():
    from ml.preprocessing import load_grayscale

    return load_grayscale(next((SAMPLE / "ddd").glob("*.png")))


def test_evaluate_model_json_and_split(trained, tmp_path):
    report = tmp_path / "metrics.json"
    printed = run("evaluate_model", "--model", "tiny-invgg", "--data", str(SAMPLE), "--json", str(report))
    metrics = json.loads(report.read_text())
    assert METRIC_KEYS <= set(metrics)
    assert metrics["n"] == 8
    (tn, fp), (fn, tp) = metrics["confusion_matrix"]
    assert tn + fp == 4 and fn + tp == 4
    assert "Balanced accuracy" in printed and "ROC AUC" in printed
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
    assert json.loads(report.read_text())["n"] == 2


def test_compare_models_side_by_side(trained, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    printed = run("compare_models", "tiny-invgg", str(copy), "--data", str(SAMPLE), "--split", "val")
    assert "2 images" in printed
    assert printed.count("Confusion matrix of") == 2


def test_unreadable_files_are_listed_and_counted(trained, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(SAMPLE, data)
    (data / "ddd" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    report = tmp_path / "metrics.json"
    printed = run("evaluate_model", "--model", "tiny-invgg", "--data", str(data), "--json", str(report))
    assert "1 unreadable file(s)" in printed and "broken.png" in printed
    assert json.loads(report.read_text())["unreadable"] == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--arch", "invgg", "--data", "does-not-exist"], "not found"),
        (["--arch", "resnet", "--data", str(SAMPLE)], "invalid choice"),
        (["--arch", "vgg", "--data", str(SAMPLE), "--epochs", "0"], "positive"),
    ],
)
def test_train_model_bad_arguments(args, message):
    with pytest.raises(CommandError, match=message):
        run("train_model", *args)


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
