from __future__ import annotations

import numpy as np

from ml.explain import overlay_png
from ml.preprocessing import load_grayscale


def test_overlay_is_a_png_of_the_scan_size_even_for_a_smaller_heatmap():
    image = np.linspace(0, 65535, 64 * 48, dtype=np.float64).reshape(64, 48).astype(np.uint16)

    png = overlay_png(image, np.ones((8, 6)))

    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert load_grayscale(png).shape == (64, 48)
