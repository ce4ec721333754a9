"""The image score, and the decision thresholds from held-out good images.

An image's score is a *soft maximum* of its anomaly map, the power mean
``mean(map ** p) ** (1 / p)`` (:func:`image_score`): between the map's mean
(p = 1) and its maximum (p = infinity). With the default p = 8 it is led by
the most anomalous few percent of the image, so one stray pixel at the border
of a good image counts less than a defect that covers a patch or two, and a
defect spread thinly over a larger area still counts.

The image threshold is a high quantile of the anomaly scores of good images that
were not used for learning (calibration images): with the default 0.95,
about 5% of good images are flagged, by design, and everything that scores
above every good image is. With few calibration images an empirical 95%
quantile is just about their maximum, so a normal distribution is fitted
instead, and the caller is warned that the threshold is rough. The *pixel*
threshold, which cuts an anomalous image's map into regions and masks, is the
same quantile of the calibration images' map maxima: about 5% of good images
have a pixel above it.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy.special import ndtri

__all__ = [
    "MIN_CALIBRATION_IMAGES",
    "MIN_EMPIRICAL_CALIBRATION",
    "calibrated_threshold",
    "check_calibration_count",
    "image_score",
    "split_calibration",
]

# Fewer calibration images than this: refused (no spread can be estimated).
MIN_CALIBRATION_IMAGES = 3
# Fewer than this: the threshold is the quantile of a normal fit, with a warning.
MIN_EMPIRICAL_CALIBRATION = 20


def image_score(anomaly_map: np.ndarray, power: float) -> float:
    """The power mean ``mean(map ** power) ** (1 / power)`` of a non-negative map.

    Parameters
    ----------
    anomaly_map : ndarray
        Non-negative anomaly values (any shape).
    power : float
        At least 1; ``math.inf`` gives the maximum.

    Returns
    -------
    float
        Finite, between the map's mean and its maximum (a non-finite maximum
        gives 1e300).

    Examples
    --------
    >>> values = np.array([0.0, 0.0, 0.0, 2.0])
    >>> round(image_score(values, 1.0), 3), round(image_score(values, 8.0), 3), image_score(values, math.inf)
    (0.5, 1.682, 2.0)
    """
    values = np.asarray(anomaly_map)
    # float32 maps (the detector's) stay float32: the terms lie in [0, 1] and
    # are summed in float64, twice as fast as converting the map first.
    if values.dtype != np.float32:
        values = values.astype(np.float64)
    peak = float(values.max()) if values.size else 0.0
    if not math.isfinite(peak):
        return 1e300 if peak > 0 else 0.0
    if peak <= 0 or math.isinf(power):
        return max(peak, 0.0)
    # Divided by the peak first, so large maps cannot overflow; an integer
    # power of two is repeated squaring (several times faster than np.power).
    relative = values / peak
    if power == 2 ** round(math.log2(power)) and power <= 64:
        for _ in range(round(math.log2(power))):
            relative = relative * relative
    else:
        relative = relative**power
    return peak * float(relative.mean(dtype=np.float64)) ** (1.0 / power)


def check_calibration_count(n_images: int) -> None:
    """Refuse fewer than 3 calibration images; warn (``UserWarning``) under 20.

    Raises
    ------
    ValueError
        With fewer than :data:`MIN_CALIBRATION_IMAGES` images.
    """
    if n_images < MIN_CALIBRATION_IMAGES:
        raise ValueError(
            f"{n_images} calibration image(s) given; the threshold needs at least {MIN_CALIBRATION_IMAGES} "
            f"good images that are not learned from (20 or more for a reliable threshold)"
        )
    if n_images < MIN_EMPIRICAL_CALIBRATION:
        warnings.warn(
            f"only {n_images} calibration images: the threshold is rough (a normal fit to their scores); "
            f"give {MIN_EMPIRICAL_CALIBRATION} or more good images that are not learned from",
            UserWarning,
            stacklevel=3,
        )


def calibrated_threshold(scores: np.ndarray, quantile: float) -> tuple[float, str]:
    """The decision threshold from good images' scores, and how it was chosen.

    With :data:`MIN_EMPIRICAL_CALIBRATION` (20) scores or more: their empirical
    ``quantile``. With fewer, a normal distribution is fitted (mean, standard
    deviation) and its ``quantile`` point taken. A quantile of 1 is always the
    maximum.

    Returns
    -------
    threshold : float
    method : str
        For the report, e.g. ``"quantile 0.95 of 100 calibration image scores"``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        raise ValueError("no calibration scores")
    if scores.size >= MIN_EMPIRICAL_CALIBRATION or quantile >= 1:
        threshold = float(np.quantile(scores, quantile))
        return threshold, f"quantile {quantile:g} of {scores.size} calibration image scores"
    spread = float(scores.std(ddof=1)) if scores.size > 1 else 0.0
    threshold = float(scores.mean() + ndtri(quantile) * spread)
    return threshold, (
        f"quantile {quantile:g} of a normal fit to {scores.size} calibration image scores "
        f"(fewer than {MIN_EMPIRICAL_CALIBRATION})"
    )


def split_calibration(n_images: int, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of ``n_images`` good images into training and calibration indices.

    At least one image goes to each side; needs two images or more.
    """
    if n_images < 2:
        raise ValueError("holding out calibration images needs at least 2 good images (or give calibration images)")
    if not 0 < share < 1:
        raise ValueError(f"calibration share must be between 0 and 1, got {share}")
    n_calibration = min(n_images - 1, max(1, round(share * n_images)))
    order = np.random.default_rng(seed).permutation(n_images)
    return np.sort(order[n_calibration:]), np.sort(order[:n_calibration])
