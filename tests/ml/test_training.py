from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ml.data import load_folder
from ml.errors import ArtifactError
from ml.explain import overlay_png
from ml.inference import Classifier
from ml.preprocessing import load_grayscale
from ml.training import TrainConfig, train

SAMPLE_DATA = Path(__file__).resolve().parent.parent / "data" / "sudirman_sample"
CARD_KEYS = {
    "name", "architecture", "version", "parameters", "input_size", "threshold", "preprocessing",
    "test_time_augmentation", "gradcam_layer", "data", "training", "training_seconds", "validation_metrics",
    "intended_use", "limitations", "data_attribution",
}  # fmt: skip


@pytest.fixture(scope="module")
def dataset():
    return load_folder(SAMPLE_DATA)


def _tiny_config(arch: str, output_dir: Path) -> TrainConfig:
    # no XLA: compiling would take longer than the one tiny epoch
    return TrainConfig(
        arch=arch, output_dir=output_dir, epochs=1, image_size=32, batch_size=4, width=4, jit_compile=False
    )


@pytest.mark.parametrize("arch", ["vgg", "invgg"])
def test_train_writes_an_artifact_that_loads_predicts_and_explains(arch, dataset, tmp_path):
    lines = []

    result = train(_tiny_config(arch, tmp_path / f"{arch}-test"), dataset, log=lines.append)

    artifact = result.artifact_dir
    assert {p.name for p in artifact.iterdir()} >= {
        "model.keras", "model_card.json", "metrics.json", "confusion_matrix.png", "roc_curve.png",
        "training_curves.png",
    }  # fmt: skip
    card = json.loads((artifact / "model_card.json").read_text())
    assert CARD_KEYS <= set(card)
    assert card["architecture"] == arch and card["name"] == f"{arch}-test" and card["input_size"] == 32
    assert len(card["data_attribution"]["sources"]) == 3
    metrics = json.loads((artifact / "metrics.json").read_text())
    assert metrics["n"] == 2 and metrics["threshold"] == card["threshold"]
    assert any(line.startswith("epoch 1/1") for line in lines)

    classifier = Classifier.from_artifact(artifact)
    images = [load_grayscale(s.path) for s in dataset.val]
    probabilities = classifier.predict(images)
    assert len(probabilities) == 2 and all(0.0 <= p <= 1.0 for p in probabilities)
    assert Classifier.from_artifact(artifact).predict(images) == probabilities
    assert classifier.architecture == arch and classifier.spec.input_size == 32

    heatmap = classifier.explain(images[0])
    assert heatmap.shape == images[0].shape and 0.0 <= heatmap.min() and heatmap.max() <= 1.0
    png = overlay_png(images[0], heatmap)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert load_grayscale(png).shape == images[0].shape


def test_train_refuses_to_overwrite_an_existing_artifact(dataset, tmp_path):
    (tmp_path / "taken").mkdir()

    with pytest.raises(ArtifactError, match="already exists"):
        train(_tiny_config("vgg", tmp_path / "taken"), dataset)


def test_loading_a_folder_without_a_model_is_a_clear_error(tmp_path):
    (tmp_path / "model_card.json").write_text(json.dumps({"name": "x"}))

    with pytest.raises(ArtifactError, match="no model.keras"):
        Classifier.from_artifact(tmp_path)


def test_overlay_resizes_a_smaller_heatmap(tmp_path):
    image = np.linspace(0, 65535, 64 * 48, dtype=np.float64).reshape(64, 48).astype(np.uint16)

    png = overlay_png(image, np.ones((8, 6)))

    assert load_grayscale(png).shape == (64, 48)
