"""Image quality measures on the 0..1 scale (thin wrappers over ``skimage.metrics``)."""

from __future__ import annotations

import numpy as np

__all__ = ["psnr", "ssim"]


def psnr(reference: np.ndarray, image: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB; ``inf`` for identical images.

    Examples
    --------
    >>> import numpy as np
    >>> round(psnr(np.zeros((4, 4)), np.full((4, 4), 0.1)), 2)
    20.0
    """
    reference = np.asarray(reference, dtype=np.float64)
    image = np.asarray(image, dtype=np.float64)
    if reference.shape != image.shape:
        raise ValueError(f"shapes differ: reference {reference.shape}, image {image.shape}")
    if np.array_equal(reference, image):
        return float("inf")
    from skimage.metrics import peak_signal_noise_ratio  # scipy.stats behind it costs 0.8 s to import

    return float(peak_signal_noise_ratio(reference, image, data_range=data_range))


def ssim(reference: np.ndarray, image: np.ndarray, data_range: float = 1.0) -> float:
    """Mean structural similarity (Wang et al. 2004), colour channels averaged.
    Images smaller than 7 pixels a side use the largest odd window that fits."""
    reference = np.asarray(reference, dtype=np.float64)
    image = np.asarray(image, dtype=np.float64)
    if reference.shape != image.shape:
        raise ValueError(f"shapes differ: reference {reference.shape}, image {image.shape}")
    side = min(reference.shape[:2])
    window = min(7, side if side % 2 else side - 1)
    if window < 3:
        return float("nan")
    channel_axis = 2 if reference.ndim == 3 else None
    from skimage.metrics import structural_similarity  # imported on use: see psnr

    return float(
        structural_similarity(reference, image, data_range=data_range, channel_axis=channel_axis, win_size=window)
    )
