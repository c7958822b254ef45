"""Image decoding and the one preprocessing function shared by training and inference.

``preprocess`` turns any 2-D or HxWxC image (uint8, uint16 or float in [0, 1]) into the model input:
one channel, robust intensity window, CLAHE contrast enhancement, optional region-of-interest crop,
resize to the input size, float32 in [0, 1] with shape (size, size, 1). ``PreprocessSpec`` holds every
setting and travels in the model card, so inference crops and enhances exactly as training did.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageFile

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


# The one decoder of PNG and JPEG pixels: training, evaluation and the worker (through
# ``diagnosis.imaging.load_model_view``) all read images with ``decode_grey``.

DEFAULT_MAX_PIXELS = 40_000_000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8\xff"
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])
_BOMB_MESSAGE = "The image header claims far too many pixels to decode safely."


def raster_format(data: bytes) -> str:
    """ "png" or "jpeg" from the file's signature; ImageError otherwise."""
    if data.startswith(PNG_SIGNATURE):
        return "png"
    if data.startswith(JPEG_SOI):
        return "jpeg"
    raise ImageError("The file is not a PNG or JPEG image.", "unsupported_type")


def open_raster(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open a PNG or JPEG with Pillow, check the header dimensions, then decode every pixel."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # A process-wide Pillow switch: with it on, truncated files would decode "successfully".
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is on; images cannot be validated safely.")
    label = raster_format(data).upper()
    try:
        # Restricting Pillow to the sniffed format keeps it from trying its other (less used) decoders.
        image = Image.open(io.BytesIO(data), formats=[label])
    except Image.DecompressionBombError as error:
        raise ImageError(_BOMB_MESSAGE, "too_many_pixels") from error
    except Exception as error:
        raise ImageError(f"The {label} file is damaged and cannot be read.") from error
    check_pixel_count(image.width, image.height, max_pixels)
    try:
        image.load()
    except Image.DecompressionBombError as error:
        raise ImageError(_BOMB_MESSAGE, "too_many_pixels") from error
    except Exception as error:
        raise ImageError(f"The {label} file is truncated or damaged and cannot be decoded.") from error
    return image


def check_pixel_count(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"The image header gives an empty size ({width}x{height}).")
    if width * height > max_pixels:
        raise ImageError(
            f"The image is {width}x{height} pixels ({width * height:,}); the limit is {max_pixels:,}.",
            "too_many_pixels",
        )


def decode_grey(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """PNG or JPEG bytes -> 2-D grey array: uint8, or uint16 for 16-bit PNGs (grey or colour).

    Colour uses luma weights, alpha carries no anatomy and is dropped. ImageError (with its ``code``) on
    empty, unsupported, corrupt, truncated or oversized input.
    """
    if not data:
        raise ImageError("The file is empty.", "empty")
    image = open_raster(data, max_pixels=max_pixels)
    if png_is_16_bit_colour(data):
        decoded = decode_16_bit_png_pixels(data)
        if decoded.ndim == 2:
            return decoded.astype(np.uint16)
        rgb = decoded[:, :, 2::-1].astype(np.float64)  # OpenCV gives BGR(A)
        return np.rint(rgb @ LUMA_WEIGHTS).astype(np.uint16)
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(image).astype(np.uint16)
    if image.mode == "I":
        return np.clip(np.asarray(image), 0, 65535).astype(np.uint16)
    if image.mode == "L":
        return np.asarray(image)
    if image.mode == "LA":
        return np.asarray(image.getchannel("L"))
    # Palette, bilevel, RGB(A), CMYK...: go through RGB so alpha and palettes are resolved first.
    return np.asarray(image.convert("RGB").convert("L"))


def png_is_16_bit_colour(data: bytes) -> bool:
    # IHDR is always the first chunk: bit depth at byte 24, colour type at 25 (2 = RGB, 4 = grey+alpha,
    # 6 = RGBA). Pillow reduces these to 8 bits, so they are decoded with OpenCV to keep the precision.
    return data.startswith(PNG_SIGNATURE) and len(data) > 25 and data[24] == 16 and data[25] in (2, 4, 6)


def decode_16_bit_png_pixels(data: bytes) -> np.ndarray:
    """The PNG's pixels as OpenCV decodes them: uint16, BGR(A), with any EXIF orientation NOT applied."""
    decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise ImageError("The PNG file is truncated or damaged and cannot be decoded.")
    return decoded


def load_grayscale(source: bytes | str | Path) -> np.ndarray:
    """``decode_grey`` of a file (or bytes); ImageError on a missing, corrupt or truncated one."""
    if isinstance(source, str | Path):
        try:
            source = Path(source).read_bytes()
        except OSError as exc:
            raise ImageError(f"cannot read image file {source}: {exc.strerror or exc}") from exc
    return decode_grey(bytes(source))


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
