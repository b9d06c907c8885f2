"""Colour helpers shared by the sprite benchmark (train/sprite_eval.py, train/difficulty.py) and the
annotation pipeline's colour detector (annotate/detection.py). DESIGN.md §2 lets both import `model`."""

from __future__ import annotations

import numpy as np


def rgb_to_hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8/float RGB [..., 3] in [0, 255] -> hue in degrees [0, 360), saturation and value in [0, 1] (float32)."""
    x = np.asarray(rgb, dtype=np.float32) / 255.0
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    mx, mn = x.max(-1), x.min(-1)
    d = mx - mn
    safe = np.where(d > 0, d, 1.0)
    h = np.where(mx == r, ((g - b) / safe) % 6.0, np.where(mx == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0)) * 60.0
    h = np.where(d > 0, h, 0.0) % 360.0
    s = np.where(mx > 0, d / np.where(mx > 0, mx, 1.0), 0.0)
    return h.astype(np.float32), s.astype(np.float32), mx.astype(np.float32)


def hue_dist(h: np.ndarray, ref: float) -> np.ndarray:
    """Angular distance in degrees between hues `h` and `ref` (0 to 180)."""
    d = np.abs(h - ref) % 360.0
    return np.minimum(d, 360.0 - d)
