"""Inpainting: fill the missing pixels of an image from the pixels that are there.

The image is filled in three stages, each starting from the previous estimate
and always putting the observed pixels back after every pass:

1. **First guess**: biharmonic interpolation
   (``skimage.restoration.inpaint_biharmonic``), or for very many missing
   pixels (where that solve becomes slow and memory-hungry) a coarse-to-fine
   normalised Gaussian convolution. Both are smooth and defined everywhere, so
   holes that no patch observes are never left black.
2. **Iterative thresholding over the orthonormal patch DCT** [2]_ [3]_: the
   overlapping patches of the current estimate are transformed, coefficients
   below a threshold are set to zero, the patches are averaged back and the
   observed pixels restored; the threshold decreases geometrically from pass
   to pass, so strong structures (edges, stripes) come first and finer detail
   later. This brings back texture that a smooth interpolation cannot.
3. **A dictionary learned from the image** (K-SVD from the overcomplete DCT
   [1]_, on patches of the current estimate, whose observed pixels are the
   data) or the ``atoms`` given, and a few passes of sparse coding (batch OMP)
   of the estimate's patches over it, again with the observed pixels restored.

Colour images are processed in an orthonormal luminance/chroma basis (the
thresholding stage, channel by channel) and with colour atoms (the dictionary
stage). Everything works band by band over the patch grid, so memory holds a
few copies of the image plus one band of patches.

References
----------
.. [1] M. Aharon, M. Elad and A. Bruckstein, "K-SVD: An Algorithm for Designing
       Overcomplete Dictionaries for Sparse Representation", IEEE Trans. Signal
       Processing 54(11), 2006.
.. [2] O. G. Guleryuz, "Nonlinear approximation based image recovery using
       adaptive sparse reconstructions and iterated denoising", IEEE Trans.
       Image Processing 15(3), 2006.
.. [3] M. Elad, J.-L. Starck, P. Querre and D. L. Donoho, "Simultaneous
       cartoon and texture image inpainting using morphological component
       analysis (MCA)", Applied and Computational Harmonic Analysis 19(3), 2005.
.. [4] J. Mairal, M. Elad and G. Sapiro, "Sparse Representation for Color
       Image Restoration", IEEE Trans. Image Processing 17(1), 2008.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.fft import dct
from threadpoolctl import threadpool_limits

from ..io.scale import require_unit_image, require_unit_value
from ..sparse.dictionary import dct_dictionary
from ..sparse.ksvd import KSVD
from ..sparse.omp import batch_omp
from ..sparse.patches import as_channels_last, sample_patches

__all__ = ["InpaintResult", "inpaint", "threshold_schedule"]

# Progress callback: (stage name, passes done, passes in the stage).
ProgressCallback = Callable[[str, int, int], None]

# Patches per band: bounds the memory of one pass (a band of 32k 8x8 patches
# is 16 MB in float64) while keeping the numpy calls large.
BAND_PATCHES = 32768
FIRST_GUESSES = ("auto", "biharmonic", "smooth")
# skimage's biharmonic solve grows faster than linearly with the size of the
# holes: measured 9.5 s and about 1 GB for 210k missing pixels (512x512 with 80%
# missing), 100 s and 4.2 GB for 840k. Above this many missing pixels "auto"
# takes the linear-time smooth guess instead.
BIHARMONIC_MAX_MISSING = 250_000


@dataclass
class InpaintResult:
    """What :func:`inpaint` returns.

    Attributes
    ----------
    pixels : ndarray
        The filled image, same shape as the input; observed pixels are the
        input's values exactly.
    atoms : ndarray or None
        The dictionary of the last stage (learned or given), one atom per row.
    stages : dict
        Passes run per stage, for reports.
    """

    pixels: np.ndarray
    atoms: np.ndarray | None
    stages: dict = field(default_factory=dict)


def threshold_schedule(n_passes: int, start: float, stop: float) -> np.ndarray:
    """Geometrically decreasing thresholds from ``start`` to ``stop`` (0..1 scale)."""
    if n_passes < 1:
        return np.zeros(0)
    return start * (stop / start) ** (np.arange(n_passes) / max(n_passes - 1, 1))


def _orthonormal_patch_dct(patch_size: int) -> np.ndarray:
    """The separable orthonormal 2-D DCT-II of a patch: rows are the basis
    images, flattened in C order (the first is the constant)."""
    basis_1d = dct(np.eye(patch_size), norm="ortho", axis=0)
    return np.kron(basis_1d, basis_1d)


def _colour_basis(n_channels: int) -> np.ndarray:
    """Orthonormal colour basis, luminance first (columns)."""
    if n_channels == 1:
        return np.ones((1, 1))
    basis, _ = np.linalg.qr(np.column_stack([np.ones(n_channels), np.eye(n_channels)[:, :-1]]))
    return basis * np.sign(basis[0, 0])


def _patch_filter(
    image: np.ndarray, patch_size: int, stride: int, transform: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """Apply ``transform`` to every patch of ``image`` (H, W, C) on a regular
    grid and average the overlaps.

    The image is reflect-padded at the bottom and right so that the grid
    (every ``stride`` pixels) ends exactly on its edge; then patches are
    strided views and overlaps are added with plain slices, which is several
    times faster than a general patch grid. Grid rows go in bands of at most
    :data:`BAND_PATCHES` patches, so memory stays bounded.
    ``transform`` maps patches ``(n, patch_size**2 * C)`` (C-order (p, p, C)
    blocks, the layout of dictionary atoms) to the same shape.
    """
    height, width = image.shape[:2]
    n_rows = -(-(height - patch_size) // stride) + 1
    n_cols = -(-(width - patch_size) // stride) + 1
    padded_height, padded_width = patch_size + stride * (n_rows - 1), patch_size + stride * (n_cols - 1)
    padded = np.pad(image, ((0, padded_height - height), (0, padded_width - width), (0, 0)), mode="symmetric")
    windows = sliding_window_view(padded, (patch_size, patch_size), axis=(0, 1))[::stride, ::stride]
    windows = windows.transpose(0, 1, 3, 4, 2)  # (rows, cols, p, p, C)
    total = np.zeros_like(padded)
    weight = np.zeros((padded_height, padded_width, 1))
    rows_per_band = max(1, BAND_PATCHES // n_cols)
    for first in range(0, n_rows, rows_per_band):
        last = min(first + rows_per_band, n_rows)
        block = windows[first:last].reshape((last - first) * n_cols, -1)
        block = transform(np.ascontiguousarray(block)).reshape(last - first, n_cols, patch_size, patch_size, -1)
        top = first * stride
        for dy in range(patch_size):
            row_slice = slice(top + dy, top + dy + stride * (last - first - 1) + 1, stride)
            for dx in range(patch_size):
                col_slice = slice(dx, dx + stride * (n_cols - 1) + 1, stride)
                total[row_slice, col_slice] += block[:, :, dy, dx]
                weight[row_slice, col_slice] += 1.0
    return (total / weight)[:height, :width]


def _hard_threshold(basis: np.ndarray, threshold: float) -> Callable[[np.ndarray], np.ndarray]:
    """Patches to their orthonormal-DCT approximation keeping coefficients
    at least ``threshold`` in size (and always the mean)."""

    def transform(patches: np.ndarray) -> np.ndarray:
        coefficients = patches @ basis.T
        small = np.abs(coefficients) < threshold
        small[:, 0] = False
        coefficients[small] = 0.0
        return coefficients @ basis

    return transform


def _sparse_approximation(
    atoms: np.ndarray, remove_mean: bool, tol: float, sparsity: int, n_channels: int
) -> Callable[[np.ndarray], np.ndarray]:
    """Patches to their batch-OMP approximation over ``atoms``."""

    def transform(patches: np.ndarray) -> np.ndarray:
        if remove_mean:
            grouped = patches.reshape(patches.shape[0], -1, n_channels)
            means = grouped.mean(axis=1, keepdims=True)
            patches = (grouped - means).reshape(patches.shape)
        rebuilt = batch_omp(patches, atoms, sparsity=sparsity, tol=tol).reconstruct(atoms)
        if remove_mean:
            rebuilt = (rebuilt.reshape(rebuilt.shape[0], -1, n_channels) + means).reshape(rebuilt.shape)
        return rebuilt

    return transform


def _biharmonic(image: np.ndarray, missing: np.ndarray) -> np.ndarray:
    from skimage.restoration import inpaint_biharmonic

    filled = inpaint_biharmonic(np.where(missing[:, :, None], 0.0, image), missing, channel_axis=-1)
    return np.clip(filled, 0.0, 1.0)


def _normalised_convolution(image: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """Coarse-to-fine smooth fill: each missing pixel takes the Gaussian-weighted
    mean of the observed pixels around it, at the finest scale (sigma 1, 2, 4...)
    where they carry enough weight. Linear time and memory, any hole size."""
    from scipy.ndimage import gaussian_filter

    observed = (~missing).astype(np.float64)
    filled = np.where(missing[:, :, None], 0.0, image)
    result = filled.copy()
    pending = missing.copy()
    sigma = 1.0
    while pending.any():
        weight = gaussian_filter(observed, sigma, mode="reflect")
        # Beyond the image size every pixel has some weight, so the loop ends.
        ready = pending & (weight > 0.05 * weight.max() if sigma > max(image.shape[:2]) else weight > 0.05)
        if ready.any():
            for channel in range(image.shape[2]):
                blurred = gaussian_filter(filled[:, :, channel], sigma, mode="reflect")
                result[ready, channel] = blurred[ready] / weight[ready]
            pending &= ~ready
        sigma *= 2
    return result


def _check_inputs(pixels: np.ndarray, missing: np.ndarray, patch_size: int) -> tuple[np.ndarray, np.ndarray]:
    pixels = np.asarray(pixels, dtype=np.float64)
    missing = np.asarray(missing)
    if pixels.ndim not in (2, 3):
        raise ValueError(f"expected a 2-D or 3-D image, got shape {pixels.shape}")
    if missing.shape != pixels.shape[:2]:
        raise ValueError(f"mask is {missing.shape[1]} x {missing.shape[0]} pixels, the image {pixels.shape[1]} x "
                         f"{pixels.shape[0]}")  # fmt: skip
    if not np.all(np.isfinite(pixels)):
        raise ValueError("image holds NaN or infinite values")
    missing = missing.astype(bool)
    if missing.all():
        raise ValueError("every pixel is missing: there is nothing to learn from")
    height, width = pixels.shape[:2]
    if min(height, width) < patch_size:
        raise ValueError(f"image is {width} x {height} pixels, smaller than the {patch_size} x {patch_size} patch")
    return pixels, missing


def inpaint(
    pixels: np.ndarray,
    missing: np.ndarray,
    *,
    atoms: np.ndarray | None = None,
    patch_size: int = 8,
    remove_mean: bool = True,
    n_atoms: int = 256,
    threshold_passes: int = 25,
    threshold_start: float = 60 / 255,
    threshold_stop: float = 4 / 255,
    stride: int = 2,
    learn_iterations: int = 3,
    learn_patches: int = 3000,
    sparsity: int = 8,
    coding_passes: int = 1,
    coding_rmse: tuple[float, ...] = (2.5 / 255,),
    first_guess: str = "auto",
    seed: int | None = 0,
    callback: ProgressCallback | None = None,
) -> InpaintResult:
    """Fill the missing pixels of an image.

    Parameters
    ----------
    pixels : ndarray, shape (H, W) or (H, W, C)
        The image on the 0..1 scale; values at missing pixels are ignored.
    missing : ndarray of bool, shape (H, W)
        True where a pixel is missing (all its channels).
    atoms : ndarray, shape (n_atoms, patch_size**2 * C), optional
        A dictionary to use in the last stage instead of learning one.
    patch_size : int
        Side of the square patches (the given dictionary's, with ``atoms``).
    remove_mean : bool
        Whether patches lose their per-channel mean before coding over ``atoms``
        (the learned dictionary always works on mean-removed patches).
    n_atoms : int
        Atoms to learn.
    threshold_passes, threshold_start, threshold_stop : int, float, float
        Passes of iterative DCT thresholding and the first and last threshold
        (0..1 scale); 0 passes skips the stage.
    stride : int
        Step between overlapping patches in every pass.
    learn_iterations, learn_patches : int
        K-SVD iterations, and patches of the estimate it learns from; 0
        iterations skips learning (and, without ``atoms``, the whole stage).
    sparsity : int
        Most atoms per patch when coding over the dictionary.
    coding_passes : int
        Passes of sparse coding over the dictionary.
    coding_rmse : tuple of float
        Target RMS error per pixel of each coding pass (0..1 scale); the last
        value repeats for further passes.
    first_guess : {"auto", "biharmonic", "smooth"}
        How the first estimate is made: biharmonic interpolation, or a
        coarse-to-fine normalised Gaussian convolution (linear time and memory,
        a little worse on smooth images); ``"auto"`` takes biharmonic up to
        :data:`BIHARMONIC_MAX_MISSING` missing pixels.
    seed : int, optional
        Seed of the K-SVD patch sample.
    callback : callable, optional
        ``callback(stage, done, total)`` after each pass of each stage.

    Returns
    -------
    InpaintResult
        ``pixels`` equals the input exactly at observed pixels.

    Raises
    ------
    ValueError
        Mask of the wrong shape, every pixel missing, an image smaller than a
        patch, or a dictionary that does not fit.

    References
    ----------
    See the module docstring: K-SVD [1]_, iterative thresholding [2]_ [3]_.

    Examples
    --------
    >>> import numpy as np
    >>> y, x = np.mgrid[:32, :32] / 32
    >>> image = 0.5 + 0.3 * np.sin(6 * x + 4 * y)
    >>> missing = np.random.default_rng(0).random(image.shape) < 0.3
    >>> result = inpaint(np.where(missing, 0.0, image), missing, learn_iterations=0)
    >>> bool(np.abs(result.pixels - image).max() < 0.02)
    True
    """
    pixels, missing = _check_inputs(pixels, missing, patch_size)
    require_unit_image(np.where(missing[(...,) + (None,) * (pixels.ndim - 2)], 0.0, pixels))
    for name, value in (("threshold_start", threshold_start), ("threshold_stop", threshold_stop)):
        require_unit_value(value, name)
    for value in coding_rmse:
        require_unit_value(value, "coding_rmse")
    if first_guess not in FIRST_GUESSES:
        raise ValueError(f"first_guess must be one of {FIRST_GUESSES}, got {first_guess!r}")
    grey = pixels.ndim == 2
    image = as_channels_last(pixels)
    n_channels = image.shape[2]
    if atoms is not None:
        atoms = np.asarray(atoms, dtype=np.float64)
        expected = patch_size * patch_size * n_channels
        if atoms.ndim != 2 or atoms.shape[1] != expected:
            raise ValueError(
                f"the dictionary's atoms have {atoms.shape[-1]} values, but {patch_size}x{patch_size} patches "
                f"with {n_channels} channel(s) need {expected}"
            )
    observed = ~missing[:, :, None]
    stages: dict[str, int] = {}

    def restore(estimate: np.ndarray) -> np.ndarray:
        return np.where(observed, image, np.clip(estimate, 0.0, 1.0))

    if not missing.any():
        return InpaintResult(pixels.copy(), atoms, stages)

    with threadpool_limits(limits=1, user_api="blas"):
        if first_guess == "auto":
            first_guess = "biharmonic" if missing.sum() <= BIHARMONIC_MAX_MISSING else "smooth"
        guess = _biharmonic if first_guess == "biharmonic" else _normalised_convolution
        estimate = restore(guess(image, missing))
        stages[first_guess] = 1
        if callback is not None:
            callback(first_guess, 1, 1)

        # Stage 2: thresholding in a decorrelated colour space, plane by plane.
        thresholds = threshold_schedule(threshold_passes, threshold_start, threshold_stop)
        if thresholds.size:
            colour = _colour_basis(n_channels)
            basis = _orthonormal_patch_dct(patch_size)
            planes_observed = image @ colour
            planes = estimate @ colour
            for done, threshold in enumerate(thresholds, start=1):
                transform = _hard_threshold(basis, threshold)
                for channel in range(n_channels):
                    filled = _patch_filter(planes[:, :, channel : channel + 1], patch_size, stride, transform)
                    planes[:, :, channel] = np.where(missing, filled[:, :, 0], planes_observed[:, :, channel])
                if callback is not None:
                    callback("thresholding", done, thresholds.size)
            estimate = restore(planes @ colour.T)
            stages["thresholding"] = int(thresholds.size)

        # Stage 3: a dictionary learned from (or given for) this image.
        use_remove_mean = remove_mean if atoms is not None else True
        if atoms is None and learn_iterations > 0 and coding_passes > 0:
            atoms = _learn_from_estimate(
                estimate, patch_size, n_atoms, sparsity, coding_rmse[0], learn_iterations, learn_patches, seed
            )
            stages["learning"] = learn_iterations
            if callback is not None:
                callback("learning", 1, 1)
        if atoms is not None and coding_passes > 0:
            n_features = patch_size * patch_size * n_channels
            for done in range(1, coding_passes + 1):
                rmse = coding_rmse[min(done - 1, len(coding_rmse) - 1)]
                transform = _sparse_approximation(atoms, use_remove_mean, n_features * rmse**2, sparsity, n_channels)
                estimate = restore(_patch_filter(estimate, patch_size, stride, transform))
                if callback is not None:
                    callback("sparse coding", done, coding_passes)
            stages["sparse_coding"] = coding_passes

    result = estimate[:, :, 0] if grey else estimate
    return InpaintResult(result, atoms, stages)


def _learn_from_estimate(
    estimate: np.ndarray,
    patch_size: int,
    n_atoms: int,
    sparsity: int,
    rmse: float,
    n_iterations: int,
    n_patches: int,
    seed: int | None,
) -> np.ndarray:
    """K-SVD (approximate update) from the overcomplete DCT, on mean-removed
    patches of the current estimate."""
    rng = np.random.default_rng(seed)
    n_channels = estimate.shape[2]
    patches = sample_patches(estimate, patch_size, n_patches, rng)
    grouped = patches.reshape(patches.shape[0], -1, n_channels)
    patches = (grouped - grouped.mean(axis=1, keepdims=True)).reshape(patches.shape)
    model = KSVD(
        n_atoms,
        sparsity=sparsity,
        tol=patches.shape[1] * rmse**2,
        n_iterations=n_iterations,
        method="approx",
        init=dct_dictionary(patch_size, n_atoms, n_channels),
        random_state=rng,
    )
    return model.fit(patches).dictionary_
