"""Probe defects: simple defects drawn on good images at learning time, so the
detector can check which of its modes tells them from the clean images better.

They stand for the kinds of change an inspection looks for (a thin line, a few
spots, a stain, a patch of missing texture), drawn at a size proportional to
the detector's working scale so that a large image gets a defect of the same
share of its working image as a small one. They are a yardstick for choosing
between two models of the same good images, not a model of any real defect.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["PROBE_KINDS", "draw_probe_defect"]

PROBE_KINDS = ("line", "spots", "stain", "missing_texture")


def _segment_distance(rows: np.ndarray, cols: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Distance of each pixel (coordinates ``rows``, ``cols``) to the segment ``start``-``end``."""
    direction = end - start
    along = ((rows - start[0]) * direction[0] + (cols - start[1]) * direction[1]) / max(direction @ direction, 1e-12)
    along = np.clip(along, 0.0, 1.0)
    return np.hypot(rows - start[0] - along * direction[0], cols - start[1] - along * direction[1])


def draw_probe_defect(image: np.ndarray, kind: str, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """``image`` with one probe defect of ``kind`` drawn on it.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
        On the 0..1 scale.
    kind : {"line", "spots", "stain", "missing_texture"}
        ``"line"``: a straight line 1-2 working pixels wide across 40-80% of
        the smaller side, pulled 55% of the way to black or to white;
        ``"spots"``: 3-6 discs of radius 2-4, 70% of the way to black or to
        white; ``"stain"``: a soft blob of radius 14-28 darkening the image
        to 65-75%; ``"missing_texture"``: a disc of radius 12-24 where the
        image is replaced by its own blurred version (same level, no
        texture).
    rng : numpy.random.Generator
        Draws the defect's place, size and tone.
    scale : float
        Pixels of ``image`` per working pixel: every length above is
        multiplied by it.

    Returns
    -------
    ndarray
        A new array of the same shape, clipped to 0..1.
    """
    pixels = np.asarray(image, dtype=np.float64)
    height, width = pixels.shape[:2]
    centre = np.array([rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width])
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    tone = 0.0 if rng.random() < 0.5 else 1.0
    if kind == "line":
        length = rng.uniform(0.4, 0.8) * min(height, width)
        angle = rng.uniform(0.0, np.pi)
        half = 0.5 * length * np.array([np.sin(angle), np.cos(angle)])
        half_width = 0.5 * rng.uniform(1.0, 2.0) * scale
        distance = _segment_distance(rows, cols, centre - half, centre + half)
        weight = 0.55 * np.clip(half_width + 0.5 - distance, 0.0, 1.0)
        target = np.full_like(pixels, tone)
    elif kind == "spots":
        weight = np.zeros((height, width))
        for _ in range(int(rng.integers(3, 7))):
            spot = np.array([rng.uniform(0.15, 0.85) * height, rng.uniform(0.15, 0.85) * width])
            radius = rng.uniform(2.0, 4.0) * scale
            weight = np.maximum(weight, np.hypot(rows - spot[0], cols - spot[1]) <= radius)
        weight = 0.7 * weight
        target = np.full_like(pixels, tone)
    elif kind == "stain":
        radius = rng.uniform(14.0, 28.0) * scale
        distance = np.hypot(rows - centre[0], cols - centre[1])
        weight = 1.0 / (1.0 + np.exp((distance - radius) / (3.0 * scale)))
        target = pixels * rng.uniform(0.65, 0.75)
    elif kind == "missing_texture":
        radius = rng.uniform(12.0, 24.0) * scale
        weight = (np.hypot(rows - centre[0], cols - centre[1]) <= radius).astype(np.float64)
        sigma = (12.0 * scale, 12.0 * scale, 0.0)[: pixels.ndim]
        target = ndimage.gaussian_filter(pixels, sigma, mode="nearest")
    else:
        raise ValueError(f"kind must be one of {', '.join(PROBE_KINDS)}, got {kind!r}")
    if pixels.ndim == 3:
        weight = weight[:, :, None]
    return np.clip(pixels * (1.0 - weight) + target * weight, 0.0, 1.0)
