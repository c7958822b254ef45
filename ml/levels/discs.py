"""Disc levels in a mid-sagittal slice: annotated targets, box geometry and the scanner-shift transform.

Boxes are (3, 4) float arrays ``[cx, cy, w, h]`` as fractions of the image width/height, one row per level
in ``LEVEL_NAMES`` order (top to bottom). In ``yolo_labels/`` the lowest three disc boxes are L3-L4, L4-L5
and L5-S1; some discs carry two boxes (e.g. "normal disc" and "disc bulge" drawn on the same disc), which are
merged first so that a doubled L5-S1 does not push L3-L4 off the list.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ml.data import Sample, read_disc_boxes
from ml.preprocessing import to_single_channel, to_unit_float

LEVEL_NAMES = ("L3-L4", "L4-L5", "L5-S1")
N_LEVELS = len(LEVEL_NAMES)
# Boxes of the same disc overlap with IoU 0.7-0.9 in this data; neighbouring discs at most ~0.15.
SAME_DISC_IOU = 0.4


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two ``[cx, cy, w, h]`` boxes."""
    overlap_w = min(a[0] + a[2] / 2, b[0] + b[2] / 2) - max(a[0] - a[2] / 2, b[0] - b[2] / 2)
    overlap_h = min(a[1] + a[3] / 2, b[1] + b[3] / 2) - max(a[1] - a[3] / 2, b[1] - b[3] / 2)
    intersection = max(overlap_w, 0.0) * max(overlap_h, 0.0)
    union = a[2] * a[3] + b[2] * b[3] - intersection
    return float(intersection / union) if union > 0 else 0.0


def merge_same_disc(boxes: np.ndarray) -> np.ndarray:
    """Average boxes that overlap with IoU above ``SAME_DISC_IOU`` (two labels drawn on one disc)."""
    merged: list[list[np.ndarray]] = []
    for box in boxes[np.argsort(boxes[:, 1])]:
        for group in merged:
            if box_iou(group[-1], box) > SAME_DISC_IOU:
                group.append(box)
                break
        else:
            merged.append([box])
    return np.array([np.mean(group, axis=0) for group in merged]).reshape(-1, 4)


def level_boxes(sample: Sample, root: Path, *, above: int = 0) -> np.ndarray | None:
    """Annotated (3, 4) boxes of L3-L4, L4-L5, L5-S1, or None when the image has fewer than three discs.

    With ``above``, (3 + above, 4): then the boxes of the next ``above`` discs up (L2-L3, L1-L2, ...),
    NaN where the image shows fewer discs.
    """
    boxes = read_disc_boxes(sample, root)
    if boxes is None:
        return None
    discs = merge_same_disc(boxes)
    if len(discs) < N_LEVELS:
        return None
    top_down = discs[np.argsort(discs[:, 1])]
    upper = top_down[:-N_LEVELS][::-1][:above]
    missing = np.full((above - len(upper), 4), np.nan)
    return np.vstack([top_down[-N_LEVELS:], upper, missing])


def disc_spacing(centres_px: np.ndarray) -> float:
    """Mean distance in pixels between consecutive disc centres, the scale of the anatomy in the image."""
    return float(np.linalg.norm(np.diff(centres_px, axis=0), axis=1).mean())


@dataclass(frozen=True)
class BoxShape:
    """Disc box width and height as multiples of the disc spacing (medians over training images)."""

    width: float
    height: float

    def boxes(self, centres: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """(3, 2) centre fractions -> (3, 4) ``[cx, cy, w, h]`` fractions for an image of ``shape`` (H, W)."""
        height, width = shape
        spacing = disc_spacing(centres * [width, height])
        sizes = np.tile([self.width * spacing / width, self.height * spacing / height], (len(centres), 1))
        return np.hstack([centres, sizes])

    @classmethod
    def fit(cls, boxes_list: list[np.ndarray], shapes: list[tuple[int, int]]) -> BoxShape:
        ratios = []
        for boxes, (height, width) in zip(boxes_list, shapes, strict=True):
            spacing = disc_spacing(boxes[:, :2] * [width, height])
            ratios.append(
                [np.median(boxes[:, 2]) * width / spacing, np.median(boxes[:, 3]) * height / spacing]
            )
        width_ratio, height_ratio = np.median(np.array(ratios), axis=0)
        return cls(round(float(width_ratio), 4), round(float(height_ratio), 4))


def centre_inside(centres: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Per level, whether a predicted (x, y) centre lies inside the annotated ``[cx, cy, w, h]`` box."""
    return (np.abs(centres[:, 0] - boxes[:, 0]) <= boxes[:, 2] / 2) & (
        np.abs(centres[:, 1] - boxes[:, 1]) <= boxes[:, 3] / 2
    )


@dataclass(frozen=True)
class ShiftSpec:
    """Ranges of a scanner/site shift: field of view, position, rotation, contrast and noise."""

    zoom: tuple[float, float] = (0.8, 1.2)
    max_shift: float = 0.10
    max_rotation_deg: float = 10.0
    gamma: tuple[float, float] = (0.6, 1.6)
    max_brightness: float = 0.08
    max_contrast: float = 0.15
    max_noise_std: float = 0.03


def shift_scan(
    image: np.ndarray, boxes: np.ndarray | None, rng: np.random.Generator, shift: ShiftSpec
) -> tuple[np.ndarray, np.ndarray | None]:
    """A randomly zoomed, moved, rotated, re-contrasted and noisier copy of ``image`` (float32 in [0, 1]).

    ``boxes`` (fractions) move with the anatomy; widths and heights scale with the zoom. Outside the
    original field of view the copy is black, as on a scanner with a smaller field of view.
    """
    grey = to_unit_float(to_single_channel(image))
    height, width = grey.shape
    zoom = rng.uniform(*shift.zoom)
    matrix = cv2.getRotationMatrix2D(
        (width / 2.0, height / 2.0), rng.uniform(-shift.max_rotation_deg, shift.max_rotation_deg), zoom
    )
    matrix[0, 2] += rng.uniform(-shift.max_shift, shift.max_shift) * width
    matrix[1, 2] += rng.uniform(-shift.max_shift, shift.max_shift) * height
    moved = cv2.warpAffine(grey, matrix, (width, height), flags=cv2.INTER_LINEAR, borderValue=0.0)
    moved = np.power(moved, rng.uniform(*shift.gamma))
    contrast = 1.0 + rng.uniform(-shift.max_contrast, shift.max_contrast)
    moved = (moved - moved.mean()) * contrast + moved.mean() + rng.uniform(-1, 1) * shift.max_brightness
    moved = moved + rng.normal(0.0, rng.uniform(0.0, shift.max_noise_std), moved.shape)
    moved = np.clip(moved, 0.0, 1.0).astype(np.float32)
    if boxes is None:
        return moved, None
    centres_px = boxes[:, :2] * [width, height]
    moved_centres = centres_px @ matrix[:, :2].T + matrix[:, 2]
    moved_boxes = np.hstack([moved_centres / [width, height], boxes[:, 2:] * zoom])
    return moved, moved_boxes


def shifted_copies(
    images: list[np.ndarray], boxes: list[np.ndarray | None], *, seed: int, shift: ShiftSpec | None = None
) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """One fixed-seed shifted copy per image: the same copies on every run, for comparable figures."""
    rng = np.random.default_rng(seed)
    spec = shift or ShiftSpec()
    pairs = [shift_scan(image, box, rng, spec) for image, box in zip(images, boxes, strict=True)]
    return [p[0] for p in pairs], [p[1] for p in pairs]
