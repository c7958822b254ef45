"""Heatmap localiser: one spatial softmax per level over a coarse grid of the whole (resized) slice.

The model sees the full slice through the shared ``preprocess`` (window, CLAHE, resize to a square) and
returns logits of shape (grid, grid, 3 + extra). Each level's logits are a distribution over grid cells,
trained with cross-entropy against a small Gaussian around the annotated disc centre. The optional extra
maps (L2-L3, L1-L2, counted on upwards from L5-S1) are trained where annotated and never decoded: they make
the model count the discs from the sacrum, the anchor that the three named levels depend on. The shipped
model averages its logits with those of the mirrored slice (``HorizontalFlip``), so that test-time flip
averaging costs the caller nothing. Decoding takes the peak, refines
it with the probability-weighted centroid of its neighbourhood and reports the probability mass there as
the level's confidence: a diffuse map (noise, a knee, an upside-down spine) has low mass everywhere, which
the input gate uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from keras import layers, ops

from ml.architectures import BN_MOMENTUM
from ml.levels.discs import N_LEVELS

OUTPUT_STRIDE = 4
TARGET_SIGMA = 1.0  # grid cells
PEAK_RADIUS = 2  # grid cells around the peak that count towards its centroid and confidence


def _conv(x, channels: int, name: str, dilation: int = 1):
    x = layers.Conv2D(channels, 3, padding="same", dilation_rate=dilation, use_bias=False, name=name)(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


@keras.saving.register_keras_serializable(package="lumbar")
class CoordinateChannels(layers.Layer):
    """(B, H, W, C) -> (B, H, W, C + 2): appends the row and column position, each from -1 to 1.

    Convolutions alone cannot tell where in the field of view they look; these channels let the
    localiser learn where discs usually sit (CoordConv, Liu et al., 2018).
    """

    def call(self, x):
        shape = ops.shape(x)
        rows = ops.linspace(-1.0, 1.0, shape[1])
        cols = ops.linspace(-1.0, 1.0, shape[2])
        # (H,) and (W,) -> (B, H, W, 1) each
        row_map = ops.broadcast_to(ops.reshape(rows, (1, -1, 1, 1)), (shape[0], shape[1], shape[2], 1))
        col_map = ops.broadcast_to(ops.reshape(cols, (1, 1, -1, 1)), (shape[0], shape[1], shape[2], 1))
        return ops.concatenate([x, ops.cast(row_map, x.dtype), ops.cast(col_map, x.dtype)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + 2)


@keras.saving.register_keras_serializable(package="lumbar")
class HorizontalFlip(layers.Layer):
    """(B, H, W, C) mirrored left-right. The grid cells of a stride-s map mirror with the input's pixels
    when the input side is a multiple of s, so flipping the output maps undoes flipping the input."""

    def call(self, x):
        return ops.flip(x, axis=2)


def build_localizer(
    input_size: int = 128, width: int = 16, *, extra_levels: int = 0, coordinates: bool = False
) -> keras.Model:
    """Encoder down to 1/32 (context: which disc sits on the sacrum), decoder back to 1/4 with skips.

    Output (B, G, G, 3 + ``extra_levels``) logits; ``coordinates`` adds the position channels.
    """
    if input_size % 32:
        raise ValueError("localiser input size must be a multiple of 32")
    inputs = keras.Input((input_size, input_size, 1), name="image")
    x = CoordinateChannels(name="coordinates")(inputs) if coordinates else inputs
    x = _conv(x, width, "enc1")
    x = layers.MaxPooling2D(2, name="pool1")(x)  # 1/2
    x = _conv(x, width * 2, "enc2")
    x = layers.MaxPooling2D(2, name="pool2")(x)  # 1/4
    skip4 = _conv(x, width * 2, "enc3")
    x = layers.MaxPooling2D(2, name="pool3")(skip4)  # 1/8
    skip8 = _conv(x, width * 4, "enc4")
    x = layers.MaxPooling2D(2, name="pool4")(skip8)  # 1/16
    skip16 = _conv(x, width * 4, "enc5")
    x = layers.MaxPooling2D(2, name="pool5")(skip16)  # 1/32
    x = _conv(x, width * 8, "ctx1")
    x = _conv(x, width * 8, "ctx2", dilation=2)
    for scale, skip in ((16, skip16), (8, skip8), (4, skip4)):
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"up{scale}")(x)
        x = layers.Concatenate(name=f"merge{scale}")([x, skip])
        x = _conv(x, width * 4 if scale > 4 else width * 2, f"dec{scale}")
    logits = layers.Conv2D(N_LEVELS + extra_levels, 1, name="heatmaps")(x)
    return keras.Model(inputs, logits, name="localizer")


def flip_averaged(model: keras.Model) -> keras.Model:
    """``model`` wrapped so that its logits are the mean of those of the slice and of its mirror image."""
    inputs = keras.Input(model.input_shape[1:], name="image")
    mirrored = HorizontalFlip(name="unflip")(model(HorizontalFlip(name="flip")(inputs)))
    logits = layers.Average(name="heatmaps")([model(inputs), mirrored])
    return keras.Model(inputs, logits, name="localizer_flip_averaged")


def ensemble_localizer(members: list[keras.Model]) -> keras.Model:
    """One localiser whose logits are the mean of the ``members``' (localisers of one input and output
    shape trained with different seeds). Each level's map is a softmax over the grid, so the mean of the
    logits is the members' maps multiplied together and normalised: a disc one member places elsewhere
    keeps the others' peak, and what every member agrees on stays sharp."""
    if len(members) < 2:
        raise ValueError("an ensemble needs at least two localisers")
    shapes = {(tuple(m.input_shape[1:]), tuple(m.output_shape[1:])) for m in members}
    if len(shapes) != 1:
        raise ValueError("the localisers of an ensemble must take and return maps of one shape")
    inputs = keras.Input(members[0].input_shape[1:], name="image")
    renamed = [keras.Model(m.input, m.output, name=f"member_{i}") for i, m in enumerate(members)]
    logits = layers.Average(name="heatmaps")([member(inputs) for member in renamed])
    return keras.Model(inputs, logits, name="localizer_ensemble")


def spatial_cross_entropy(y_true, y_pred):
    """Cross-entropy between target and predicted distributions over grid cells, per level."""
    # (B, G, G, L) -> (B, G*G, L)
    shape = ops.shape(y_pred)
    logits = ops.reshape(y_pred, (shape[0], -1, shape[-1]))
    target = ops.reshape(y_true, (shape[0], -1, shape[-1]))
    # (B, G*G, L) -> (B, L)
    loss = -ops.sum(target * ops.log_softmax(logits, axis=1), axis=1)
    return ops.mean(loss, axis=-1)


def heatmap_targets(centres: np.ndarray, grid: int) -> np.ndarray:
    """(L, 2) centre fractions -> (grid, grid, L) normalised Gaussians (centres outside are clipped).

    A level whose centre is NaN (not annotated) gets an all-zero map, which adds nothing to the loss.
    """
    cells = (np.arange(grid) + 0.5) / grid
    targets = np.zeros((grid, grid, len(centres)), dtype=np.float32)
    for level, (cx, cy) in enumerate(np.clip(centres, 0.0, 1.0)):
        if np.isnan(cx) or np.isnan(cy):
            continue
        dx = (cells - cx) * grid
        dy = (cells - cy) * grid
        blob = np.exp(-(dy[:, None] ** 2 + dx[None, :] ** 2) / (2 * TARGET_SIGMA**2))
        targets[:, :, level] = blob / blob.sum()
    return targets


@dataclass(frozen=True)
class Located:
    """Decoded localiser output for one image: centres (3, 2) as fractions, confidence per level."""

    centres: np.ndarray
    confidence: np.ndarray


def decode_heatmaps(logits: np.ndarray) -> Located:
    """(grid, grid, 3 + extra) logits -> peak centres of the three named levels refined by their
    neighbourhood centroid, with confidences. Extra maps (discs further up) are not decoded."""
    logits = logits[:, :, :N_LEVELS]
    grid_h, grid_w, n_levels = logits.shape
    flat = logits.reshape(-1, n_levels).astype(np.float64)
    probs = np.exp(flat - flat.max(axis=0))
    probs = (probs / probs.sum(axis=0)).reshape(grid_h, grid_w, n_levels)
    centres = np.empty((n_levels, 2))
    confidence = np.empty(n_levels)
    for level in range(n_levels):
        prob = probs[:, :, level]
        row, col = np.unravel_index(int(np.argmax(prob)), prob.shape)
        top, bottom = max(row - PEAK_RADIUS, 0), min(row + PEAK_RADIUS + 1, grid_h)
        left, right = max(col - PEAK_RADIUS, 0), min(col + PEAK_RADIUS + 1, grid_w)
        window = prob[top:bottom, left:right]
        mass = float(window.sum())
        rows, cols = np.mgrid[top:bottom, left:right]
        centres[level] = [
            ((cols * window).sum() / mass + 0.5) / grid_w,
            ((rows * window).sum() / mass + 0.5) / grid_h,
        ]
        confidence[level] = mass
    return Located(centres, confidence)


# Turned copies of a (B, S, S, 1) localiser input that the gate compares with: upside down and 90 degrees
# either way. The preprocessed input is square, so turning keeps its shape.
ORIENTATIONS = (
    lambda x: x[:, ::-1],
    lambda x: np.rot90(x, 1, axes=(1, 2)),
    lambda x: np.rot90(x, -1, axes=(1, 2)),
)


def with_turned_copies(x: np.ndarray) -> np.ndarray:
    """(N, S, S, 1) -> (N * (1 + T), S, S, 1): each input followed by its ``ORIENTATIONS`` copies."""
    return np.stack([x, *(turn(x) for turn in ORIENTATIONS)], axis=1).reshape(-1, *x.shape[1:])


def decode_turned(logits: np.ndarray) -> tuple[list[Located], np.ndarray]:
    """Logits of ``with_turned_copies`` inputs -> located per input, (N, T) mean confidence of its copies."""
    located = [decode_heatmaps(map_) for map_ in logits]
    per_input = len(ORIENTATIONS) + 1
    others = np.array(
        [
            [found.confidence.mean() for found in located[i + 1 : i + per_input]]
            for i in range(0, len(located), per_input)
        ]
    )
    return located[::per_input], others
