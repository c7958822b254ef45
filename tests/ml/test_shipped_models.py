"""The models shipped under ml/artifacts/: complete, small, loadable, and as good as their cards say."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ml.data import load_folder, load_images
from ml.evaluation import evaluate
from ml.inference import Classifier

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted(card.parent for card in (REPO_ROOT / "ml" / "artifacts").glob("*/model_card.json"))
DATA = REPO_ROOT.parent / "shared" / "data" / "sudirman_midsag_t2"
SAMPLE = REPO_ROOT / "tests" / "data" / "sudirman_sample"
CARD_KEYS = ("name", "architecture", "parameters", "input_size", "threshold", "preprocessing")


def _card(artifact_dir: Path) -> dict:
    return json.loads((artifact_dir / "model_card.json").read_text())


def test_one_vgg_and_one_invgg_ship_each_under_10_mb_with_a_complete_card():
    cards = {_card(folder)["architecture"]: (folder, _card(folder)) for folder in SHIPPED}

    assert len(SHIPPED) == 2 and set(cards) == {"vgg", "invgg"}
    for folder, card in cards.values():
        assert all(card.get(key) is not None for key in CARD_KEYS), folder
        assert card["name"] == folder.name
        assert sum(f.stat().st_size for f in folder.iterdir()) < 10 * 1024 * 1024
        assert card["validation_metrics"] == json.loads((folder / "metrics.json").read_text())
    assert cards["invgg"][1]["parameters"] * 10 < cards["vgg"][1]["parameters"]


@pytest.mark.slow
@pytest.mark.parametrize("artifact_dir", SHIPPED, ids=lambda p: p.name)
def test_shipped_model_classifies_and_explains_a_real_scan(artifact_dir):
    classifier = Classifier.from_artifact(artifact_dir)
    image = load_images(load_folder(SAMPLE).train[:1])[0]

    probability = classifier.predict([image])[0]
    heatmap = classifier.explain(image)

    assert 0.0 <= probability <= 1.0
    assert heatmap.shape == image.shape[:2] and 0.0 <= heatmap.min() <= heatmap.max() <= 1.0


@pytest.mark.slow
@pytest.mark.skipif(not DATA.is_dir(), reason="the shared Sudirman data set is not next to the repository")
@pytest.mark.parametrize("artifact_dir", SHIPPED, ids=lambda p: p.name)
def test_shipped_model_reproduces_the_validation_metrics_on_its_card(artifact_dir):
    stated = json.loads((artifact_dir / "metrics.json").read_text())

    result = evaluate(Classifier.from_artifact(artifact_dir), load_folder(DATA).val)

    assert result.report.n == stated["n"]
    assert result.report.confusion_matrix == stated["confusion_matrix"]
    assert np.isclose(result.report.roc_auc, stated["roc_auc"], atol=1e-3)
