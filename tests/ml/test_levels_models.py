"""The localiser and grader models, disc crops, training entry point and the end-to-end analyser."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from ml.levels.grading import (
    OrdinalThresholds,
    build_grader,
    crop_discs,
    ensemble_grader,
    level_inputs,
    mean_logit,
)
from ml.levels.localization import (
    build_localizer,
    ensemble_localizer,
    flip_averaged,
    heatmap_targets,
    spatial_cross_entropy,
)
from ml.levels.training import grade_weights
from ml.train_levels import main
from tests.ml.eager import eager_execution

SAMPLE_DATA = Path(__file__).resolve().parent.parent / "data" / "sudirman_sample"


@pytest.fixture
def eager():
    with eager_execution():
        yield


def test_localizer_predicts_one_map_per_level_at_a_quarter_of_the_input():
    model = build_localizer(64, width=4)

    assert model(np.zeros((2, 64, 64, 1), np.float32)).shape == (2, 16, 16, 3)


def test_localizer_with_extra_levels_and_coordinates_predicts_a_map_for_each_disc():
    model = build_localizer(64, width=4, extra_levels=2, coordinates=True)

    assert model(np.zeros((2, 64, 64, 1), np.float32)).shape == (2, 16, 16, 5)


def test_flip_averaged_localizer_sees_a_slice_and_its_mirror_alike(tmp_path):
    model = flip_averaged(build_localizer(64, width=4))
    model.save(tmp_path / "localizer.keras")
    loaded = keras.saving.load_model(tmp_path / "localizer.keras", compile=False)
    x = np.random.default_rng(0).random((2, 64, 64, 1)).astype(np.float32)

    np.testing.assert_allclose(loaded(x), model(x), atol=1e-5)
    np.testing.assert_allclose(loaded(x[:, :, ::-1]), np.asarray(loaded(x))[:, :, ::-1], atol=1e-5)


def test_an_ensemble_localizer_averages_its_members_logits_in_one_model(tmp_path):
    members = []
    for seed in (1, 2):
        keras.utils.set_random_seed(seed)
        members.append(build_localizer(64, width=4))
    members.append(flip_averaged(build_localizer(64, width=4)))
    x = np.random.default_rng(0).random((2, 64, 64, 1)).astype(np.float32)

    ensemble = ensemble_localizer(members)
    ensemble.save(tmp_path / "localizer.keras")
    loaded = keras.saving.load_model(tmp_path / "localizer.keras", compile=False)

    np.testing.assert_allclose(loaded(x), np.mean([member(x) for member in members], axis=0), atol=1e-5)
    assert loaded.count_params() == sum(member.count_params() for member in members)
    with pytest.raises(ValueError, match="at least two"):
        ensemble_localizer(members[:1])
    with pytest.raises(ValueError, match="one shape"):
        ensemble_localizer([members[0], build_localizer(96, width=4)])
    with pytest.raises(ValueError, match="one shape"):
        ensemble_localizer([members[0], build_localizer(64, width=4, extra_levels=1)])


def test_localizer_input_must_be_a_multiple_of_32():
    with pytest.raises(ValueError, match="multiple of 32"):
        build_localizer(100)


def test_spatial_cross_entropy_is_lowest_at_the_target():
    target = heatmap_targets(np.array([[0.3, 0.4], [0.5, 0.6], [0.6, 0.8]]), 16)[np.newaxis]
    good = np.log(target + 1e-9)
    wrong = np.roll(good, 5, axis=1)

    assert float(spatial_cross_entropy(target, good)[0]) < float(spatial_cross_entropy(target, wrong)[0])


def test_invgg_grader_has_a_fraction_of_the_vgg_parameters_and_both_keep_features():
    vgg = build_grader("vgg", 32, width=8)
    invgg = build_grader("invgg", 32, width=8)

    assert invgg.count_params() < vgg.count_params() / 3
    for model in (vgg, invgg):
        model.get_layer("features")
        above = model({"crop": np.zeros((6, 32, 32, 1), np.float32), "level": level_inputs(2)})
        assert above.shape == (6, 4)


def test_grader_round_trips_through_a_keras_file(tmp_path):
    model = build_grader("invgg", 32, width=4)
    model.get_layer("grade_logits").bias.assign([2.0, 0.5, -0.5, -2.0])
    x = {"crop": np.random.default_rng(0).random((3, 32, 32, 1)).astype(np.float32), "level": level_inputs(1)}
    model.save(tmp_path / "grader.keras")

    loaded = keras.saving.load_model(tmp_path / "grader.keras", compile=False)

    assert isinstance(loaded.get_layer("grade_logits"), OrdinalThresholds)
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)


def _logits(model: keras.Model, x: dict) -> np.ndarray:
    return np.asarray(keras.Model(model.inputs, model.get_layer("grade_logits").output)(x))


@pytest.mark.parametrize("arch", ["vgg", "invgg"])
def test_an_ensemble_grader_averages_its_members_logits_in_one_model(tmp_path, arch):
    members = []
    for seed in (1, 2, 3):
        keras.utils.set_random_seed(seed)
        members.append(build_grader(arch, 32, width=4))
    x = {"crop": np.random.default_rng(0).random((6, 32, 32, 1)).astype(np.float32), "level": level_inputs(2)}

    ensemble = ensemble_grader(members)
    ensemble.save(tmp_path / "ensemble.keras")
    loaded = keras.saving.load_model(tmp_path / "ensemble.keras", compile=False)

    mean = np.mean([_logits(member, x) for member in members], axis=0)
    np.testing.assert_allclose(_logits(loaded, x), mean, atol=1e-5)
    np.testing.assert_allclose(loaded(x), mean_logit(np.stack([member(x) for member in members])), atol=1e-5)
    # Grad-CAM reads the joined features of every member, ahead of the head
    assert (
        loaded.get_layer("features").output.shape[-1] == 3 * members[0].get_layer("features").output.shape[-1]
    )
    assert loaded.count_params() < sum(member.count_params() for member in members)
    with pytest.raises(ValueError, match="at least two"):
        ensemble_grader(members[:1])
    with pytest.raises(ValueError, match="one size"):
        ensemble_grader([members[0], build_grader(arch, 64, width=4)])


def test_disc_crops_are_centred_on_their_disc():
    enhanced = np.zeros((300, 200), dtype=np.uint8)
    centres = np.array([[0.5, 0.4], [0.55, 0.55], [0.6, 0.7]])
    for cx, cy in centres:
        enhanced[int(cy * 300) - 3 : int(cy * 300) + 4, int(cx * 200) - 3 : int(cx * 200) + 4] = 255

    crops = crop_discs(enhanced, centres, 32)

    assert crops.shape == (3, 32, 32, 1)
    for crop in crops[:, :, :, 0]:
        row, col = np.unravel_index(np.argmax(crop), crop.shape)
        assert abs(row - 16) <= 2 and abs(col - 16) <= 2


def test_a_larger_crop_scale_shows_more_context_around_the_disc():
    enhanced = np.zeros((300, 200), dtype=np.uint8)
    centres = np.array([[0.5, 0.4], [0.5, 0.55], [0.5, 0.7]])
    enhanced[115:126, 95:106] = 255  # an 11-pixel disc at the first centre

    close = crop_discs(enhanced, centres, 32, scale=1.0)[0, :, :, 0]
    wide = crop_discs(enhanced, centres, 32, scale=2.0)[0, :, :, 0]

    assert (wide > 0.5).sum() == pytest.approx((close > 0.5).sum() / 4, rel=0.35)


def test_training_entry_point_refuses_bad_flags(tmp_path, capsys):
    assert (
        main(
            [
                "grader",
                "--arch",
                "invgg",
                "--data",
                str(SAMPLE_DATA),
                "--out",
                str(tmp_path / "g"),
                "--epochs",
                "0",
            ]
        )
        == 2
    )
    assert "must be positive" in capsys.readouterr().err
    grader = ["grader", "--arch", "vgg", "--data", str(SAMPLE_DATA), "--out", str(tmp_path / "g")]
    assert main([*grader, "--crop-scale", "0"]) == 2
    assert "crop scale must be positive" in capsys.readouterr().err
    assert main(["localizer", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "l")]) == 2
    assert "not found" in capsys.readouterr().err
    missing = ["--localizer", str(tmp_path / "loc"), "--grader", str(tmp_path / "grader")]
    assert main(["evaluate", "--data", str(SAMPLE_DATA), *missing]) == 2
    assert "no model artifact" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["grader", "--arch", "resnet", "--data", str(SAMPLE_DATA), "--out", str(tmp_path / "g")])
    assert main(["cv", "--model", "vgg", "--data", str(SAMPLE_DATA), "--folds", "1"]) == 2
    assert "folds must be at least 2" in capsys.readouterr().err
    assert main(["cv", "--model", "localizer", "--data", str(SAMPLE_DATA), "--extra-levels", "3"]) == 2
    assert "extra levels must be 0 to 2" in capsys.readouterr().err
    assert main([*grader, "--class-balance", "-1"]) == 2
    assert "class balance must not be negative" in capsys.readouterr().err
    assert main(["cv", "--model", "vgg", "--data", str(SAMPLE_DATA), "--members", "0"]) == 2
    assert "members must be at least 1" in capsys.readouterr().err
    assert main(["cv", "--model", "localizer", "--data", str(SAMPLE_DATA), "--members", "0"]) == 2


def test_class_balance_weighs_rare_grades_up_and_keeps_the_mean_loss_weight():
    grades = np.array([2] * 60 + [3] * 25 + [4] * 12 + [5] * 3)

    weights = grade_weights(grades, 0.5)

    assert weights[1] < weights[2] < weights[3] < weights[4]
    assert weights[grades - 1].mean() == pytest.approx(1.0)
    np.testing.assert_allclose(grade_weights(grades, 0.0), 1.0)


@pytest.mark.slow
def test_cross_validation_scores_each_setting_by_patient_folds(tmp_path, eager, monkeypatch):
    from ml.levels import training

    fold_seeds = []
    draw_folds = training.patient_folds

    def recorded_folds(patients, folds, *, seed):
        fold_seeds.append(seed)
        return draw_folds(patients, folds, seed=seed)

    common = ["--data", str(SAMPLE_DATA), "--epochs", "1", "--batch-size", "4", "--width", "4"]
    common += ["--shifted-copies", "1", "--folds", "2"]
    figures_file = tmp_path / "cv.json"

    assert (
        main(
            [
                "cv",
                "--model",
                "localizer",
                *common,
                "--input-size",
                "64",
                "--members",
                "2",
                "--json",
                str(figures_file),
            ]
        )
        == 0
    )
    localizer = json.loads(figures_file.read_text())["figures"]
    assert main(["cv", "--model", "invgg", *common, "--crop-size", "32", "--json", str(figures_file)]) == 0
    grader = json.loads(figures_file.read_text())
    cv_ensemble = ["cv", "--model", "vgg", *common, "--crop-size", "32", "--seed", "5", "--members", "2"]
    monkeypatch.setattr(training, "patient_folds", recorded_folds)
    assert main([*cv_ensemble, "--json", str(figures_file)]) == 0
    ensemble = json.loads(figures_file.read_text())["figures"]

    assert localizer["n"] == 3 * 6 and 0.0 <= localizer["found_rate_shifted"] <= 1.0
    assert localizer["members"] == 2
    assert grader["settings"]["model"] == "invgg" and grader["figures"]["folds"] == 2
    assert sum(map(sum, grader["figures"]["confusion_matrix"])) == 3 * 6
    assert "members" not in grader["figures"]
    assert [member["seed"] for member in ensemble["members"]] == [5, 1005]
    assert fold_seeds == [5, 5]  # both seeds trained and scored on the same patient folds
    kappas = [member["weighted_kappa"] for member in ensemble["members"]]
    assert ensemble["member_spread"]["weighted_kappa"]["mean"] == pytest.approx(np.mean(kappas), abs=1e-4)
    assert sum(map(sum, ensemble["confusion_matrix"])) == 3 * 6


@pytest.mark.slow
def test_trained_models_analyse_a_scan_end_to_end(tmp_path, eager):
    from ml.levels.pipeline import NOT_ASSESSABLE, LevelAnalyser
    from ml.preprocessing import load_grayscale

    common = ["--data", str(SAMPLE_DATA), "--epochs", "1", "--batch-size", "4", "--width", "4"]
    assert main(["localizer", *common, "--out", str(tmp_path / "loc"), "--input-size", "64"]) == 0
    assert (
        main(
            [
                "grader",
                *common,
                *("--out", str(tmp_path / "grader"), "--arch", "vgg", "--crop-size", "32"),
                *("--crop-scale", "2.0", "--calibration-folds", "2"),
            ]
        )
        == 0
    )
    grader_card = json.loads((tmp_path / "grader" / "model_card.json").read_text())
    assert grader_card["crop_scale"] == 2.0
    assert grader_card["calibration"]["fitted_on"].startswith("out-of-fold")
    assert grader_card["cross_validation"]["folds"] == 2
    assert 0.0 <= grader_card["cross_validation"]["image_roc_auc_independent_levels"] <= 1.0
    assert np.load(tmp_path / "grader" / "out_of_fold.npz")["above"].shape == (6, 3, 4)
    (tmp_path / "grader" / "model_card.json").write_text(json.dumps({**grader_card, "calibration": {}}))
    assert main(["recalibrate", "--data", str(SAMPLE_DATA), "--grader", str(tmp_path / "grader")]) == 0
    recalibrated = json.loads((tmp_path / "grader" / "model_card.json").read_text())
    assert recalibrated["calibration"] == grader_card["calibration"]
    assert recalibrated["cross_validation"] == grader_card["cross_validation"]
    assert main(["recalibrate", "--data", str(SAMPLE_DATA), "--grader", str(tmp_path / "loc")]) == 2
    second = ["--out", str(tmp_path / "grader2"), "--arch", "vgg", "--crop-size", "32", "--seed", "2"]
    assert main(["grader", *common, *second, "--crop-scale", "2.0", "--calibration-folds", "2"]) == 0
    members = ["--grader", str(tmp_path / "grader"), "--grader", str(tmp_path / "grader2")]
    ensemble = ["ensemble", "--data", str(SAMPLE_DATA), *members, "--out", str(tmp_path / "ensemble")]
    assert main(ensemble) == 0
    ensemble_card = json.loads((tmp_path / "ensemble" / "model_card.json").read_text())
    assert ensemble_card["ensemble"]["members"] == 2 and ensemble_card["training"]["seeds"][1] == 2
    assert ensemble_card["calibration"]["fitted_on"].startswith("out-of-fold")
    above = [np.load(tmp_path / name / "out_of_fold.npz")["above"] for name in ("grader", "grader2")]
    np.testing.assert_allclose(
        np.load(tmp_path / "ensemble" / "out_of_fold.npz")["above"], mean_logit(np.stack(above))
    )
    assert main(ensemble) == 2  # never overwrites
    assert main([*ensemble[:-1], str(tmp_path / "other"), "--grader", str(tmp_path / "loc")]) == 2
    card = json.loads((tmp_path / "loc" / "model_card.json").read_text())
    assert set(card) >= {"kind", "level_names", "preprocess", "box_shape", "gate", "parameters", "training"}
    assert main(["localizer", *common, "--out", str(tmp_path / "loc")]) == 2  # never overwrites
    loc2 = ["--out", str(tmp_path / "loc2"), "--input-size", "64", "--seed", "2"]
    assert main(["localizer", *common, *loc2]) == 0
    localizers = ["--localizer", str(tmp_path / "loc"), "--localizer", str(tmp_path / "loc2")]
    ensemble_loc = ["ensemble", "--data", str(SAMPLE_DATA), *localizers, "--out", str(tmp_path / "locs")]
    assert main([*ensemble_loc, "--gate-folds", "1"]) == 2
    assert main([*ensemble_loc, "--gate-folds", "2"]) == 0
    locs_card = json.loads((tmp_path / "locs" / "model_card.json").read_text())
    assert locs_card["ensemble"]["members"] == 2 and locs_card["training"]["seeds"] == [20240601, 2]
    assert locs_card["training"]["gate_fitted_on"].startswith("out of fold: 2 patient folds")
    assert locs_card["parameters"] == 2 * card["parameters"] and set(locs_card["gate"]) == set(card["gate"])
    assert locs_card["box_shape"] == card["box_shape"]
    assert main([*ensemble_loc[:-1], str(tmp_path / "locs_in_sample")]) == 0
    in_sample = json.loads((tmp_path / "locs_in_sample" / "model_card.json").read_text())
    assert set(in_sample["gate"]) == set(card["gate"])
    assert in_sample["training"]["gate_fitted_on"] == "the training slices the members were trained on"
    assert main([*ensemble_loc[:-1], str(tmp_path / "other"), "--localizer", str(tmp_path / "grader")]) == 2
    assert main([*ensemble[:-1], str(tmp_path / "other"), "--gate-folds", "2"]) == 2  # graders: no gate
    with pytest.raises(SystemExit):  # one kind per ensemble
        main([*ensemble_loc[:-1], str(tmp_path / "other"), "--grader", str(tmp_path / "grader")])

    bundle = ["--localizer", str(tmp_path / "locs"), "--grader", str(tmp_path / "ensemble")]
    figures_file = tmp_path / "figures.json"
    evaluate = ["evaluate", "--data", str(SAMPLE_DATA), *bundle, "--split", "train"]
    assert main([*evaluate, "--json", str(figures_file), "--store-calibration"]) == 0
    figures = json.loads(figures_file.read_text())["graders"]["ensemble"]
    assert set(figures["plain"]) >= {"localization", "levels", "grading", "image", "calibration"}
    assert figures["shifted"]["image"]["n"] == 6 and set(figures["gate_synthetic"]) >= {"noise", "flat"}
    fitted = json.loads((tmp_path / "ensemble" / "model_card.json").read_text())["calibration"]
    assert fitted["fitted_on"] == "train split, 6 images"
    assert main(["bundle", *bundle, "--out", str(tmp_path / "model"), "--name", "t", "--version", "1"]) == 0
    analyser = LevelAnalyser.from_artifact(tmp_path / "model")
    assert analyser.card.calibration.fitted_on == "train split, 6 images"
    image = load_grayscale(next((SAMPLE_DATA / "ddd").glob("*.png")))
    # the gate's thresholds come from the training images; open them to see the grading of one untrained scan
    analyser.gate = type(analyser.gate)(0.0, (0.0, 1e9), (0.0, 1e9), 1e9, 1.0)
    located = analyser.locate([image])[0]
    located.centres[:] = [[0.5, 0.5], [0.52, 0.62], [0.55, 0.74]]
    above, cams = analyser.grade([image], [located.centres])
    analysis = analyser._finding(image, located, above[0], cams[0], other_orientations=np.zeros(3))

    assert analysis.outcome in ("normal", "ddd")
    assert [level.level for level in analysis.levels] == ["L3-L4", "L4-L5", "L5-S1"]
    for level in analysis.levels:
        assert sum(level.grade_probabilities) == pytest.approx(1.0, abs=1e-3)
        x0, y0, x1, y1 = level.box
        assert 0 <= x0 < x1 <= image.shape[1] and 0 <= y0 < y1 <= image.shape[0]
    assert 0.0 <= analysis.ddd_probability <= 1.0
    assert analysis.heatmap.shape == image.shape[:2] and 0.0 <= analysis.heatmap.min() <= 1.0
    flat = analyser.analyse(np.full((200, 200), 128, dtype=np.uint8))
    assert flat.outcome == NOT_ASSESSABLE and flat.ddd_probability is None and "contrast" in flat.reason
