"""Render a Grad-CAM heatmap over the scan as a PNG (no TensorFlow needed)."""

from __future__ import annotations

import cv2
import numpy as np

from ml.errors import ImageError
from ml.preprocessing import to_single_channel, to_unit_float


def overlay_png(image: np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.4) -> bytes:
    """Colour (JET) overlay of ``heatmap`` (values in [0, 1]) on the grey ``image``, encoded as PNG.

    The heatmap is resized to the image if their sizes differ; weak activations stay transparent so the
    anatomy remains readable.
    """
    grey = to_single_channel(np.asarray(image))
    base = np.rint(to_unit_float(grey) * 255.0).astype(np.uint8)
    height, width = base.shape
    heat = np.clip(np.nan_to_num(np.asarray(heatmap, dtype=np.float32)), 0.0, 1.0)
    if heat.ndim != 2:
        raise ImageError(f"heatmap must be 2-D, got shape {heat.shape}")
    if heat.shape != base.shape:
        heat = cv2.resize(heat, (width, height), interpolation=cv2.INTER_LINEAR)
    coloured = cv2.applyColorMap(np.rint(heat * 255.0).astype(np.uint8), cv2.COLORMAP_JET)
    base_bgr = cv2.cvtColor(base, cv2.COLOR_GRAY2BGR)
    weight = (alpha * heat)[:, :, np.newaxis]
    blended = np.rint(base_bgr * (1.0 - weight) + coloured * weight).astype(np.uint8)
    ok, encoded = cv2.imencode(".png", blended)
    if not ok:
        raise ImageError("could not encode the overlay as PNG")
    return encoded.tobytes()
