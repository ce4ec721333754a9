"""Filling missing pixels by iterated collaborative hard thresholding.

Starting from a smooth first guess, each pass groups similar patches of the
current estimate (:mod:`spmcli.restoration.block_matching`), takes each group
to a 3-D transform domain (2-D DCT of each patch, Haar across the group), sets
to zero every coefficient below the pass's threshold, averages the filtered
patches back and puts the observed pixels back. The threshold decreases
geometrically from pass to pass (deterministic annealing), so strong
structure is recovered first and finer detail later; grouping brings in what
a patch alone cannot know: the image's other, similar patches [1]_ [2]_.

Time and memory follow the hole. Only reference patches that contain a
missing pixel are filtered, and only the group members that contain one are
aggregated (the others cover observed pixels only, which are put back
anyway); the image is processed in blocks of references with a halo of one
search radius plus one patch, each block taken through all its passes
before the next, and blocks without a missing pixel are skipped. A small
hole in a large image costs the hole's neighbourhood.

References
----------
.. [1] X. Li, "Image Recovery Via Hybrid Sparse Representations: A
       Deterministic Annealing Approach", IEEE J. Selected Topics in Signal
       Processing 5(5), 2011.
.. [2] O. G. Guleryuz, "Nonlinear approximation based image recovery using
       adaptive sparse reconstructions and iterated denoising", IEEE Trans.
       Image Processing 15(3), 2006.
.. [3] K. Dabov, A. Foi, V. Katkovnik and K. Egiazarian, "Image Denoising by
       Sparse 3-D Transform-Domain Collaborative Filtering", IEEE Trans. Image
       Processing 16(8), 2007.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..sparse.patches import grid_axis
from .block_matching import MATCH_TILE, group_sizes, match_references
from .patch_transforms import haar_matrix, kaiser_window, patch_transform

__all__ = ["FillSettings", "collaborative_fill"]

ProgressCallback = Callable[[str, int, int], None]

KAISER_BETA = 2.0
# Reference positions per block side (before the halo): bounds the memory of
# a block (its coefficients: about 20 MB per channel in float32).
BLOCK_SIDE = 256
# Group members filtered at once.
CHUNK_MEMBERS = 32768


@dataclass(frozen=True)
class FillSettings:
    """Parameters of :func:`collaborative_fill`.

    Attributes
    ----------
    thresholds : tuple of float
        One hard threshold per pass (0..1 scale), decreasing.
    patch_size : int
        Side of the square patches.
    max_group : int
        Most patches per group (a power of two).
    search_radius : int
        Similar patches are searched within about this many pixels.
    reference_stride : int
        Step between reference patches.
    rematch_every : int
        Groups are found again on the current estimate every this many passes.
    """

    thresholds: tuple[float, ...]
    patch_size: int = 8
    max_group: int = 16
    search_radius: int = 8
    reference_stride: int = 3
    rematch_every: int = 3


def collaborative_fill(
    planes: np.ndarray,
    missing: np.ndarray,
    settings: FillSettings,
    *,
    callback: ProgressCallback | None = None,
) -> tuple[np.ndarray, int]:
    """Refine the missing pixels of ``planes`` by iterated collaborative hard thresholding.

    Parameters
    ----------
    planes : ndarray, shape (H, W, C)
        The current estimate (observed pixels exact, missing ones a first
        guess), decorrelated channels (groups are found on the first).
    missing : ndarray of bool, shape (H, W)
        True where a pixel is missing.
    settings : FillSettings
        The pass schedule and grouping.
    callback : callable, optional
        ``callback("collaborative", blocks_done, blocks_total)`` after each block.

    Returns
    -------
    planes : ndarray, shape (H, W, C)
        The estimate; only missing pixels differ from the input.
    n_references : int
        Reference patches filtered per pass, summed over the blocks (each
        contains a missing pixel): the measure of the work done.
    """
    p = settings.patch_size
    height, width = missing.shape
    result = np.array(planes, dtype=np.float64)
    ref_rows_all = grid_axis(height, p, settings.reference_stride)
    ref_cols_all = grid_axis(width, p, settings.reference_stride)
    # The references filtered: for each missing pixel, the reference whose
    # patch centre is nearest (its "owner"). Every missing pixel is then in a
    # filtered patch, and a sparse mask costs about one reference per
    # missing pixel instead of every patch that touches one (7 at stride 3).
    active = np.zeros((ref_rows_all.size, ref_cols_all.size), dtype=bool)
    hole_rows, hole_cols = np.nonzero(missing)
    active[_owner(ref_rows_all, p, height)[hole_rows], _owner(ref_cols_all, p, width)[hole_cols]] = True
    halo = settings.search_radius + p
    block_refs = max(1, BLOCK_SIDE // settings.reference_stride)
    blocks = []
    for row_start in range(0, ref_rows_all.size, block_refs):
        for col_start in range(0, ref_cols_all.size, block_refs):
            rows = slice(row_start, row_start + block_refs)
            cols = slice(col_start, col_start + block_refs)
            if active[rows, cols].any():
                blocks.append((rows, cols))
    n_references = 0
    for done, (rows, cols) in enumerate(blocks, start=1):
        core_rows, core_cols = ref_rows_all[rows], ref_cols_all[cols]
        top = max(0, int(core_rows[0]) - halo)
        bottom = min(height, int(core_rows[-1]) + p + halo)
        left = max(0, int(core_cols[0]) - halo)
        right = min(width, int(core_cols[-1]) + p + halo)
        area = (slice(top, bottom), slice(left, right))
        # Every reference of the block and its halo is filtered, so that the
        # halo's missing pixels evolve too; only the core's are kept.
        inside_rows = (ref_rows_all >= top) & (ref_rows_all <= bottom - p)
        inside_cols = (ref_cols_all >= left) & (ref_cols_all <= right - p)
        grid_rows, grid_cols = np.meshgrid(
            ref_rows_all[inside_rows] - top, ref_cols_all[inside_cols] - left, indexing="ij"
        )
        keep = active[np.ix_(inside_rows, inside_cols)]
        block = _BlockFill(result[area], missing[area], settings)
        filled = block.run(grid_rows[keep], grid_cols[keep])
        n_references += int(keep.sum()) * len(settings.thresholds)
        # Write back the core: pixels of the core's patches.
        core_top, core_left = int(core_rows[0]) - top, int(core_cols[0]) - left
        core_bottom, core_right = int(core_rows[-1]) + p - top, int(core_cols[-1]) + p - left
        core = (slice(core_top, core_bottom), slice(core_left, core_right))
        target = result[area][core]
        hole = missing[area][core]
        target[hole] = filled[core][hole]
        if callback is not None:
            callback("collaborative", done, len(blocks))
    return result, n_references


def _owner(starts: np.ndarray, patch_size: int, length: int) -> np.ndarray:
    """For each pixel index along an axis, the index of the patch (starting at
    ``starts``) whose centre is nearest."""
    centres = starts + (patch_size - 1) / 2
    return np.searchsorted((centres[1:] + centres[:-1]) / 2, np.arange(length))


def _box_any(mask: np.ndarray, size: int) -> np.ndarray:
    """For each ``size`` x ``size`` window position: does it hold a True pixel?"""
    counts = np.cumsum(np.cumsum(np.pad(mask.astype(np.int32), ((1, 0), (1, 0))), axis=0), axis=1)
    sums = counts[size:, size:] - counts[:-size, size:] - counts[size:, :-size] + counts[:-size, :-size]
    return sums > 0


class _BlockFill:
    """All the passes on one block (a crop of the image with its halo)."""

    def __init__(self, planes: np.ndarray, missing: np.ndarray, settings: FillSettings) -> None:
        self.settings = settings
        p = settings.patch_size
        self.p = p
        # Channels first, so that each plane is contiguous (updated in place).
        self.planes = np.ascontiguousarray(np.moveaxis(planes, 2, 0), dtype=np.float32)
        self.missing = missing
        self.n_channels = planes.shape[2]
        self.n_pos_rows, self.n_pos_cols = planes.shape[0] - p + 1, planes.shape[1] - p + 1
        forward, _ = patch_transform("dct", p)
        self.forward_t = np.ascontiguousarray(forward.T, dtype=np.float32)
        self.inverse = np.ascontiguousarray(forward, dtype=np.float32)  # orthonormal: inverse = transpose
        # Coefficients of every patch position; only positions holding a
        # missing pixel change between passes.
        self.coefficients = [self._transform(c, None) for c in range(self.n_channels)]
        self.changing = np.flatnonzero(_box_any(missing, p).ravel())
        # Each pixel of a patch estimate weighted by a Kaiser window, as in BM3D.
        self.window = kaiser_window(p, KAISER_BETA).ravel()
        self.hole = np.flatnonzero(missing.ravel())
        n_positions = self.n_pos_rows * self.n_pos_cols
        # Position -> row of the accumulators (positions holding a missing pixel), -1 elsewhere.
        self.slot = np.full(n_positions, -1, dtype=np.int64)
        self.slot[self.changing] = np.arange(self.changing.size)
        self.stale = np.zeros(self.changing.size, dtype=bool)

    def _transform(self, channel: int, positions: np.ndarray | None) -> np.ndarray:
        windows = sliding_window_view(self.planes[channel], (self.p, self.p))
        windows = windows.reshape(-1, self.p * self.p)
        if positions is not None:
            windows = windows[positions]
        return windows @ self.forward_t

    def run(self, ref_rows: np.ndarray, ref_cols: np.ndarray) -> np.ndarray:
        s = self.settings
        n_values = self.p * self.p
        groups = None
        for index, threshold in enumerate(s.thresholds):
            if groups is None or index % s.rematch_every == 0:
                self._refresh(self.changing)
                features = self.coefficients[0].reshape(self.n_pos_rows, self.n_pos_cols, n_values)
                rows, cols, distances = match_references(
                    features, ref_rows, ref_cols, s.search_radius, s.max_group, MATCH_TILE * s.reference_stride
                )
                # Distances between estimates whose error is of the order of
                # the threshold: the noise-like share plus a structural tolerance.
                limit = np.float32((2.0 * threshold**2 + STRUCTURE_DISTANCE) * n_values)
                sizes = group_sizes(distances, limit, s.max_group)
                groups = (rows * self.n_pos_cols + cols, sizes)
                # Between matchings only the members' coefficients are needed.
                members = np.unique(groups[0][sizes[:, None] > np.arange(s.max_group)])
                members_changing = members[self.slot[members] >= 0]
            else:
                self._refresh(members_changing)
            self._pass(groups[0], groups[1], np.float32(threshold))
        return np.moveaxis(self.planes, 0, 2).astype(np.float64)

    def _pass(self, positions_of: np.ndarray, sizes: np.ndarray, threshold: np.float32) -> None:
        """One pass of hard thresholding of every group; updates the missing pixels."""
        import scipy.sparse

        n_values = self.p * self.p
        n_changing = self.changing.size
        # Per channel: the weighted member estimates that land on changing
        # positions, summed per position by one sparse product at the end.
        estimates: list[list[np.ndarray]] = [[] for _ in range(self.n_channels)]
        member_weights: list[list[np.ndarray]] = [[] for _ in range(self.n_channels)]
        member_slots = []
        for size in np.unique(sizes):
            size = int(size)
            across = haar_matrix(size).astype(np.float32)
            of_size = np.flatnonzero(sizes == size)
            chunk = max(1, CHUNK_MEMBERS // size)
            for first in range(0, of_size.size, chunk):
                positions = positions_of[of_size[first : first + chunk], :size].T
                n_groups = positions.shape[1]
                member_slot = self.slot[positions].ravel()
                useful = np.flatnonzero(member_slot >= 0)
                member_slots.append(member_slot[useful])
                for c in range(self.n_channels):
                    spectrum = across @ self.coefficients[c][positions].reshape(size, -1)
                    keep = np.abs(spectrum) >= threshold
                    keep[0, ::n_values] = True  # the group mean always passes
                    spectrum *= keep
                    kept = np.count_nonzero(keep.reshape(size, n_groups, n_values), axis=(0, 2))
                    group_weight = (1.0 / np.maximum(kept, 1)).astype(np.float32)
                    estimates[c].append((across.T @ spectrum).reshape(-1, n_values)[useful])
                    member_weights[c].append(np.tile(group_weight, size)[useful])
        slots = np.concatenate(member_slots)
        sums = np.empty((self.n_channels, n_changing, n_values), dtype=np.float32)
        weights = np.empty((self.n_channels, n_changing))
        for c in range(self.n_channels):
            member_weight = np.concatenate(member_weights[c])
            adder = scipy.sparse.csr_matrix(
                (member_weight, (slots, np.arange(slots.size))), shape=(n_changing, slots.size)
            )
            sums[c] = adder @ np.concatenate(estimates[c])
            weights[c] = np.bincount(slots, weights=member_weight, minlength=n_changing)
        self._update(sums, weights)

    def _update(self, sums: np.ndarray, weights: np.ndarray) -> None:
        """Aggregate the estimates of the positions that received some onto the missing pixels."""
        p = self.p
        n_rows, n_cols = self.n_pos_rows, self.n_pos_cols
        window = self.window.reshape(p, p)
        received = np.flatnonzero(weights[0] > 0)
        positions = self.changing[received]
        # Many estimates: overlap-add on the whole position grid; few: add
        # each (position, pixel) pair, at a cost that follows their number.
        dense = received.size > n_rows * n_cols // 4
        if not dense:
            pos_rows, pos_cols = np.divmod(positions, n_cols)
            dy, dx = np.divmod(np.arange(p * p), p)
            pixel = ((pos_rows[:, None] + dy) * self.planes.shape[2] + (pos_cols[:, None] + dx)).ravel()
        for c in range(self.n_channels):
            patches = (sums[c, received] @ self.inverse) * self.window
            if dense:
                numerator = np.zeros(self.planes.shape[1:], dtype=np.float32)
                denominator = np.zeros(self.planes.shape[1:], dtype=np.float32)
                grid = np.zeros((p * p, n_rows * n_cols), dtype=np.float32)
                grid[:, positions] = patches.T
                weight_map = np.zeros(n_rows * n_cols, dtype=np.float32)
                weight_map[positions] = weights[c, received]
                weight_map = weight_map.reshape(n_rows, n_cols)
                for offset in range(p * p):
                    dy, dx = divmod(offset, p)
                    numerator[dy : dy + n_rows, dx : dx + n_cols] += grid[offset].reshape(n_rows, n_cols)
                    denominator[dy : dy + n_rows, dx : dx + n_cols] += weight_map * window[dy, dx]
                numerator, denominator = numerator.ravel()[self.hole], denominator.ravel()[self.hole]
            else:
                n_pixels = self.planes[c].size
                patch_weights = weights[c, received][:, None] * self.window
                numerator = np.bincount(pixel, weights=patches.ravel(), minlength=n_pixels)[self.hole]
                denominator = np.bincount(pixel, weights=patch_weights.ravel(), minlength=n_pixels)[self.hole]
            covered = denominator > 0
            values = numerator[covered] / denominator[covered]
            if self.n_channels == 1:
                # Grey values outside 0..1 cannot be right; colour planes are
                # clipped once back in RGB.
                values = np.clip(values, 0.0, 1.0)
            self.planes[c].reshape(-1)[self.hole[covered]] = values
        self.stale[:] = True

    def _refresh(self, positions: np.ndarray) -> None:
        """Recompute the coefficients of those ``positions`` whose pixels changed since."""
        positions = positions[self.stale[self.slot[positions]]]
        for c in range(self.n_channels):
            self.coefficients[c][positions] = self._transform(c, positions)
        self.stale[self.slot[positions]] = False


# Grouping tolerance beyond the estimate's error (0..1 scale, mean squared
# difference per pixel): the same structural tolerance as BM3D's first step.
STRUCTURE_DISTANCE = 1750 / 255**2
