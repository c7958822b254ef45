"""Disc level targets, box geometry, scanner shifts, heatmap targets and decoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ml.data import load_folder
from ml.levels.discs import (
    BoxShape,
    ShiftSpec,
    centre_inside,
    level_boxes,
    merge_same_disc,
    shift_scan,
    shifted_copies,
)
from ml.levels.localization import decode_heatmaps, heatmap_targets

SAMPLE_DATA = Path(__file__).resolve().parent.parent / "data" / "sudirman_sample"


def _write_folder(root: Path, lines: list[str]) -> Path:
    (root / "normal").mkdir(parents=True)
    (root / "yolo_labels").mkdir()
    (root / "normal" / "scan.png").write_bytes(b"")
    (root / "yolo_labels" / "scan.txt").write_text("\n".join(lines) + "\n")
    return root


def test_level_boxes_are_the_lowest_three_discs_top_to_bottom(tmp_path):
    root = _write_folder(
        tmp_path / "data",
        [
            "1 0.5 0.80 0.15 0.08",  # L5-S1
            "2 0.5 0.70 0.10 0.05",  # stenosis: not a disc box
            "0 0.5 0.40 0.15 0.08",  # L2-L3
            "4 0.5 0.53 0.15 0.08",  # L3-L4
            "1 0.5 0.67 0.15 0.08",  # L4-L5
            "4 0.5 0.81 0.16 0.09",  # a second label on L5-S1
        ],
    )
    sample = load_folder(root, verify_images=False, require_both_classes=False).samples[0]

    boxes = level_boxes(sample, root)

    np.testing.assert_allclose(boxes[:, 1], [0.53, 0.67, 0.805])
    assert boxes.shape == (3, 4)
    with_upper = level_boxes(sample, root, above=2)
    # L2-L3 next, then NaN: the image shows no L1-L2
    np.testing.assert_allclose(with_upper[:4, 1], [0.53, 0.67, 0.805, 0.40])
    assert np.isnan(with_upper[4]).all()


def test_level_boxes_is_none_with_fewer_than_three_discs(tmp_path):
    root = _write_folder(
        tmp_path / "data", ["1 0.5 0.8 0.15 0.08", "1 0.5 0.81 0.15 0.08", "0 0.5 0.6 0.1 0.1"]
    )
    sample = load_folder(root, verify_images=False, require_both_classes=False).samples[0]

    assert level_boxes(sample, root) is None


def test_merge_keeps_neighbouring_discs_apart():
    boxes = np.array([[0.5, 0.50, 0.15, 0.08], [0.5, 0.62, 0.15, 0.08], [0.51, 0.625, 0.15, 0.09]])

    merged = merge_same_disc(boxes)

    assert len(merged) == 2
    np.testing.assert_allclose(merged[1], [0.505, 0.6225, 0.15, 0.085])


def test_box_shape_fitted_on_boxes_rebuilds_them_from_centres():
    boxes = np.array([[0.50, 0.50, 0.15, 0.06], [0.52, 0.62, 0.15, 0.06], [0.55, 0.74, 0.15, 0.06]])
    shape = BoxShape.fit([boxes, boxes], [(384, 384), (384, 384)])

    rebuilt = shape.boxes(boxes[:, :2], (384, 384))

    np.testing.assert_allclose(rebuilt, boxes, atol=1e-3)
    # the same anatomy in a wider image keeps its size in pixels
    wide = shape.boxes(boxes[:, :2] * [0.5, 1.0], (384, 768))
    np.testing.assert_allclose(wide[:, 2] * 768, boxes[:, 2] * 384, rtol=0.05)


def test_centre_inside_checks_both_axes():
    boxes = np.array([[0.5, 0.5, 0.2, 0.1]] * 3)
    centres = np.array([[0.55, 0.52], [0.61, 0.5], [0.5, 0.56]])

    assert centre_inside(centres, boxes).tolist() == [True, False, False]


def test_shifted_scan_moves_boxes_with_the_anatomy():
    image = np.zeros((200, 300), dtype=np.uint8)
    boxes = np.array([[0.3, 0.3, 0.1, 0.1], [0.5, 0.5, 0.1, 0.1], [0.7, 0.6, 0.1, 0.1]])
    for cx, cy, _, _ in boxes:
        image[int(cy * 200) - 2 : int(cy * 200) + 3, int(cx * 300) - 2 : int(cx * 300) + 3] = 255
    spec = ShiftSpec(gamma=(1.0, 1.0), max_brightness=0.0, max_contrast=0.0, max_noise_std=0.0)

    moved, moved_boxes = shift_scan(image, boxes, np.random.default_rng(3), spec)

    for cx, cy, _, _ in moved_boxes:
        row, col = int(round(cy * 200)), int(round(cx * 300))
        assert moved[row - 2 : row + 3, col - 2 : col + 3].max() > 0.5
    assert moved.dtype == np.float32 and 0.0 <= moved.min() and moved.max() <= 1.0


def test_shifted_copies_are_the_same_for_the_same_seed():
    images = [np.random.default_rng(0).random((64, 64), dtype=np.float32)]
    first, _ = shifted_copies(images, [None], seed=5)
    second, _ = shifted_copies(images, [None], seed=5)
    other, _ = shifted_copies(images, [None], seed=6)

    np.testing.assert_array_equal(first[0], second[0])
    assert not np.array_equal(first[0], other[0])


def test_heatmap_targets_decode_back_to_their_centres():
    centres = np.array([[0.31, 0.42], [0.5, 0.6], [0.77, 0.83]])
    targets = heatmap_targets(centres, 32)

    np.testing.assert_allclose(targets.sum(axis=(0, 1)), 1.0, rtol=1e-5)
    located = decode_heatmaps(np.log(targets + 1e-12))
    np.testing.assert_allclose(located.centres, centres, atol=0.5 / 32)
    assert (located.confidence > 0.9).all()


def test_a_level_without_a_centre_gets_an_empty_target_and_extra_maps_are_not_decoded():
    centres = np.array([[0.3, 0.4], [0.5, 0.6], [0.7, 0.8], [0.3, 0.2], [np.nan, np.nan]])
    targets = heatmap_targets(centres, 16)

    np.testing.assert_allclose(targets.sum(axis=(0, 1)), [1, 1, 1, 1, 0], rtol=1e-5)
    located = decode_heatmaps(np.log(targets + 1e-12))
    assert located.centres.shape == (3, 2)
    np.testing.assert_allclose(located.centres, centres[:3], atol=0.5 / 16)


def test_a_flat_heatmap_decodes_with_low_confidence():
    located = decode_heatmaps(np.zeros((32, 32, 3)))

    assert (located.confidence < 0.05).all()


@pytest.mark.parametrize("shape", [(128, 128), (200, 320)])
def test_sample_data_has_three_levels_per_image(shape):
    dataset = load_folder(SAMPLE_DATA, verify_images=False)
    for sample in dataset.samples:
        boxes = level_boxes(sample, dataset.root)
        assert boxes is not None and (np.diff(boxes[:, 1]) > 0).all()
        assert BoxShape(2.5, 1.2).boxes(boxes[:, :2], shape).shape == (3, 4)
