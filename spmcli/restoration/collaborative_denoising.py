"""Denoising by collaborative filtering: BM3D's two steps, in numpy.

:func:`collaborative_denoise` runs collaborative hard thresholding of groups
of similar noisy patches (:mod:`spmcli.restoration.hard_thresholding`) and
uses its estimate as the pilot of collaborative Wiener filtering
(:mod:`spmcli.restoration.wiener`), after Dabov et al. [1]_. It is the
default denoiser of ``spmcli reconstruct``: on Set12 and Set14 it matches or
beats the ``bm3d`` package at about half of its time or less (see
BENCHMARKS.md). The K-SVD denoiser of Elad and Aharon
(:func:`spmcli.restoration.denoising.ksvd_denoise`) stays available; as a
pilot for the Wiener step it is 0.3-0.5 dB weaker (a pilot that has smoothed
weak detail away makes the Wiener gains remove it too).

References
----------
.. [1] K. Dabov, A. Foi, V. Katkovnik and K. Egiazarian, "Image Denoising by
       Sparse 3-D Transform-Domain Collaborative Filtering", IEEE Trans. Image
       Processing 16(8), 2007.
.. [2] K. Dabov, A. Foi, V. Katkovnik and K. Egiazarian, "Color Image
       Denoising via Sparse 3D Collaborative Filtering with Grouping
       Constraint in Luminance-Chrominance Space", ICIP 2007.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .clipping import undo_clipping
from .collaborative import (
    DEFAULT_MAX_GROUP,
    DEFAULT_REFERENCE_STRIDE,
    DEFAULT_SEARCH_RADIUS,
    check_denoise_inputs,
    grouping_gain,
)
from .hard_thresholding import DEFAULT_THRESHOLD, collaborative_hard_thresholding, hard_distance_threshold
from .wiener import DEFAULT_NOISE_FACTOR, DISTANCE_THRESHOLD, collaborative_wiener

__all__ = ["SMALL_PATCH_SIGMA", "CollaborativeResult", "collaborative_denoise", "wiener_passes"]

# Up to this noise sigma the Wiener step adds a pass of patches three quarters
# of the size. Measured in process, mean PSNR gain of 8x8 + 6x6 over 8x8 alone
# (both passes searching within 19 pixels, groups of up to 32):
# Set12 +0.030 / +0.026 / +0.021 / -0.009 dB at sigma 15 / 20 / 25 / 50,
# Set14 +0.026 / +0.022 / +0.018 / -0.005, six skimage.data crops outside
# both +0.009 / -0.002 / -0.012 / -0.071: the bound is where the images
# outside both sets stop gaining.
SMALL_PATCH_SIGMA = 20 / 255


def wiener_passes(
    patch_size: int, max_group: int, search_radius: int, small_patches: bool
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """The Wiener step's passes in :func:`collaborative_denoise`.

    Returns
    -------
    patch_sizes, max_groups, search_radii : tuple of int
        One value per pass. With ``small_patches``, a second pass of
        patches three quarters of ``patch_size`` (6 for 8), whose groups hold
        up to half as many patches and are searched within ``patch_size``
        pixels: its matches lie close by, and on Set12, Set14 and the images
        outside both at sigma 15 and 20 these choices move the mean PSNR by
        0.002 dB or less against the first pass's groups and window, and
        the pass takes 0.4 instead of 0.7 times the first pass's time.
    """
    smaller = patch_size * 3 // 4
    if small_patches and smaller >= 2:
        return (
            (patch_size, smaller),
            (max_group, max(1, max_group // 2)),
            (search_radius, min(search_radius, patch_size)),
        )
    return (patch_size,), (max_group,), (search_radius,)


@dataclass
class CollaborativeResult:
    """What :func:`collaborative_denoise` returns.

    Attributes
    ----------
    image : ndarray
        The denoised image, shaped like the input (float, 0..1 scale; within
        0..1 when the input was clipped, beyond it possibly otherwise).
    pilot : ndarray
        The first step's (hard-thresholding) estimate.
    settings : dict
        Every parameter used (JSON-serialisable).
    """

    image: np.ndarray
    pilot: np.ndarray
    settings: dict = field(default_factory=dict)


def collaborative_denoise(
    noisy: np.ndarray,
    noise_sigma: float,
    *,
    patch_size: int = 8,
    search_radius: int = DEFAULT_SEARCH_RADIUS,
    reference_stride: int = DEFAULT_REFERENCE_STRIDE,
    max_group: int = DEFAULT_MAX_GROUP,
    threshold: float = DEFAULT_THRESHOLD,
    noise_factor: float = DEFAULT_NOISE_FACTOR,
    small_patches: bool | None = None,
    clipped: bool | None = None,
    n_threads: int = 1,
    callback: Callable[[str, int, int], None] | None = None,
) -> CollaborativeResult:
    """Denoise an image by collaborative hard thresholding, then collaborative Wiener filtering.

    Parameters
    ----------
    noisy : ndarray, shape (H, W) or (H, W, C)
        Noisy float image on the 0..1 scale (values far outside it, such as
        0..255 data, are a ValueError). RGB is filtered in an opponent colour
        space, grouped on the luminance [2]_.
    noise_sigma : float
        Standard deviation of the additive white Gaussian noise on the 0..1
        scale (25/255 for "sigma 25").
    patch_size : int
        Side of the square patches (a power of two: the first step's wavelet).
    search_radius : int
        Similar patches are searched within about this many pixels.
    reference_stride : int
        Step between reference patches.
    max_group : int
        Most patches per group (a power of two), in both steps.
    threshold : float
        First step: coefficients below ``threshold * noise_sigma`` are zeroed.
    noise_factor : float
        Second step: Wiener gain ``p**2 / (p**2 + noise_factor * sigma**2)``.
    small_patches : bool, optional
        Whether the second step adds a pass of patches three quarters of
        ``patch_size`` (6 for 8), aggregated with the first pass's patches
        (:func:`wiener_passes`, :func:`~spmcli.restoration.wiener.collaborative_wiener`).
        By default, when ``noise_sigma`` is at most :data:`SMALL_PATCH_SIGMA`
        (20/255): with little noise to average away, smaller patches follow
        fine detail better. Measured in process (BENCHMARKS.md), at sigma
        15: +0.03 dB on Set12, +0.02 on Set14 and +0.01 on images outside
        both, for about 1.2 times the time; from sigma 25 the images outside
        both lose, as BM3D's own profiles grow patches with the noise.
    clipped : bool, optional
        Whether the noisy image was clipped to 0..1 (as every 8- or 16-bit
        file is): if so, the estimate is mapped back through the mean of
        clipped noise (:func:`~spmcli.restoration.clipping.declip`, Foi [3]_),
        which undoes the bias clipping leaves near black and white. By
        default, decided by :func:`~spmcli.restoration.clipping.looks_clipped`
        (no value outside 0..1, some exactly at 0 or 1).
    n_threads : int
        Threads filtering bands of the image at once (``spmcli reconstruct``
        gives each image the cores its batch leaves free); the result does
        not depend on it, so it is not among the settings.
    callback : callable, optional
        ``callback(stage, refs_done, refs_total)`` with stage
        ``"hard thresholding"`` then ``"wiener"``.

    Returns
    -------
    CollaborativeResult

    References
    ----------
    .. [1] K. Dabov, A. Foi, V. Katkovnik and K. Egiazarian, "Image Denoising
           by Sparse 3-D Transform-Domain Collaborative Filtering", IEEE
           Trans. Image Processing 16(8), 2007.
    .. [3] A. Foi, "Clipped noisy images: Heteroskedastic modeling and
           practical denoising", Signal Processing 89(12), 2009.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> clean = np.tile(np.linspace(0.2, 0.8, 48), (48, 1))
    >>> noisy = clean + rng.normal(0, 0.1, clean.shape)
    >>> result = collaborative_denoise(noisy, 0.1)
    >>> bool(np.abs(result.image - clean).mean() < 0.25 * np.abs(noisy - clean).mean())
    True
    """
    noisy = check_denoise_inputs(noisy, noise_sigma, patch_size)
    grouping = {
        "patch_size": patch_size,
        "max_group": max_group,
        "search_radius": search_radius,
        "reference_stride": reference_stride,
    }
    parallel = {"n_threads": n_threads, "callback": callback}
    if small_patches is None:
        small_patches = noise_sigma <= SMALL_PATCH_SIGMA
    passes = wiener_passes(patch_size, max_group, search_radius, small_patches)
    pilot = collaborative_hard_thresholding(noisy, noise_sigma, threshold=threshold, **parallel, **grouping)
    image = collaborative_wiener(
        noisy, pilot, noise_sigma, patch_size=passes[0], max_group=passes[1], search_radius=passes[2],
        reference_stride=reference_stride, noise_factor=noise_factor, **parallel,
    )  # fmt: skip
    image, clipped = undo_clipping(image, noisy, noise_sigma, clipped)
    n_channels = 1 if noisy.ndim == 2 else noisy.shape[2]
    settings = {
        "method": "collaborative",
        **grouping,
        "threshold": threshold,
        "hard_distance_threshold": hard_distance_threshold(noise_sigma, n_channels),
        "noise_factor": noise_factor,
        "wiener_patch_sizes": list(passes[0]),
        "wiener_max_groups": list(passes[1]),
        "wiener_search_radii": list(passes[2]),
        "wiener_distance_threshold": DISTANCE_THRESHOLD * grouping_gain(n_channels),
        "clipped": clipped,
    }
    return CollaborativeResult(image, pilot, settings)
