"""Flat functional Keras convolutional bodies: the VGG baseline and INVGG (VGG blocks built from involution
layers), on a (size, size, 1) input in [0, 1]. The per-level grader (``ml.levels.grading``) puts its head
on ``build_body``. The last spatial activation is named ``features`` so Grad-CAM can find it in either
architecture.
"""

from __future__ import annotations

from keras import layers

from ml.errors import ArchitectureError
from ml.involution import Involution

ARCHITECTURES = ("vgg", "invgg")
VGG16_BLOCKS = (2, 2, 3, 3, 3)
VGG16 = {"width": 64, "blocks": VGG16_BLOCKS, "max_width_multiplier": 8}
GRADCAM_LAYER = "features"
# A few hundred training images give ~20 steps per epoch: the Keras default (0.99) leaves the moving
# statistics, and so every validation score, meaningless for the first ten epochs.
BN_MOMENTUM = 0.9
# The involution kernel generator squeezes C channels to C/4 (RedNet's ratio, for C >= 64); at the narrow
# widths trained here that leaves 2-4 features to generate every kernel from, so the ratio shrinks until
# the generator sees at least this many.
MIN_KERNEL_FEATURES = 8


def _block_widths(width: int, n_blocks: int, max_width_multiplier: int) -> list[int]:
    return [width * min(2**i, max_width_multiplier) for i in range(n_blocks)]


def _norm_relu(x, name: str):
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu" if name != GRADCAM_LAYER else name)(x)


def _vgg_body(x, widths: list[int], blocks: tuple[int, ...], stem_stride: int):
    for b, (channels, depth) in enumerate(zip(widths, blocks, strict=True), start=1):
        for i in range(1, depth + 1):
            name = f"block{b}_conv{i}"
            stride = stem_stride if b == 1 and i == 1 else 1
            x = layers.Conv2D(channels, 3, strides=stride, padding="same", use_bias=False, name=name)(x)
            last = b == len(blocks) and i == depth
            x = _norm_relu(x, GRADCAM_LAYER if last else name)
        x = layers.MaxPooling2D(2, padding="same", name=f"block{b}_pool")(x)
    return x


def _invgg_body(
    x, widths: list[int], blocks: tuple[int, ...], stem_stride: int, group_channels: int, kernel_size: int
):
    # One 3x3 convolution lifts the single grey channel: an involution cannot change the channel count.
    x = layers.Conv2D(widths[0], 3, strides=stem_stride, padding="same", use_bias=False, name="stem_conv")(x)
    x = _norm_relu(x, "stem")
    channels = widths[0]
    for b, (new_channels, depth) in enumerate(zip(widths, blocks, strict=True), start=1):
        if new_channels != channels:
            x = layers.Conv2D(new_channels, 1, use_bias=False, name=f"block{b}_expand")(x)
            x = _norm_relu(x, f"block{b}_expand")
            channels = new_channels
        groups = max(channels // group_channels, 1)
        if channels % groups:
            raise ArchitectureError(
                f"invgg: {channels} channels cannot be split into groups of {group_channels} channels"
            )
        for i in range(1, depth + 1):
            name = f"block{b}_inv{i}"
            x = Involution(
                kernel_size=kernel_size,
                groups=groups,
                reduction_ratio=max(1, min(4, channels // MIN_KERNEL_FEATURES)),
                norm_momentum=BN_MOMENTUM,
                name=name,
            )(x)
            last = b == len(blocks) and i == depth
            x = _norm_relu(x, GRADCAM_LAYER if last else name)
        x = layers.MaxPooling2D(2, padding="same", name=f"block{b}_pool")(x)
    return x


def build_body(
    arch: str,
    inputs,
    *,
    width: int = 16,
    blocks: tuple[int, ...] = VGG16_BLOCKS,
    max_width_multiplier: int = 8,
    stem_stride: int = 1,
    group_channels: int = 8,
    kernel_size: int = 3,
):
    """The ``vgg`` or ``invgg`` convolutional body on ``inputs``; its last activation is ``features``."""
    if arch not in ARCHITECTURES:
        raise ArchitectureError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    if width < 1 or stem_stride < 1 or group_channels < 1 or not blocks or any(d < 1 for d in blocks):
        raise ArchitectureError("width, stem stride, group channels and every block depth must be positive")
    widths = _block_widths(width, len(blocks), max_width_multiplier)
    if arch == "vgg":
        return _vgg_body(inputs, widths, tuple(blocks), stem_stride)
    return _invgg_body(inputs, widths, tuple(blocks), stem_stride, group_channels, kernel_size)
