"""Collaborative filtering of groups of similar patches: the engine of BM3D's two steps.

A group is a reference patch and the patches most similar to it within a
search window, stacked into a 3-D array. The group goes to a 3-D transform
domain (a 2-D transform of each patch, then an orthonormal Haar transform
across the group), where the image is sparse and the noise is not, is shrunk
there, and comes back; the filtered patches of all groups are averaged where
they overlap, each group weighted by the inverse of its estimated residual
variance and each pixel by a Kaiser window [1]_. The two ways to shrink:

- ``"hard"`` (BM3D's first step) groups the *noisy* patches and sets to zero
  every coefficient below ``shrink * sigma``
  (:mod:`spmcli.restoration.hard_thresholding`);
- ``"wiener"`` (the second step) groups patches of a pilot estimate and
  multiplies each noisy coefficient by the pilot's empirical Wiener factor
  ``p**2 / (p**2 + shrink * sigma**2)`` (:mod:`spmcli.restoration.wiener`).

How it runs in numpy. Groups have an adaptive size: the largest power of two
not above the number of candidates within a distance threshold (at most
``max_group``), so that the Haar transform across the group is orthonormal
(:mod:`spmcli.restoration.block_matching`). Groups of one size are filtered
together, member-major, so that the transform across all of them is one
matrix product; the filtered members are summed per patch position with one
sparse-matrix product, in the 2-D transform domain (aggregation is linear),
and only the sums go back to pixels. The image is processed in square blocks
of reference patches with a halo of one search radius, which bounds memory
whatever the image size, and in bands of block rows (at least two), each
summed on its own and added in band order: threads can filter bands at once
(numpy releases the interpreter lock in its array work), and the result is
the same whatever their number.

Colour images are filtered in an orthonormal opponent colour space (white
noise of standard deviation sigma per RGB channel stays white with the same
sigma), with the groups found on the luminance, as in CBM3D [2]_; each
channel is aggregated with its own weights.

References
----------
.. [1] K. Dabov, A. Foi, V. Katkovnik and K. Egiazarian, "Image Denoising by
       Sparse 3-D Transform-Domain Collaborative Filtering", IEEE Trans. Image
       Processing 16(8), 2007.
.. [2] K. Dabov, A. Foi, V. Katkovnik and K. Egiazarian, "Color Image
       Denoising via Sparse 3D Collaborative Filtering with Grouping
       Constraint in Luminance-Chrominance Space", ICIP 2007.
.. [3] M. Lebrun, "An Analysis and Implementation of the BM3D Image Denoising
       Method", Image Processing On Line 2, 2012.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..io.scale import require_unit_image, require_unit_value
from ..sparse.patches import as_channels_last, grid_axis
from .block_matching import MATCH_TILE, block_match, group_sizes
from .patch_transforms import haar_matrix, kaiser_window, patch_transform

__all__ = [
    "DEFAULT_MAX_GROUP",
    "DEFAULT_REFERENCE_STRIDE",
    "DEFAULT_SEARCH_RADIUS",
    "OPPONENT_COLOURS",
    "CollaborativeStep",
    "check_denoise_inputs",
    "check_group",
    "collaborative_step",
    "from_planes",
    "to_planes",
]

ProgressCallback = Callable[[str, int, int], None]

# Orthonormal luminance / opponent-colour transform (rows): white noise of
# variance sigma**2 per RGB channel stays white with the same variance.
OPPONENT_COLOURS = np.array(
    [
        [1 / np.sqrt(3), 1 / np.sqrt(3), 1 / np.sqrt(3)],
        [1 / np.sqrt(2), 0.0, -1 / np.sqrt(2)],
        [1 / np.sqrt(6), -2 / np.sqrt(6), 1 / np.sqrt(6)],
    ]
)
# BM3D's search window is 39x39 (radius 19). Measured with the bm3d package
# on four Set12 images at sigma 25: a 25x25 window cost 0.08 dB, 17x17 0.19 dB.
DEFAULT_SEARCH_RADIUS = 19
DEFAULT_REFERENCE_STRIDE = 3
DEFAULT_MAX_GROUP = 32
KAISER_BETA = 2.0
# Values held per block (patch positions x coefficients x arrays): about
# 256 MB in float32. Grey images up to about 512x512 are one block.
BLOCK_VALUES = 16 * 2**20
# Group members filtered at once: bounds the working memory of one chunk (a
# few arrays of CHUNK_MEMBERS x 64 float32 values, 8 MB each) and keeps it in
# cache.
CHUNK_MEMBERS = 32768


@dataclass(frozen=True, eq=False)
class CollaborativeStep:
    """The parameters of one collaborative step.

    Attributes
    ----------
    mode : {"hard", "wiener"}
        Hard thresholding of the noisy groups, or Wiener shrinkage by a pilot.
    patch_size, max_group, search_radius, reference_stride : int
        See :func:`spmcli.restoration.wiener.collaborative_wiener`.
    distance_threshold : float
        Mean squared difference per pixel (0..1 scale) within which a
        candidate joins its reference's group.
    shrink : float
        ``"hard"``: the threshold in units of sigma; ``"wiener"``: the noise
        factor of the gain.
    transform : str
        The 2-D patch transform (:func:`~spmcli.restoration.patch_transforms.patch_transform`).
    basis : ndarray, optional
        An orthonormal forward transform (rows) to use instead, such as one
        from :func:`~spmcli.restoration.patch_transforms.learn_sparsifying_transform`.
    """

    mode: str
    patch_size: int
    max_group: int
    search_radius: int
    reference_stride: int
    distance_threshold: float
    shrink: float
    transform: str
    basis: np.ndarray | None = None


def collaborative_step(
    noisy: np.ndarray,
    noise_sigma: float,
    pilot: np.ndarray | None,
    step: CollaborativeStep,
    *,
    guide: np.ndarray | None = None,
    block_values: int = BLOCK_VALUES,
    n_threads: int = 1,
    callback: ProgressCallback | None = None,
    stage: str = "",
    return_sums: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """One collaborative step on decorrelated planes.

    Parameters
    ----------
    noisy : ndarray, shape (H, W, C)
        Noisy planes (see :func:`to_planes`); noise sigma on each.
    noise_sigma : float
        The noise standard deviation.
    pilot : ndarray, shape (H, W, C), or None
        The pilot estimate (``"wiener"`` mode only).
    step : CollaborativeStep
        What to do.
    guide : ndarray, shape (H, W), optional
        The image groups are found on; by default the first plane of
        ``pilot`` (Wiener) or of ``noisy`` (hard thresholding).
    block_values : int
        Memory budget of one block, in float32 values.
    n_threads : int
        Bands of the image filtered at once (numpy releases the interpreter
        lock in its array work). The result does not depend on it.
    callback : callable, optional
        ``callback(stage, refs_done, refs_total)`` after each chunk of groups.
    return_sums : bool
        Return the aggregation's weighted sum of patch estimates and its sum
        of weights per pixel instead of their ratio (to aggregate several
        steps together).

    Returns
    -------
    ndarray, shape (H, W, C), float32
        The estimate (or, with ``return_sums``, its numerator and
        denominator). Groups are found on the first plane of ``pilot``
        (Wiener) or of ``noisy`` (hard thresholding).
    """
    if isinstance(n_threads, bool) or not isinstance(n_threads, int | np.integer) or n_threads < 1:
        raise ValueError(f"n_threads must be a positive integer, got {n_threads!r}")
    p = step.patch_size
    height, width, n_channels = noisy.shape
    wiener = step.mode == "wiener"
    noisy = np.ascontiguousarray(noisy, dtype=np.float32)
    pilot = np.ascontiguousarray(pilot, dtype=np.float32) if wiener else None
    if guide is not None:
        guide = np.ascontiguousarray(guide, dtype=np.float32)
    ref_rows = grid_axis(height, p, step.reference_stride)
    ref_cols = grid_axis(width, p, step.reference_stride)
    # Block side in references, a multiple of the matching tile (so that the
    # tiles, hence the groups, do not depend on the blocks, but for near-ties
    # that the rounding of the float32 distance products decides): the block's
    # arrays (coefficients of each plane, their sums, the matching features)
    # fit in block_values.
    n_arrays = n_channels * (3 if wiener else 2) + 1
    side = int(np.sqrt(block_values / (n_arrays * p * p))) - 2 * step.search_radius
    block_refs = max(MATCH_TILE, side // step.reference_stride // MATCH_TILE * MATCH_TILE)
    # Bands of reference rows: at most a block high, and at most half of the
    # rows (a multiple of the tile, as blocks are), so that even a small image
    # gives two bands to two threads. Each band is filtered into its own
    # accumulators, added in band order: the same sums whatever n_threads.
    half = -(-ref_rows.size // 2)
    band_refs = min(block_refs, -(-half // MATCH_TILE) * MATCH_TILE)
    filtering = _BlockFilter(step, noise_sigma, n_channels, callback, stage, ref_rows.size * ref_cols.size)

    def filter_band(row_start: int) -> tuple[int, np.ndarray, np.ndarray]:
        band_rows = ref_rows[row_start : row_start + band_refs]
        top = max(0, int(band_rows[0]) - step.search_radius)
        bottom = min(height, int(band_rows[-1]) + step.search_radius + p)
        band_numerator = np.zeros((bottom - top, width, n_channels), dtype=np.float32)
        band_denominator = np.zeros((bottom - top, width, n_channels), dtype=np.float32)
        for col_start in range(0, ref_cols.size, block_refs):
            block_cols = ref_cols[col_start : col_start + block_refs]
            left = max(0, int(block_cols[0]) - step.search_radius)
            right = min(width, int(block_cols[-1]) + step.search_radius + p)
            area = (slice(top, bottom), slice(left, right))
            filtering.run(
                noisy[area], None if pilot is None else pilot[area], None if guide is None else guide[area],
                band_rows - top, block_cols - left, band_numerator[:, left:right], band_denominator[:, left:right],
            )  # fmt: skip
        return top, band_numerator, band_denominator

    numerator = np.zeros((height, width, n_channels), dtype=np.float32)
    denominator = np.zeros((height, width, n_channels), dtype=np.float32)

    def add(bands: Iterable[tuple[int, np.ndarray, np.ndarray]]) -> None:
        for top, band_numerator, band_denominator in bands:
            numerator[top : top + band_numerator.shape[0]] += band_numerator
            denominator[top : top + band_denominator.shape[0]] += band_denominator

    starts = range(0, ref_rows.size, band_refs)
    if n_threads <= 1 or len(starts) == 1:
        add(map(filter_band, starts))
    else:
        with ThreadPoolExecutor(min(n_threads, len(starts))) as pool:
            add(pool.map(filter_band, starts))  # in band order, whichever thread finished first
    if return_sums:
        return numerator, denominator
    return numerator / denominator


class _BlockFilter:
    """Filters the groups of one block of references and adds them to the accumulators."""

    def __init__(
        self,
        step: CollaborativeStep,
        noise_sigma: float,
        n_channels: int,
        callback: ProgressCallback | None,
        stage: str,
        n_refs: int,
    ) -> None:
        self.step = step
        self.n_channels = n_channels
        if step.basis is not None:
            forward, inverse = step.basis, step.basis.T
        else:
            forward, inverse = patch_transform(step.transform, step.patch_size)
        self.forward_t = np.ascontiguousarray(forward.T, dtype=np.float32)
        self.inverse = inverse.astype(np.float32)
        # Groups are matched on coefficients in an orthonormal basis (distances
        # are then patch distances): the step's own when its basis is orthonormal.
        self.orthonormal = step.basis is not None or step.transform == "dct"
        self.match_forward_t = self.forward_t
        if not self.orthonormal:
            self.match_forward_t = np.ascontiguousarray(patch_transform("dct", step.patch_size)[0].T, dtype=np.float32)
        self.window = kaiser_window(step.patch_size, KAISER_BETA)
        if step.mode == "wiener":
            # A tiny sigma (an estimate on a nearly flat image) must not underflow to 0/0.
            self.shrink = np.float32(max(step.shrink * noise_sigma**2, np.finfo(np.float32).tiny))
        else:
            self.shrink = np.float32(step.shrink * noise_sigma)
        self.distance_threshold = np.float32(step.distance_threshold * step.patch_size**2)
        self.callback, self.stage, self.n_refs, self.refs_done = callback, stage, n_refs, 0
        self._progress_lock = threading.Lock()

    def run(
        self,
        noisy: np.ndarray,
        pilot: np.ndarray | None,
        guide: np.ndarray | None,
        ref_rows: np.ndarray,
        ref_cols: np.ndarray,
        numerator: np.ndarray,
        denominator: np.ndarray,
    ) -> None:
        """Filter every group whose reference is in ``ref_rows`` x ``ref_cols``
        (positions in these planes) and add to ``numerator``/``denominator``."""
        p = self.step.patch_size
        n_values = p * p
        n_pos_rows, n_pos_cols = noisy.shape[0] - p + 1, noisy.shape[1] - p + 1

        def coefficients(plane: np.ndarray, forward_t: np.ndarray) -> np.ndarray:
            return sliding_window_view(plane, (p, p)).reshape(-1, n_values) @ forward_t

        noisy_coefficients = [coefficients(noisy[:, :, c], self.forward_t) for c in range(self.n_channels)]
        pilot_coefficients = None
        if pilot is not None:
            pilot_coefficients = [coefficients(pilot[:, :, c], self.forward_t) for c in range(self.n_channels)]
        if guide is not None:
            features = coefficients(guide, self.match_forward_t)
        elif self.orthonormal:
            features = (pilot_coefficients if pilot is not None else noisy_coefficients)[0]
        else:
            features = coefficients((pilot if pilot is not None else noisy)[:, :, 0], self.match_forward_t)
        rows, cols, distances = block_match(
            features.reshape(n_pos_rows, n_pos_cols, n_values), ref_rows, ref_cols,
            self.step.search_radius, self.step.max_group,
        )  # fmt: skip
        del features
        sizes = group_sizes(distances, self.distance_threshold, self.step.max_group)
        positions_of = rows * n_pos_cols + cols
        sums = [np.zeros((n_pos_rows * n_pos_cols, n_values), dtype=np.float32) for _ in range(self.n_channels)]
        weights = np.zeros((self.n_channels, n_pos_rows * n_pos_cols), dtype=np.float64)
        for size in np.unique(sizes):
            size = int(size)
            across = haar_matrix(size).astype(np.float32)
            of_size = np.flatnonzero(sizes == size)
            chunk = max(1, CHUNK_MEMBERS // size)
            for first in range(0, of_size.size, chunk):
                # Member-major (size, n_groups): the transform across every
                # group is one matrix product.
                positions = positions_of[of_size[first : first + chunk], :size].T
                for c in range(self.n_channels):
                    pilot_c = None if pilot_coefficients is None else pilot_coefficients[c]
                    self._filter_groups(positions, across, noisy_coefficients[c], pilot_c, sums[c], weights[c])
                with self._progress_lock:
                    self.refs_done += positions.shape[1]
                    if self.callback is not None:
                        self.callback(self.stage, self.refs_done, self.n_refs)
        self._aggregate(sums, weights, n_pos_rows, n_pos_cols, numerator, denominator)

    def _filter_groups(
        self,
        positions: np.ndarray,
        across: np.ndarray,
        noisy_coefficients: np.ndarray,
        pilot_coefficients: np.ndarray | None,
        sums: np.ndarray,
        weights: np.ndarray,
    ) -> None:
        """Filter the groups of one size (``positions``: size x n_groups) in one
        plane and add their weighted members to ``sums`` and ``weights``."""
        import scipy.sparse

        size, n_groups = positions.shape
        n_values = noisy_coefficients.shape[1]
        groups = across @ noisy_coefficients[positions].reshape(size, -1)
        if pilot_coefficients is not None:
            gain = across @ pilot_coefficients[positions].reshape(size, -1)
            np.square(gain, out=gain)
            np.divide(gain, gain + self.shrink, out=gain)
            # The group mean passes unshrunk: shrinking it would darken dark regions.
            gain[0, ::n_values] = 1.0
            groups *= gain
            gain *= gain
            # A group's residual variance is proportional to its squared gains.
            residual = gain.reshape(size, n_groups, n_values).sum(axis=(0, 2))
        else:
            keep = np.abs(groups) >= self.shrink
            keep[0, ::n_values] = True
            groups *= keep
            residual = np.count_nonzero(keep.reshape(size, n_groups, n_values), axis=(0, 2))
        group_weight = (1.0 / np.maximum(residual, 1e-6)).astype(np.float32)
        estimates = (across.T @ groups).reshape(-1, n_values)
        member_weight = np.tile(group_weight, size)
        # Sum the weighted members per position: one sparse (positions x
        # members) product over the positions this chunk touches.
        touched, member_row = np.unique(positions, return_inverse=True)
        adder = scipy.sparse.csr_matrix(
            (member_weight, (member_row.ravel(), np.arange(member_row.size))), shape=(touched.size, member_row.size)
        )
        sums[touched] += adder @ estimates
        weights[touched] += np.bincount(member_row.ravel(), weights=member_weight, minlength=touched.size)

    def _aggregate(
        self,
        sums: list[np.ndarray],
        weights: np.ndarray,
        n_pos_rows: int,
        n_pos_cols: int,
        numerator: np.ndarray,
        denominator: np.ndarray,
    ) -> None:
        """Each position's weighted sum of patch estimates (and of weights),
        back to pixels, windowed and spread over the patch's pixels."""
        p = self.step.patch_size
        window = self.window
        for c, position_sums in enumerate(sums):
            patches = np.matmul(self.inverse, position_sums.T)
            patches *= window.reshape(-1, 1)
            patches = patches.reshape(p, p, n_pos_rows, n_pos_cols)
            weight_map = weights[c].reshape(n_pos_rows, n_pos_cols).astype(np.float32)
            plane, plane_weight = numerator[:, :, c], denominator[:, :, c]
            for dy in range(p):
                for dx in range(p):
                    plane[dy : dy + n_pos_rows, dx : dx + n_pos_cols] += patches[dy, dx]
                    plane_weight[dy : dy + n_pos_rows, dx : dx + n_pos_cols] += weight_map * window[dy, dx]


def grouping_gain(n_channels: int) -> float:
    """How many times larger a structural squared distance is on the plane
    groups are matched on than on a grey image of the same content.

    RGB is matched on the orthonormal luminance ``(R + G + B) / sqrt(3)``:
    ``sqrt(3)`` times the grey level, so squared distances between patches
    are 3 times a grey image's, while the noise's share (white noise keeps its
    variance in an orthonormal basis) is unchanged. Other channel counts are
    matched on their first channel as it is.
    """
    return float(OPPONENT_COLOURS[0].sum() ** 2) if n_channels == 3 else 1.0


def to_planes(image: np.ndarray) -> np.ndarray:
    """Channels-last float64 planes; RGB goes to the opponent colour space."""
    pixels = as_channels_last(np.asarray(image, dtype=np.float64))
    if pixels.shape[2] == 3:
        pixels = pixels @ OPPONENT_COLOURS.T
    return pixels


def from_planes(planes: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`to_planes`, as float64 reshaped to ``shape``."""
    planes = planes.astype(np.float64)
    if planes.shape[2] == 3:
        planes = planes @ OPPONENT_COLOURS
    return planes.reshape(shape)


def check_denoise_inputs(noisy: np.ndarray, noise_sigma: float, patch_size: int) -> np.ndarray:
    """Validate a noisy image and its noise sigma (0..1 scale); returns the image as float64."""
    noisy = np.asarray(noisy, dtype=np.float64)
    if noisy.ndim not in (2, 3):
        raise ValueError(f"expected a 2-D or 3-D image, got shape {noisy.shape}")
    if not np.all(np.isfinite(noisy)):
        raise ValueError("the image holds NaN or infinite values")
    if not noise_sigma > 0 or not np.isfinite(noise_sigma):
        raise ValueError(f"noise_sigma must be a positive number, got {noise_sigma}")
    require_unit_value(noise_sigma, "noise_sigma")
    require_unit_image(noisy, "noisy image")
    if min(noisy.shape[:2]) < patch_size:
        raise ValueError(
            f"image is {noisy.shape[1]} x {noisy.shape[0]} pixels, smaller than the {patch_size} x {patch_size} patch"
        )
    return noisy


def check_group(max_group: int, search_radius: int, reference_stride: int, patch_size: int) -> None:
    """Validate the grouping parameters shared by both steps."""
    if max_group < 1 or max_group & (max_group - 1):
        raise ValueError(f"max_group must be a power of two, got {max_group}")
    if search_radius < 0:
        raise ValueError(f"search_radius must be non-negative, got {search_radius}")
    if not 1 <= reference_stride <= patch_size:
        raise ValueError(f"reference_stride must be between 1 and the patch size {patch_size}, got {reference_stride}")
