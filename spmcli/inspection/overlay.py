"""Pictures of a detector's findings that a person can read.

:func:`anomaly_overlay` puts two panels side by side: on the left the image
itself, untouched except for a thin contour drawn just *outside* each
anomalous region (so the defect's own pixels stay visible: painting a heat map
over a thin crack hides the crack), on the right the same image dimmed, with
the anomaly map laid over it translucently on a fixed scale (no colour below
half the pixel threshold, full colour at twice the threshold), so the maps of
two images can be compared. The binary mask is :func:`defect_mask`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from .regions import Region, defect_mask

__all__ = ["CONTOUR_COLOUR", "anomaly_overlay", "defect_mask", "heat_colours"]

# Anchor colours of a black-red-yellow-white heat scale (like "hot"/"inferno").
_HEAT_ANCHORS = np.array([[0.0, 0.0, 0.0], [0.5, 0.0, 0.1], [0.9, 0.2, 0.0], [1.0, 0.8, 0.0], [1.0, 1.0, 0.9]])
# Contours are pure cyan: rare in inspection images and far from the heat scale.
CONTOUR_COLOUR = np.array([0.0, 1.0, 1.0])
# Pixels between the panels (white).
_GAP = 4


def heat_colours(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] to RGB on a black-red-yellow-white scale, shape (..., 3)."""
    values = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64)), 0.0, 1.0)
    position = values * (len(_HEAT_ANCHORS) - 1)
    lower = np.minimum(position.astype(int), len(_HEAT_ANCHORS) - 2)
    fraction = (position - lower)[..., None]
    return _HEAT_ANCHORS[lower] * (1 - fraction) + _HEAT_ANCHORS[lower + 1] * fraction


def _as_rgb(pixels: np.ndarray) -> np.ndarray:
    pixels = np.asarray(pixels, dtype=np.float64)
    brightest = float(pixels.max(initial=0.0))
    if brightest > 1.0:
        # A float image in other units (the detector divides by the level, so
        # it scores alike): shown on its own scale rather than clipped to white.
        pixels = pixels / brightest
    pixels = np.clip(pixels, 0.0, 1.0)
    if pixels.ndim == 2:
        return np.repeat(pixels[:, :, None], 3, axis=2)
    if pixels.shape[2] == 1:
        return np.repeat(pixels, 3, axis=2)
    if pixels.shape[2] == 2:  # grey + alpha
        return np.repeat(pixels[:, :, :1], 3, axis=2)
    return pixels[:, :, :3].copy()


def anomaly_overlay(
    pixels: np.ndarray,
    anomaly_map: np.ndarray,
    pixel_threshold: float,
    *,
    regions: Sequence[Region] | None = None,
    contour_level: float | None = None,
) -> np.ndarray:
    """The image with its regions outlined, beside the anomaly map over the image.

    Parameters
    ----------
    pixels : ndarray, shape (H, W) or (H, W, C)
        The scored image, 0..1 (grey or colour); an image with values above 1
        (a float image in other units) is shown divided by its maximum.
    anomaly_map : ndarray, shape (H, W)
        Its anomaly map (:attr:`ImageScore.anomaly_map`).
    pixel_threshold : float
        Map value above which a pixel is defective: region contours follow it,
        and the colour scale runs from half of it to twice it.
    regions : sequence of Region, optional
        When given, only regions whose bounding box is listed are outlined
        (e.g. the ones a report lists; none for an empty sequence); by
        default every component above the contour level.
    contour_level : float, optional
        Map level the contours follow (:attr:`ImageScore.region_level`);
        default ``pixel_threshold``. The colour scale always follows
        ``pixel_threshold``, so that maps of different images compare.

    Returns
    -------
    ndarray, shape (H, 2 W + 4, 3), 0..1
        Left: the image with cyan contours one pixel outside each region.
        Right: the image dimmed to 60% under the heat-coloured map (opacity
        grows with the anomaly). A white 4-pixel gap separates them.
    """
    image = _as_rgb(pixels)
    anomaly_map = np.nan_to_num(np.asarray(anomaly_map, dtype=np.float64))
    if anomaly_map.shape != image.shape[:2]:
        raise ValueError(f"anomaly map {anomaly_map.shape} does not match the image {image.shape[:2]}")
    level = pixel_threshold if contour_level is None else contour_level
    mask = defect_mask(anomaly_map, level, regions=regions)
    # One-pixel ring, one pixel outside the region: the region itself is not painted.
    grown = ndimage.binary_dilation(mask, iterations=1)
    ring = ndimage.binary_dilation(grown, iterations=1) & ~grown
    left = image.copy()
    left[ring] = CONTOUR_COLOUR
    low, high = 0.5 * pixel_threshold, 2.0 * pixel_threshold
    strength = np.clip((anomaly_map - low) / max(high - low, 1e-12), 0.0, 1.0)
    alpha = (0.8 * strength)[:, :, None]
    right = image * 0.6 * (1 - alpha) + heat_colours(strength) * alpha
    gap = np.ones((image.shape[0], _GAP, 3))
    return np.concatenate([left, gap, right], axis=1)
