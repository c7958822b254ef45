"""Image decoding and the one preprocessing function shared by training and inference.

``preprocess`` turns any 2-D or HxWxC image (uint8, uint16 or float in [0, 1]) into the model input:
one channel, robust intensity window, CLAHE contrast enhancement, optional region-of-interest crop,
resize to the input size, float32 in [0, 1] with shape (size, size, 1). ``PreprocessSpec`` holds every
setting and travels in the model card, so inference crops and enhances exactly as training did.

Augmentation (training only, and test-time augmentation) moves the anatomy slightly before
``preprocess``: small rotations, zoom and shifts, then brightness/contrast changes on the result. Sagittal
images are never flipped left-right: anterior/posterior orientation is anatomy.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from ml.errors import ImageError

FULL_IMAGE = (0.0, 0.0, 1.0, 1.0)


@dataclass(frozen=True)
class PreprocessSpec:
    """Model-input settings. ``roi`` is (x0, y0, x1, y1) as fractions of the image width/height."""

    input_size: int = 160
    roi: tuple[float, float, float, float] = FULL_IMAGE
    clahe_clip_limit: float = 2.0
    clahe_tile_grid: int = 8
    window_percentiles: tuple[float, float] = (0.5, 99.5)

    def __post_init__(self):
        x0, y0, x1, y1 = self.roi
        if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
            raise ValueError(f"roi must be fractions with x0 < x1 and y0 < y1, got {self.roi}")
        if self.input_size < 8:
            raise ValueError("input_size must be at least 8")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PreprocessSpec:
        known = {name for name in cls.__dataclass_fields__}
        values = {key: value for key, value in data.items() if key in known}
        for key in ("roi", "window_percentiles"):
            if key in values:
                values[key] = tuple(float(v) for v in values[key])
        return cls(**values)


@dataclass(frozen=True)
class AugmentSpec:
    """Ranges of the random training augmentation (and the fixed test-time variants)."""

    max_rotation_deg: float = 7.0
    max_zoom: float = 0.08
    max_shift: float = 0.05
    max_brightness: float = 0.08
    max_contrast: float = 0.12
    tta_variants: tuple[tuple[float, float, float], ...] = field(
        # (zoom, shift_x, shift_y): identity first, then small shifts and zooms, never flips
        default=((1.0, 0.0, 0.0), (1.0, 0.03, 0.0), (1.0, -0.03, 0.0), (1.0, 0.0, 0.03), (1.0, 0.0, -0.03),
                 (1.05, 0.0, 0.0), (0.95, 0.0, 0.0)),
    )  # fmt: skip


def load_grayscale(source: bytes | str | Path) -> np.ndarray:
    """Decode a PNG/JPEG (8/16-bit, grey/RGB/RGBA/palette) into a 2-D uint8 or uint16 array.

    Raises ImageError on missing, corrupt or truncated input.
    """
    if isinstance(source, str | Path):
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise ImageError(f"cannot read image file {source}: {exc.strerror or exc}") from exc
    else:
        data = bytes(source)
    if not data:
        raise ImageError("image is empty (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return _pil_to_grayscale(image)
    except UnidentifiedImageError as exc:
        raise ImageError("not a readable PNG or JPEG image") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"corrupt or truncated image: {exc}") from exc


def _pil_to_grayscale(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(image, dtype=np.uint16).copy()
    if image.mode == "I":
        array = np.asarray(image)
        return np.clip(array, 0, 65535).astype(np.uint16)
    if image.mode == "F":
        array = np.asarray(image, dtype=np.float32)
        return to_unit_float(array)
    if image.mode == "L":
        return np.asarray(image, dtype=np.uint8).copy()
    # RGB, RGBA, LA, P, CMYK...: alpha carries no anatomy, PIL's luma conversion drops it.
    return np.asarray(image.convert("L"), dtype=np.uint8).copy()


def to_single_channel(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C) with C in 1..4 -> (H, W); alpha is ignored, RGB uses luma weights."""
    image = np.asarray(image)
    if image.ndim == 2:
        return image
    if image.ndim != 3 or image.shape[2] not in (1, 2, 3, 4):
        raise ImageError(f"expected a 2-D image or HxWxC with 1-4 channels, got shape {image.shape}")
    if image.shape[2] in (1, 2):
        return image[:, :, 0]
    rgb = image[:, :, :3].astype(np.float32)
    grey = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    if np.issubdtype(image.dtype, np.integer):
        return np.clip(np.rint(grey), 0, np.iinfo(image.dtype).max).astype(image.dtype)
    return grey


def to_unit_float(image: np.ndarray) -> np.ndarray:
    """uint8 / uint16 / float image -> float32 in [0, 1] (floats are clipped, integers scaled by dtype)."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    if np.issubdtype(image.dtype, np.integer):
        return np.clip(image.astype(np.float32), 0, 255) / 255.0
    if np.issubdtype(image.dtype, np.floating) or image.dtype == bool:
        return np.clip(np.nan_to_num(image.astype(np.float32)), 0.0, 1.0)
    raise ImageError(f"unsupported image dtype {image.dtype}")


def _window_to_uint8(image: np.ndarray, percentiles: tuple[float, float]) -> np.ndarray:
    # A robust window makes 16-bit scans that use only part of their range look like 8-bit ones.
    values = to_unit_float(image)
    low, high = np.percentile(values, percentiles)
    if high - low < 1e-6:
        low, high = float(values.min()), float(values.max())
    if high - low < 1e-6:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = np.clip((values - low) / (high - low), 0.0, 1.0)
    return np.rint(scaled * 255.0).astype(np.uint8)


def crop_box(shape: tuple[int, int], roi: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    """ROI fractions -> integer pixel box (x0, y0, x1, y1) for an image of ``shape`` (H, W)."""
    height, width = shape
    x0, y0, x1, y1 = roi
    left, top = int(round(x0 * width)), int(round(y0 * height))
    right = max(int(round(x1 * width)), left + 1)
    bottom = max(int(round(y1 * height)), top + 1)
    return left, top, right, bottom


def enhance(image: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Any 2-D / HxWxC image -> the full-resolution uint8 (H, W) after the robust window and CLAHE."""
    grey = to_single_channel(image)
    if grey.shape[0] < 2 or grey.shape[1] < 2:
        raise ImageError(f"image too small: {grey.shape}")
    windowed = _window_to_uint8(grey, spec.window_percentiles)
    clahe = cv2.createCLAHE(
        clipLimit=spec.clahe_clip_limit, tileGridSize=(spec.clahe_tile_grid, spec.clahe_tile_grid)
    )
    return clahe.apply(windowed)


def preprocess(image: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Any 2-D / HxWxC image (uint8, uint16 or float in [0, 1]) -> float32 (size, size, 1) in [0, 1]."""
    enhanced = enhance(image, spec)
    left, top, right, bottom = crop_box(enhanced.shape, spec.roi)
    cropped = enhanced[top:bottom, left:right]
    size = (spec.input_size, spec.input_size)
    interpolation = cv2.INTER_AREA if cropped.shape[0] > spec.input_size else cv2.INTER_LINEAR
    resized = cv2.resize(cropped, size, interpolation=interpolation)
    return (resized.astype(np.float32) / 255.0)[:, :, np.newaxis]


def _affine(image: np.ndarray, angle_deg: float, zoom: float, shift_x: float, shift_y: float) -> np.ndarray:
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2.0, height / 2.0), angle_deg, zoom)
    matrix[0, 2] += shift_x * width
    matrix[1, 2] += shift_y * height
    return cv2.warpAffine(
        image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )


def augment_geometry(image: np.ndarray, rng: np.random.Generator, augment: AugmentSpec) -> np.ndarray:
    """Random small rotation, zoom and shift of the whole (un-cropped) image; no flips."""
    grey = to_single_channel(image)
    if grey.dtype not in (np.uint8, np.uint16):
        grey = to_unit_float(grey)
    return _affine(
        grey,
        rng.uniform(-augment.max_rotation_deg, augment.max_rotation_deg),
        1.0 + rng.uniform(-augment.max_zoom, augment.max_zoom),
        rng.uniform(-augment.max_shift, augment.max_shift),
        rng.uniform(-augment.max_shift, augment.max_shift),
    )


def augment_intensity(x: np.ndarray, rng: np.random.Generator, augment: AugmentSpec) -> np.ndarray:
    """Random brightness/contrast change of a preprocessed (size, size, 1) input, kept in [0, 1]."""
    contrast = 1.0 + rng.uniform(-augment.max_contrast, augment.max_contrast)
    brightness = rng.uniform(-augment.max_brightness, augment.max_brightness)
    mean = float(x.mean())
    return np.clip((x - mean) * contrast + mean + brightness, 0.0, 1.0).astype(np.float32)


def preprocess_augmented(
    image: np.ndarray, spec: PreprocessSpec, rng: np.random.Generator, augment: AugmentSpec
) -> np.ndarray:
    """Training input: geometric augmentation, the shared ``preprocess``, then intensity augmentation."""
    return augment_intensity(preprocess(augment_geometry(image, rng, augment), spec), rng, augment)


def tta_inputs(image: np.ndarray, spec: PreprocessSpec, augment: AugmentSpec) -> list[np.ndarray]:
    """The fixed test-time variants of one image (identity first), each through ``preprocess``."""
    grey = to_single_channel(image)
    if grey.dtype not in (np.uint8, np.uint16):
        grey = to_unit_float(grey)
    return [preprocess(_affine(grey, 0.0, zoom, dx, dy), spec) for zoom, dx, dy in augment.tta_variants]
