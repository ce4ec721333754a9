"""Collaborative Wiener filtering: the second step of BM3D, with any pilot estimate.

For each reference patch (every few pixels), the patches of the pilot most
similar to it within a search window are grouped; the group of *noisy*
patches goes to a 3-D transform domain (2-D DCT of each patch, orthonormal
Haar across the group), each coefficient is shrunk by the pilot's empirical
Wiener factor ``p**2 / (p**2 + noise_factor * sigma**2)``, where ``p`` is the
pilot's coefficient, and the filtered patches go back to their places,
weighted by the inverse of their group's residual variance and by a Kaiser
window [1]_. The engine (block matching, adaptive group sizes, aggregation)
is :mod:`spmcli.restoration.collaborative`.

The pilot is normally the first BM3D step
(:func:`spmcli.restoration.collaborative.collaborative_hard_thresholding`); a
K-SVD estimate works too, but less well: the Wiener factors come from the
pilot, and a pilot that has smoothed weak detail away makes the filter remove
it too (measured on Set12 at sigma 25: 29.66 dB after a K-SVD pilot, 30.00
after the hard-thresholding pilot, BENCHMARKS.md).

References
----------
.. [1] K. Dabov, A. Foi, V. Katkovnik and K. Egiazarian, "Image Denoising by
       Sparse 3-D Transform-Domain Collaborative Filtering", IEEE Trans. Image
       Processing 16(8), 2007.
.. [2] M. Lebrun, "An Analysis and Implementation of the BM3D Image Denoising
       Method", Image Processing On Line 2, 2012.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..sparse.patches import grid_axis
from .collaborative import (
    DEFAULT_MAX_GROUP,
    DEFAULT_REFERENCE_STRIDE,
    DEFAULT_SEARCH_RADIUS,
    OPPONENT_COLOURS,
    CollaborativeStep,
    check_denoise_inputs,
    check_group,
    collaborative_step,
    from_planes,
    grouping_gain,
    to_planes,
)
from .patch_transforms import learn_sparsifying_transform

__all__ = ["DEFAULT_NOISE_FACTOR", "OPPONENT_COLOURS", "collaborative_wiener"]

# Candidates join a group within this mean squared difference per pixel of
# the pilot's patches: BM3D's 400 on the 0..255 scale, (20/255)**2.
DISTANCE_THRESHOLD = 400 / 255**2
# The Wiener gain's noise factor: p**2 / (p**2 + NOISE_FACTOR * sigma**2).
# Below 1 the filter shrinks less than the textbook Wiener gain, which makes
# up for a pilot that is itself shrunk (hard thresholding has zeroed its weak
# coefficients). The bm3d package uses 0.4. Measured with the learned
# transform, mean PSNR minus bm3d's at sigma 15/25/50: 0.4: Set12
# -0.05/-0.03/-0.06, Set14 -0.06/-0.04/-0.07; 0.5: Set12 -0.03/-0.01/-0.02,
# Set14 -0.04/-0.03/-0.04; 0.6: Set12 -0.03/-0.02/-0.01, Set14
# -0.04/-0.04/-0.03. Textured images prefer 0.3-0.4, smooth ones 0.6-0.8, but
# even the best value per image gains only 0.01-0.02 dB on average.
DEFAULT_NOISE_FACTOR = 0.5
TRANSFORMS = ("learned", "dct")
# The learned transform: trained on up to this many patches of the pilot (an
# even grid of positions), coefficients below LEARN_THRESHOLD * sigma counted
# as zero. Measured on six Set12 images at sigma 25 against the DCT: +0.018 dB
# at 1.0 sigma, +0.023 at 1.5 and 2.0, +0.013 at 3.0.
LEARN_PATCHES = 20000
LEARN_THRESHOLD = 1.5


def collaborative_wiener(
    noisy: np.ndarray,
    pilot: np.ndarray,
    noise_sigma: float,
    *,
    patch_size: int | Sequence[int] = 8,
    max_group: int | Sequence[int] = DEFAULT_MAX_GROUP,
    search_radius: int | Sequence[int] = DEFAULT_SEARCH_RADIUS,
    reference_stride: int = DEFAULT_REFERENCE_STRIDE,
    noise_factor: float = DEFAULT_NOISE_FACTOR,
    distance_threshold: float | None = None,
    transform: str = "learned",
    n_threads: int = 1,
    callback: Callable[[str, int, int], None] | None = None,
) -> np.ndarray:
    """Wiener-filter groups of similar noisy patches, using a pilot estimate.

    Parameters
    ----------
    noisy : ndarray, shape (H, W) or (H, W, C)
        The noisy image, 0..1 scale.
    pilot : ndarray, same shape as ``noisy``
        A first denoised estimate: groups are found on it and it sets the
        Wiener factors.
    noise_sigma : float
        Standard deviation of the white Gaussian noise, 0..1 scale (above 1
        is a ValueError).
    patch_size : int or sequence of int
        Side of the square patches. With several sides, groups of each size
        are filtered (each side its own matching and transform) and all
        their patches are aggregated together, each weighted by its group's
        weight times its number of pixels, so that the weights compare
        per-pixel variances across sizes: where the pilot shows detail finer
        than the larger patches, the smaller ones are matched better.
    max_group : int or sequence of int
        Most patches per group (a power of two): a group holds the largest
        power of two of candidates within ``distance_threshold``. One value
        per patch size, or one for all.
    search_radius : int or sequence of int
        Candidates lie within about this many pixels of the reference. One
        value per patch size, or one for all.
    reference_stride : int
        Step between reference patches (the last row and column are always
        references, so every pixel is covered).
    noise_factor : float
        The gain is ``p**2 / (p**2 + noise_factor * sigma**2)``; 1 is the
        textbook empirical Wiener factor.
    distance_threshold : float, optional
        Mean squared difference per pixel of the pilot's patches (0..1
        scale; for RGB, on the orthonormal luminance) within which candidates
        join a group; by default :data:`DISTANCE_THRESHOLD` times
        :func:`~spmcli.restoration.collaborative.grouping_gain` (3 for RGB).
    transform : {"learned", "dct"}
        The 2-D patch transform: an orthonormal sparsifying transform learned
        from the pilot's patches (:func:`learned_transform`), or the DCT
        (BM3D's).
    n_threads : int
        Threads filtering bands of the image at once; the result does not
        depend on it.
    callback : callable, optional
        ``callback("wiener", refs_done, refs_total)``.

    Returns
    -------
    ndarray
        The filtered image, shaped like ``noisy``.

    References
    ----------
    .. [1] K. Dabov, A. Foi, V. Katkovnik and K. Egiazarian, "Image Denoising
           by Sparse 3-D Transform-Domain Collaborative Filtering", IEEE
           Trans. Image Processing 16(8), 2007.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> clean = np.kron(rng.uniform(0.2, 0.8, (6, 6)), np.ones((8, 8)))
    >>> noisy = clean + rng.normal(0, 0.1, clean.shape)
    >>> filtered = collaborative_wiener(noisy, clean, 0.1)
    >>> bool(np.mean((filtered - clean) ** 2) < 0.2 * np.mean((noisy - clean) ** 2))
    True
    """
    sizes = _per_pass(patch_size, None, "patch_size")
    if not sizes:
        raise ValueError("patch_size needs at least one side")
    groups = _per_pass(max_group, len(sizes), "max_group")
    radii = _per_pass(search_radius, len(sizes), "search_radius")
    # The largest side is the one the image must hold; one pass over its pixels.
    noisy = check_denoise_inputs(noisy, noise_sigma, max(sizes))
    for size, group, radius in zip(sizes, groups, radii, strict=True):
        check_group(group, radius, reference_stride, size)
    pilot = np.asarray(pilot, dtype=np.float64)
    if noisy.shape != pilot.shape:
        raise ValueError(f"noisy {noisy.shape} and pilot {pilot.shape} images differ in shape")
    if not noise_factor > 0:
        raise ValueError(f"noise_factor must be positive, got {noise_factor}")
    if transform not in TRANSFORMS:
        raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}")
    pilot_planes, noisy_planes = to_planes(pilot), to_planes(noisy)
    if distance_threshold is None:
        distance_threshold = DISTANCE_THRESHOLD * grouping_gain(pilot_planes.shape[2])
    height, width = noisy.shape[:2]
    counts = [grid_axis(height, size, reference_stride).size * grid_axis(width, size, reference_stride).size
              for size in sizes]  # fmt: skip
    numerator = denominator = None
    for index, (size, group, radius) in enumerate(zip(sizes, groups, radii, strict=True)):
        basis = learned_transform(pilot_planes[:, :, 0], size, noise_sigma) if transform == "learned" else None
        step = CollaborativeStep(
            "wiener", size, group, radius, reference_stride, distance_threshold, noise_factor, "dct", basis
        )
        sums = collaborative_step(noisy_planes, noise_sigma, pilot_planes, step, n_threads=n_threads,
                                  callback=_offset(callback, sum(counts[:index]), sum(counts)), stage="wiener",
                                  return_sums=True)  # fmt: skip
        if len(sizes) == 1:
            return from_planes(sums[0] / sums[1], noisy.shape)
        pixels = np.float32(size * size)
        if numerator is None:
            numerator, denominator = sums[0] * pixels, sums[1] * pixels
        else:
            numerator += sums[0] * pixels
            denominator += sums[1] * pixels
    return from_planes(numerator / denominator, noisy.shape)


def _per_pass(value: int | Sequence[int], n_passes: int | None, name: str) -> tuple[int, ...]:
    """One value per patch size: a single value repeated, or a sequence of ``n_passes``."""
    if isinstance(value, int | np.integer):
        return (int(value),) * (n_passes or 1)
    values = tuple(int(item) for item in value)
    if n_passes is not None and len(values) != n_passes:
        raise ValueError(f"{name} gives {len(values)} values for {n_passes} patch sizes")
    return values


def _offset(callback: Callable[[str, int, int], None] | None, offset: int, total: int) -> Callable | None:
    """``callback`` for one of several passes reported as one stage of ``total`` references."""
    if callback is None:
        return None
    return lambda stage, done, _: callback(stage, offset + done, total)


def learned_transform(pilot: np.ndarray, patch_size: int, noise_sigma: float) -> np.ndarray:
    """An orthonormal 2-D transform in which the pilot's patches are sparse.

    Learned (:func:`~spmcli.restoration.patch_transforms.learn_sparsifying_transform`,
    from the DCT) on up to :data:`LEARN_PATCHES` patches of ``pilot`` taken on
    an even grid of positions, with coefficients below ``LEARN_THRESHOLD *
    noise_sigma`` counted as zero: the image's own sparsifying basis, in place
    of BM3D's fixed DCT.
    """
    windows = sliding_window_view(np.asarray(pilot, dtype=np.float64), (patch_size, patch_size))
    n_rows, n_cols = windows.shape[:2]
    step = max(1, int(np.ceil(np.sqrt(n_rows * n_cols / LEARN_PATCHES))))
    patches = windows[::step, ::step].reshape(-1, patch_size * patch_size)
    return learn_sparsifying_transform(patches, LEARN_THRESHOLD * noise_sigma)
