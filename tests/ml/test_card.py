"""The typed model card: what it requires, how it round-trips, and how an artifact is assembled."""

from __future__ import annotations

import json

import pytest

from ml.card import ModelCard, assemble_artifact
from ml.errors import ArtifactError
from tests.factories import model_card, write_artifact


def test_card_round_trips_through_its_file_with_typed_settings(tmp_path):
    write_artifact(tmp_path, "invgg-9", "invgg", facts={"intended_use": "decision support"})

    card = ModelCard.read(tmp_path)

    assert card == model_card("invgg-9", "invgg", facts={"intended_use": "decision support"})
    assert card.input_size == 128 and card.parameters == 505011 + 38000
    assert card.grader.crop_size == 64 and card.calibration.slope == pytest.approx(0.81234)
    stored = json.loads((tmp_path / "model_card.json").read_text())
    assert stored["kind"] == "disc_levels" and stored["label_rule"].startswith("ddd when any level")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.pop("calibration"), "incomplete or malformed"),
        (lambda c: c["grader"].pop("crop_size"), "incomplete or malformed"),
        (lambda c: c.update(architecture="resnet"), "unknown architecture"),
        (lambda c: c.update(level_names=["L4-L5", "L5-S1"]), "expected"),
        (lambda c: c.update(threshold=1.5), "not a probability"),
        (lambda c: c["localizer"]["gate"].update(min_confidence="high"), "incomplete or malformed"),
    ],
    ids=["no-calibration", "no-crop-size", "architecture", "levels", "threshold", "gate"],
)
def test_an_incomplete_or_wrong_card_is_refused_with_what_is_wrong(tmp_path, change, message):
    write_artifact(tmp_path)
    data = json.loads((tmp_path / "model_card.json").read_text())
    change(data)
    (tmp_path / "model_card.json").write_text(json.dumps(data))

    with pytest.raises(ArtifactError, match=message):
        ModelCard.read(tmp_path)


def test_a_folder_without_both_models_is_not_an_artifact(tmp_path):
    write_artifact(tmp_path)
    (tmp_path / "grader.keras").unlink()

    with pytest.raises(ArtifactError, match="lacks grader.keras"):
        ModelCard.read(tmp_path)


def test_an_artifact_with_a_damaged_model_file_says_which_file_cannot_load(tmp_path):
    from ml.levels.pipeline import LevelAnalyser

    write_artifact(tmp_path)  # a complete card beside placeholder bytes where the models should be

    with pytest.raises(ArtifactError, match="cannot load .*localizer.keras"):
        LevelAnalyser.from_artifact(tmp_path)


def _trained(folder, kind: str, **card) -> None:
    folder.mkdir()
    (folder / "model.keras").write_bytes(b"weights")
    (folder / "model_card.json").write_text(json.dumps({"kind": kind, **card}))


def test_assemble_puts_both_models_and_one_card_in_a_new_folder(tmp_path):
    full = model_card().to_dict()
    _trained(tmp_path / "loc", "disc_localizer", **full["localizer"], training={"epochs": 40})
    grader = {**full["grader"], "architecture": "vgg", "level_names": full["level_names"]}
    _trained(tmp_path / "grader", "disc_grader", **grader, calibration=full["calibration"])

    card = assemble_artifact(
        localizer_dir=tmp_path / "loc",
        grader_dir=tmp_path / "grader",
        output_dir=tmp_path / "vgg-3",
        name="vgg-3",
        version="3",
        extra={"validation_metrics": {"roc_auc": 0.9}},
    )

    assert ModelCard.read(tmp_path / "vgg-3") == card
    assert (card.name, card.architecture, card.validation_metrics) == ("vgg-3", "vgg", {"roc_auc": 0.9})
    assert card.facts["training"]["localizer"] == {"epochs": 40} and card.trained_at
    assert sorted(p.name for p in (tmp_path / "vgg-3").iterdir()) == [
        "grader.keras",
        "localizer.keras",
        "model_card.json",
    ]
    with pytest.raises(ArtifactError, match="already exists"):
        assemble_artifact(
            localizer_dir=tmp_path / "loc",
            grader_dir=tmp_path / "grader",
            output_dir=tmp_path / "vgg-3",
            name="vgg-3",
            version="3",
        )


def test_assemble_refuses_a_grader_without_calibration_or_swapped_folders(tmp_path):
    full = model_card().to_dict()
    _trained(tmp_path / "loc", "disc_localizer", **full["localizer"])
    grader = {**full["grader"], "architecture": "vgg", "level_names": full["level_names"]}
    _trained(tmp_path / "grader", "disc_grader", **grader)
    common = {"output_dir": tmp_path / "out", "name": "x", "version": "1"}

    with pytest.raises(ArtifactError, match="no calibration"):
        assemble_artifact(localizer_dir=tmp_path / "loc", grader_dir=tmp_path / "grader", **common)
    with pytest.raises(ArtifactError, match="not a trained disc_localizer"):
        assemble_artifact(localizer_dir=tmp_path / "grader", grader_dir=tmp_path / "loc", **common)
    assert not (tmp_path / "out").exists()
