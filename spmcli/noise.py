"""Noise level estimation."""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["MIN_ESTIMATION_SIDE", "estimate_noise_sigma"]

# The wavelet estimator needs a few detail coefficients per axis to mean anything.
MIN_ESTIMATION_SIDE = 8


def estimate_noise_sigma(pixels: np.ndarray) -> float:
    """Standard deviation of additive white Gaussian noise, on the image's own scale.

    The wavelet-domain robust median estimator of Donoho and Johnstone (1994),
    as implemented by :func:`skimage.restoration.estimate_sigma`, averaged over
    colour channels.

    Raises
    ------
    ValueError
        When the image is too small (under 8 pixels a side) to estimate from.

    References
    ----------
    .. [1] D. L. Donoho and I. M. Johnstone, "Ideal spatial adaptation by
           wavelet shrinkage", Biometrika 81(3), 1994.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> noisy = 0.5 + 0.1 * rng.standard_normal((128, 128))
    >>> round(estimate_noise_sigma(noisy), 2)
    0.1
    """
    pixels = np.asarray(pixels, dtype=np.float64)
    height, width = pixels.shape[:2]
    if min(height, width) < MIN_ESTIMATION_SIDE:
        raise ValueError(
            f"image is {width} x {height} pixels, too small to estimate its noise level "
            f"(needs {MIN_ESTIMATION_SIDE} a side); give the noise level with --sigma"
        )
    # Imported here: skimage.restoration pulls in scipy.stats (0.8 s), which
    # a command given --sigma should not pay for at start-up.
    from skimage.restoration import estimate_sigma

    channel_axis = -1 if pixels.ndim == 3 else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sigma = float(estimate_sigma(pixels, channel_axis=channel_axis, average_sigmas=True))
    if not np.isfinite(sigma):
        raise ValueError("the noise level could not be estimated from this image; give it with --sigma")
    return sigma
