"""The models shipped under ml/artifacts/: complete, small, loadable, and as good as their cards say."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ml.card import ModelCard
from ml.data import load_folder, load_images
from ml.evaluation import evaluate
from ml.levels.pipeline import LevelAnalyser

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted(card.parent for card in (REPO_ROOT / "ml" / "artifacts").glob("*/model_card.json"))
DATA = REPO_ROOT.parent / "shared" / "data" / "sudirman_midsag_t2"
SAMPLE = REPO_ROOT / "tests" / "data" / "sudirman_sample"


def test_shipped_models_are_each_under_10_mb_with_a_complete_card():
    cards = {card.architecture: (folder, card) for folder in SHIPPED for card in [ModelCard.read(folder)]}

    # One per architecture.
    assert len(cards) == len(SHIPPED) == 2 and set(cards) == {"vgg", "invgg"}
    for folder, card in cards.values():
        assert card.name == folder.name
        assert sum(f.stat().st_size for f in folder.iterdir()) < 10 * 1024 * 1024
        figures = {"roc_auc", "levels", "grading", "localization", "calibration", "not_assessable"}
        assert figures <= set(card.validation_metrics)
    # INVGG grades with a fraction of the VGG grader's parameters (same localiser)
    assert cards["invgg"][1].grader.parameters * 3 < cards["vgg"][1].grader.parameters


@pytest.mark.slow
@pytest.mark.parametrize("artifact_dir", SHIPPED, ids=lambda p: p.name)
def test_shipped_model_grades_each_level_of_a_real_scan_and_refuses_noise(artifact_dir):
    analyser = LevelAnalyser.from_artifact(artifact_dir)
    image = load_images(load_folder(SAMPLE).train[:1])[0]

    analysis = analyser.analyse(image)
    noise = analyser.analyse(np.random.default_rng(0).integers(0, 256, (320, 320), dtype=np.uint8))

    assert analysis.outcome in ("normal", "ddd") and 0.0 <= analysis.ddd_probability <= 1.0
    assert [finding.level for finding in analysis.levels] == ["L3-L4", "L4-L5", "L5-S1"]
    assert analysis.heatmap.shape == image.shape[:2] and 0.0 <= analysis.heatmap.min() <= 1.0
    assert (noise.outcome, noise.levels, noise.heatmap) == ("not_assessable", (), None) and noise.reason


@pytest.mark.slow
@pytest.mark.skipif(not DATA.is_dir(), reason="the shared Sudirman data set is not next to the repository")
@pytest.mark.parametrize("artifact_dir", SHIPPED, ids=lambda p: p.name)
def test_shipped_model_reproduces_the_validation_figures_on_its_card(artifact_dir):
    analyser = LevelAnalyser.from_artifact(artifact_dir)
    stated = analyser.card.validation_metrics
    dataset = load_folder(DATA)

    result = evaluate(analyser, dataset.val, root=dataset.root)

    assert result.report.n == stated["n"]
    assert result.report.confusion_matrix == stated["confusion_matrix"]
    assert np.isclose(result.report.roc_auc, stated["roc_auc"], atol=1e-3)
    assert result.figures["grading"]["confusion_matrix"] == stated["grading"]["confusion_matrix"]
    assert np.isclose(result.figures["localization"]["found_rate"], stated["localization"]["found_rate"])
