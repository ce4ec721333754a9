"""Noise level estimation."""

from __future__ import annotations

import warnings

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["MIN_ESTIMATION_SIDE", "estimate_noise_sigma", "pca_noise_sigma"]

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


def pca_noise_sigma(pixels: np.ndarray, patch_size: int = 7, stride: int = 6) -> float | None:
    """Noise standard deviation from the smallest eigenvalues of the patch covariance.

    The method of Chen, Zhu & Heng (2015): with white noise every eigenvalue of
    the covariance of ``patch_size`` x ``patch_size`` patches is at least
    ``sigma**2``, and the ones the image leaves alone equal it; the estimate is
    the mean of the smallest eigenvalues, taking as many as keep their mean at or
    below their median. Unlike the wavelet estimator it does not read fine
    texture as noise (Set12 Barbara with noise sigma 15.0: 15.2 against 16.7),
    which matters for SURE. Patches are taken every ``stride`` pixels (speed);
    colour channels are estimated one by one and averaged.

    Returns
    -------
    float or None
        The estimate on the image's scale; None when the image has too few
        patches (fewer than 20 per dimension of a patch) to estimate from.

    References
    ----------
    .. [1] G. Chen, F. Zhu, P. A. Heng, "An efficient statistical method for image
           noise level estimation", ICCV 2015.
    """
    pixels = np.asarray(pixels, dtype=np.float64)
    channels = pixels[:, :, None] if pixels.ndim == 2 else pixels
    height, width = channels.shape[:2]
    dimension = patch_size * patch_size
    if height < patch_size or width < patch_size:
        return None
    estimates = []
    for channel in np.moveaxis(channels, -1, 0):
        patches = sliding_window_view(channel, (patch_size, patch_size))[::stride, ::stride].reshape(-1, dimension)
        if len(patches) < 20 * dimension:
            return None
        patches = patches - patches.mean(axis=0)
        eigenvalues = np.linalg.eigvalsh(patches.T @ patches / len(patches))[::-1]  # largest first
        variance = float(max(eigenvalues[-1], 0.0))
        for first in range(dimension):
            tail = eigenvalues[first:]
            if tail.mean() <= np.median(tail):
                variance = float(max(tail.mean(), 0.0))
                break
        estimates.append(np.sqrt(variance))
    return float(np.mean(estimates))
