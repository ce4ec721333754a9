"""Noise level estimation."""

from __future__ import annotations

import numpy as np
from skimage.restoration import estimate_sigma

__all__ = ["estimate_noise_sigma"]


def estimate_noise_sigma(pixels: np.ndarray) -> float:
    """Standard deviation of additive white Gaussian noise, on the image's own scale.

    The wavelet-domain robust median estimator of Donoho and Johnstone (1994),
    as implemented by :func:`skimage.restoration.estimate_sigma`, averaged over
    colour channels.

    References
    ----------
    .. [1] D. L. Donoho and I. M. Johnstone, "Ideal spatial adaptation by
           wavelet shrinkage", Biometrika 81(3), 1994.
    """
    pixels = np.asarray(pixels, dtype=np.float64)
    channel_axis = -1 if pixels.ndim == 3 else None
    return float(estimate_sigma(pixels, channel_axis=channel_axis, average_sigmas=True))
