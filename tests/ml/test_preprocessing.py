from __future__ import annotations

import io
import json

import cv2
import numpy as np
import pytest
from PIL import Image

from ml.errors import ImageError
from ml.preprocessing import PreprocessSpec, load_grayscale, preprocess


def _phantom(size: int = 96) -> np.ndarray:
    """A smooth grey gradient with a bright off-centre blob: asymmetric, so flips are detectable."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    blob = np.exp(-((xx - 0.7) ** 2 + (yy - 0.4) ** 2) / 0.01)
    return np.clip(0.2 + 0.3 * yy + 0.5 * blob, 0, 1)


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG") if mode else Image.fromarray(array).save(
        buffer, format="PNG"
    )
    return buffer.getvalue()


def test_load_grayscale_reads_16_bit_png():
    image16 = (_phantom() * 4000).astype(np.uint16)
    ok, encoded = cv2.imencode(".png", image16)
    assert ok

    decoded = load_grayscale(encoded.tobytes())

    assert decoded.dtype == np.uint16
    np.testing.assert_array_equal(decoded, image16)


def test_load_grayscale_reads_rgba_and_rgb_png_as_one_channel():
    grey = (_phantom() * 255).astype(np.uint8)
    rgba = np.dstack([grey, grey, grey, np.full_like(grey, 128)])

    for data in (_png(rgba), _png(rgba[:, :, :3])):
        decoded = load_grayscale(data)
        assert decoded.shape == grey.shape
        assert np.abs(decoded.astype(int) - grey).max() <= 1


def test_load_grayscale_reads_jpeg_from_path(tmp_path):
    grey = (_phantom() * 255).astype(np.uint8)
    path = tmp_path / "scan.jpg"
    Image.fromarray(grey).save(path, format="JPEG", quality=95)

    decoded = load_grayscale(path)

    assert decoded.shape == grey.shape and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - grey).mean() < 3


@pytest.mark.parametrize(
    "data",
    [b"", b"not an image at all", _png((_phantom() * 255).astype(np.uint8))[:300]],
    ids=["empty", "garbage", "truncated-png"],
)
def test_load_grayscale_rejects_corrupt_input(data):
    with pytest.raises(ImageError):
        load_grayscale(data)


def test_load_grayscale_rejects_truncated_jpeg():
    buffer = io.BytesIO()
    Image.fromarray((_phantom() * 255).astype(np.uint8)).save(buffer, format="JPEG")

    with pytest.raises(ImageError, match="truncated|damaged") as raised:
        load_grayscale(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    assert raised.value.code == "corrupt_image"


def test_training_and_the_worker_decode_a_16_bit_colour_png_alike():
    """One decoder: the training loader and the worker's view keep all 16 bits of a colour PNG."""
    import cv2

    from diagnosis.imaging import load_model_view

    rgb = np.rint(np.dstack([_phantom()] * 3) * 65535).astype(np.uint16)
    rgb[:, :, 0] //= 2  # not grey: the channels differ
    ok, encoded = cv2.imencode(".png", rgb)
    assert ok
    data = encoded.tobytes()

    decoded = load_grayscale(data)

    assert decoded.dtype == np.uint16
    assert len(np.unique(decoded)) > 256  # not reduced to 8 bits
    np.testing.assert_array_equal(decoded, load_model_view(data))


def test_load_grayscale_reports_missing_file(tmp_path):
    with pytest.raises(ImageError, match="cannot read"):
        load_grayscale(tmp_path / "missing.png")


def test_preprocess_gives_same_input_for_8_bit_16_bit_float_rgb_and_rgba():
    spec = PreprocessSpec(input_size=32)
    phantom = _phantom()
    as_uint8 = np.rint(phantom * 255).astype(np.uint8)
    variants = {
        "uint8": as_uint8,
        "uint16 (12-bit range)": np.rint(phantom * 4095).astype(np.uint16),
        "float": phantom.astype(np.float32),
        "rgb": np.dstack([as_uint8] * 3),
        "rgba": np.dstack([as_uint8] * 3 + [np.zeros_like(as_uint8)]),
    }
    reference = preprocess(as_uint8, spec)

    for name, image in variants.items():
        result = preprocess(image, spec)
        assert result.shape == (32, 32, 1) and result.dtype == np.float32, name
        assert 0.0 <= result.min() and result.max() <= 1.0, name
        assert np.abs(result - reference).mean() < 0.05, name


def test_preprocess_crops_the_region_of_interest():
    image = np.zeros((100, 100), dtype=np.uint8)
    image[50:, 50:] = 255
    spec = PreprocessSpec(input_size=16, roi=(0.5, 0.5, 1.0, 1.0))

    result = preprocess(image, spec)

    assert result.min() == result.max()


def test_preprocess_spec_round_trips_through_json():
    spec = PreprocessSpec(input_size=128, roi=(0.1, 0.2, 0.8, 0.9), clahe_clip_limit=3.0)

    assert PreprocessSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_preprocess_spec_rejects_an_empty_roi():
    with pytest.raises(ValueError, match="roi"):
        PreprocessSpec(roi=(0.5, 0.5, 0.4, 0.9))
