"""Stein's unbiased risk estimate (SURE) check of the automatic TV weight.

The weight rule of :mod:`spmcli.restoration.total_variation` over-smooths fine texture (Set12 Barbara
at sigma 15 wants a weight 25% below it). :func:`refine_weight` estimates the
mean squared error of the rule's weight and of 0.75 times it with Monte-Carlo
SURE [2]_ on a mosaic of tiles, and keeps the better one: a per-image test,
cheap enough (about a third of a full solve) to run by default.

References
----------
.. [1] C. M. Stein, "Estimation of the mean of a multivariate normal
       distribution", Ann. Statist. 9(6), 1981.
.. [2] S. Ramani, T. Blu, M. Unser, "Monte-Carlo SURE: a black-box optimization
       of regularization parameters for general denoising algorithms", IEEE
       Trans. Image Process. 17(9), 2008.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .tv_solvers import chambolle

__all__ = ["refine_weight", "sure_check_applies", "sure_risk", "sure_risks"]

# The SURE refinement of the automatic weight (see refine_weight): the candidates are the rule's
# weight and SURE_STEP times it; the risk is estimated on a mosaic of SURE_TILE-pixel tiles covering
# about SURE_AREA of the image, with SURE_ITERATIONS fixed Chambolle iterations and a probe of
# SURE_PERTURBATION * sigma. Chosen once on Set12 (the rule over-smooths fine texture, never the reverse
# by that much); the probe seed only fixes the result, any seed works.
SURE_STEP = 0.75
SURE_AREA = 0.12
SURE_TILE = 32
SURE_ITERATIONS = 15
SURE_PERTURBATION = 0.05
SURE_PROBE_SEED = 2008
# The check is skipped below this G / sigma, and on mosaics under SURE_MIN_PIXELS (see refine_weight).
SURE_MIN_DETAIL = 0.5
SURE_MIN_PIXELS = 128 * 128


def _mosaic_tiles(height: int, width: int) -> tuple[int, int] | None:
    """Tiles down and across in the SURE mosaic; None for an image used whole."""
    if height < 4 * SURE_TILE or width < 4 * SURE_TILE:
        return None
    fraction = np.sqrt(SURE_AREA)
    return max(2, round(fraction * height / SURE_TILE)), max(2, round(fraction * width / SURE_TILE))


def sure_check_applies(shape: tuple[int, ...], detail_ratio: float) -> bool:
    """Whether :func:`refine_weight` runs its check (see there) for an image of this shape."""
    counts = _mosaic_tiles(*shape[:2])
    pixels = shape[0] * shape[1] if counts is None else counts[0] * counts[1] * SURE_TILE**2
    return detail_ratio >= SURE_MIN_DETAIL and pixels >= SURE_MIN_PIXELS


def _sure_mosaic(pixels: np.ndarray) -> np.ndarray:
    """Tiles spread evenly over the image, side by side: about SURE_AREA of its pixels.

    Images under 4 tiles a side are used whole. The seams are edges like any
    other: SURE estimates the risk on the mosaic itself, unbiased.
    """
    tile = SURE_TILE
    counts = _mosaic_tiles(*pixels.shape[:2])
    if counts is None:
        return pixels
    rows = np.linspace(0, pixels.shape[0] - tile, counts[0]).astype(int)
    columns = np.linspace(0, pixels.shape[1] - tile, counts[1]).astype(int)
    return np.concatenate(
        [np.concatenate([pixels[r : r + tile, c : c + tile] for c in columns], axis=1) for r in rows], axis=0
    )


def _fixed_chambolle(pixels: np.ndarray, weight: float, joint_channels: bool, iterations: int) -> np.ndarray:
    """Chambolle's algorithm for exactly ``iterations`` steps (float32), as tv_denoise runs it.

    A fixed count keeps the map from the input to the output the same for the
    probe and the plain input; a stopping rule could end the two runs at
    different steps and swamp their tiny difference.
    """
    return chambolle(pixels, weight, joint_channels=joint_channels, eps=0.0, max_iterations=iterations)[0].astype(
        np.float64
    )


def sure_risks(
    pixels: np.ndarray,
    weights: Sequence[float],
    sigma: float,
    *,
    joint_channels: bool = True,
    iterations: int = SURE_ITERATIONS,
    seed: int = SURE_PROBE_SEED,
) -> list[float]:
    """Stein's unbiased estimates of the mean squared error of Chambolle TV at several weights.

    ``SURE = |u(f) - f|^2 / N - sigma^2 + 2 sigma^2 div u(f) / N``, with the
    divergence estimated by one Monte-Carlo probe ``b`` (Ramani et al. 2008):
    ``div u(f) ~ b . (u(f + e b) - u(f)) / e``, ``e = SURE_PERTURBATION * sigma``.

    All the solves run as one call, side by side in one wide image (per-call
    overhead dominates on small images): the ROF solution scales as
    ``u_{s w}(f) = s u_w(f / s)``, so every weight is reached from the largest
    by dividing its copies of the input by ``s``. The copies touch only at
    their seams, which, like the mosaic's own, are edges like any other.

    Parameters
    ----------
    pixels : ndarray, shape (H, W) or (H, W, C)
        The noisy image, 0..1 scale; the risk is per pixel of exactly these pixels.
    weights : sequence of float
        Chambolle's weights (spmcli's), all > 0.
    sigma : float
        Noise standard deviation (0..1 scale); SURE is only as good as this value.
    joint_channels : bool
        Colour: vectorial TV (as :func:`tv_denoise` runs it) or channel by channel.
    iterations : int
        Fixed number of Chambolle iterations for all the solves.
    seed : int
        Seed of the probe.

    Returns
    -------
    list of float
        The risk per pixel for each weight, on the 0..1 scale squared.

    References
    ----------
    .. [1] C. M. Stein, "Estimation of the mean of a multivariate normal
           distribution", Ann. Statist. 9(6), 1981.
    .. [2] S. Ramani, T. Blu, M. Unser, "Monte-Carlo SURE: a black-box optimization
           of regularization parameters for general denoising algorithms",
           IEEE Trans. Image Process. 17(9), 2008.
    """
    pixels = np.asarray(pixels, dtype=np.float64)
    probe = np.random.default_rng(seed).standard_normal(pixels.shape)
    step = SURE_PERTURBATION * sigma
    largest = max(weights)
    scales = [weight / largest for weight in weights]
    copies = [copy / scale for scale in scales for copy in (pixels, pixels + step * probe)]
    solved = np.split(
        _fixed_chambolle(np.concatenate(copies, axis=1), largest, joint_channels, iterations), 2 * len(weights), axis=1
    )
    risks = []
    for index, scale in enumerate(scales):
        denoised, perturbed = scale * solved[2 * index], scale * solved[2 * index + 1]
        divergence = float(np.sum(probe * (perturbed - denoised))) / step
        residual = float(np.sum((denoised - pixels) ** 2))
        risks.append((residual - pixels.size * sigma**2 + 2.0 * sigma**2 * divergence) / pixels.size)
    return risks


def sure_risk(pixels: np.ndarray, weight: float, sigma: float, **options) -> float:
    """:func:`sure_risks` for one weight."""
    return sure_risks(pixels, [weight], sigma, **options)[0]


def refine_weight(
    pixels: np.ndarray,
    weight: float,
    sigma: float,
    *,
    detail_ratio: float = np.inf,
    joint_channels: bool = True,
) -> float:
    """Check the rule's weight against a smaller one with SURE; return the better.

    The candidates are ``weight`` and ``SURE_STEP * weight``: the rule errs
    towards over-smoothing fine texture (Set12 Barbara wants a weight 25% below
    it), which no image-wide statistic tells apart from noise as reliably as the
    risk estimate. SURE runs on a mosaic of tiles (about ``SURE_AREA`` of the
    image) with a fixed iteration count, so the check costs a fraction of a full
    solve. It is skipped when the image's detail is weaker than the noise
    (``detail_ratio`` = G / sigma below ``SURE_MIN_DETAIL``): there TV smooths
    the detail away at either weight, and the short fixed-iteration solves,
    least converged at the large weights strong noise calls for, misjudge more
    often than they help (Set12 at sigma 50). It is skipped too when the
    mosaic has fewer than ``SURE_MIN_PIXELS`` pixels (images under about 320 x
    320): one probe over so few pixels is too noisy to choose by (on the 256 x
    256 skimage.data crops at sigma 15 and 25, 96 x 96 mosaics stepped down on
    5 of 24, 3 of them wrongly, losing up to 1.1 dB).

    Parameters
    ----------
    pixels : ndarray
        The noisy image, 0..1 scale.
    weight : float
        The rule's weight (:func:`auto_weight`).
    sigma : float
        Noise standard deviation, 0..1 scale (best from :func:`pca_noise_sigma`:
        SURE's bias grows with the error in sigma).
    detail_ratio : float
        ``G / sigma`` as the rule saw it (:func:`signal_gradient_rms`).
    joint_channels : bool
        As in :func:`tv_denoise`.
    """
    if not weight > 0 or not sigma > 0 or not sure_check_applies(np.shape(pixels), detail_ratio):
        return float(weight)
    mosaic = _sure_mosaic(np.asarray(pixels, dtype=np.float64))
    candidates = (float(weight), float(SURE_STEP * weight))
    risks = sure_risks(mosaic, candidates, sigma, joint_channels=joint_channels)
    return candidates[int(np.argmin(risks))]
