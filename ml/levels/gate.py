"""Input gate: refuse what is not a sagittal lumbar MRI with locatable L3-L4, L4-L5 and L5-S1 discs.

The checks, in order: the slice has contrast at all; the localiser is confident at every level (a diffuse
heatmap means it sees no disc it knows); the three centres run top to bottom, roughly evenly spaced, in a
near-vertical column, at a size that fits the field of view. Thresholds come from the training split
(``GateSpec.fit``), widened by a margin, so that validation scans are not what sets them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from ml.levels.discs import LEVEL_NAMES
from ml.preprocessing import to_single_channel, to_unit_float

if TYPE_CHECKING:  # the card reads GateSpec in the web process, which never imports Keras
    from ml.levels.localization import Located

# A real slice has its intensity spread over much of the range even after a poor window.
MIN_CONTRAST_STD = 0.02


@dataclass(frozen=True)
class GateSpec:
    min_confidence: float
    gap_ratio: tuple[float, float]  # lower/upper gap length over upper/lower
    spacing: tuple[float, float]  # mean disc spacing as a fraction of the image height
    max_lateral_step: float  # |dx| / |dy| of each step from one disc to the next
    orientation_margin: float  # how much better a turned copy may be recognised before the slice is refused

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> GateSpec:
        return cls(
            float(data["min_confidence"]),
            tuple(float(v) for v in data["gap_ratio"]),
            tuple(float(v) for v in data["spacing"]),
            float(data["max_lateral_step"]),
            float(data["orientation_margin"]),
        )

    @classmethod
    def fit(
        cls,
        confidences: np.ndarray,
        centres_px: list[np.ndarray],
        heights: list[int],
        turned_advantage: np.ndarray,
        *,
        quantile: float = 0.01,
        margin: float = 1.5,
    ) -> GateSpec:
        """From the training split: localiser confidences (N, 3), annotated centres (pixels), image heights
        and ``turned_advantage`` (best turned-copy confidence minus the slice's own, on shifted copies).

        Bounds are the ``quantile`` / ``1 - quantile`` values, widened by ``margin``: a few annotations
        are off, so not the extremes. The orientation margin is the ``1 - quantile / 2`` value of the
        advantage: it refuses about one shifted real slice in 200.
        """
        ratios, spacings, laterals = [], [], []
        for centres, height in zip(centres_px, heights, strict=True):
            steps = np.diff(centres, axis=0)
            gaps = np.linalg.norm(steps, axis=1)
            ratios.append(gaps[1] / gaps[0])
            spacings.append(gaps.mean() / height)
            laterals.extend(np.abs(steps[:, 0]) / np.maximum(np.abs(steps[:, 1]), 1e-6))

        def bound(values, q: float) -> float:
            return float(np.quantile(values, q))

        return cls(
            min_confidence=round(bound(confidences.min(axis=1), quantile) / margin, 4),
            gap_ratio=(
                round(bound(ratios, quantile) / margin, 3),
                round(bound(ratios, 1 - quantile) * margin, 3),
            ),
            spacing=(
                round(bound(spacings, quantile) / margin, 4),
                round(bound(spacings, 1 - quantile) * margin, 4),
            ),
            max_lateral_step=round(bound(laterals, 1 - quantile) * margin, 3),
            orientation_margin=round(max(bound(turned_advantage, 1 - quantile / 2), 0.0), 4),
        )


@dataclass(frozen=True)
class GateDecision:
    assessable: bool
    reason: str = ""


def check_input(
    image: np.ndarray, located: Located, spec: GateSpec, *, other_orientations: Sequence[float] = ()
) -> GateDecision:
    """Whether the slice can be graded, with the first reason it cannot.

    ``other_orientations``: the localiser's mean confidence on the slice turned upside down and by 90
    degrees either way. A real, upright slice is recognised best as it is; an upside-down spine still
    shows three discs in a column, which geometry alone would accept.
    """
    grey = to_unit_float(to_single_channel(image))
    if float(grey.std()) < MIN_CONTRAST_STD:
        return GateDecision(False, "the image has almost no contrast: no anatomy to assess")
    weakest = int(np.argmin(located.confidence))
    if located.confidence[weakest] < spec.min_confidence:
        return GateDecision(
            False,
            f"no lumbar disc recognisable at {LEVEL_NAMES[weakest]} "
            f"(confidence {located.confidence[weakest]:.2f}, needs {spec.min_confidence:.2f}): "
            "not a sagittal lumbar MRI, or the discs are out of view",
        )
    own = float(located.confidence.mean())
    if len(other_orientations) and max(other_orientations) > own + spec.orientation_margin:
        return GateDecision(
            False, "the discs are recognised better with the image turned: upside down or rotated"
        )
    height, width = grey.shape
    centres = located.centres * [width, height]
    steps = np.diff(centres, axis=0)
    if (steps[:, 1] <= 0).any():
        return GateDecision(
            False, "the discs found do not run from L3-L4 down to L5-S1: upside down or not a spine"
        )
    if (np.abs(steps[:, 0]) / steps[:, 1] > spec.max_lateral_step).any():
        return GateDecision(
            False, "the discs found are not in a vertical column: not a sagittal slice upright"
        )
    gaps = np.linalg.norm(steps, axis=1)
    ratio = gaps[1] / gaps[0]
    if not spec.gap_ratio[0] <= ratio <= spec.gap_ratio[1]:
        return GateDecision(False, f"the disc spacing is implausible (gap ratio {ratio:.2f})")
    spacing = float(gaps.mean() / height)
    if not spec.spacing[0] <= spacing <= spec.spacing[1]:
        return GateDecision(
            False,
            f"the discs are implausibly {'small' if spacing < spec.spacing[0] else 'large'} for the image",
        )
    return GateDecision(True)
