"""Block matching: for each reference patch, the most similar patches around it.

The distances from a tile of reference patches to every candidate patch of
the tile's search window are one matrix product of patch vectors
(``|r|^2 + |c|^2 - 2 r.c``); ``argpartition`` then keeps the nearest. On a
256x256 image with a 39x39 window this takes about 0.1 s in numpy, where one
pass over the image per displacement (running box sums of squared
differences) took as long for an 11x11 window.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MATCH_TILE", "block_match", "group_sizes"]

# References per matching tile (TILE x TILE): a larger tile makes larger
# matrix products but scans candidates beyond each reference's own window.
MATCH_TILE = 8


def block_match(
    features: np.ndarray,
    ref_rows: np.ndarray,
    ref_cols: np.ndarray,
    search_radius: int,
    n_nearest: int,
    tile: int = MATCH_TILE,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``n_nearest`` patch positions closest to each reference, nearest first.

    Parameters
    ----------
    features : ndarray, shape (n_pos_rows, n_pos_cols, n_features), float32
        One vector per patch position (the patch itself, or its coefficients
        in an orthonormal basis: the same distances).
    ref_rows, ref_cols : ndarray of int
        The reference positions: every (row, col) pair of these increasing axes.
    search_radius : int
        Candidates lie within this many positions of the reference's tile.
    n_nearest : int
        Candidates kept per reference; the reference itself is always first.
    tile : int
        References matched together (``tile`` x ``tile`` of the grid).

    Returns
    -------
    rows, cols : ndarray of int, shape (n_refs, n_nearest)
        Positions of the nearest candidates, references in row-major order.
    distances : ndarray of float32, shape (n_refs, n_nearest)
        Squared feature distances, ascending; ``inf`` where a small image has
        fewer candidates (those slots repeat the reference).
    """
    n_rows, n_cols, n_features = features.shape
    norms = np.einsum("rcf,rcf->rc", features, features)
    n_refs = ref_rows.size * ref_cols.size
    out_rows = np.empty((n_refs, n_nearest), dtype=np.int64)
    out_cols = np.empty((n_refs, n_nearest), dtype=np.int64)
    out_distances = np.empty((n_refs, n_nearest), dtype=np.float32)
    index = np.arange(n_refs).reshape(ref_rows.size, ref_cols.size)
    minus_two = np.float32(-2.0)
    for i in range(0, ref_rows.size, tile):
        tile_rows = ref_rows[i : i + tile]
        top, bottom = max(0, tile_rows[0] - search_radius), min(n_rows, tile_rows[-1] + search_radius + 1)
        for j in range(0, ref_cols.size, tile):
            tile_cols = ref_cols[j : j + tile]
            left, right = max(0, tile_cols[0] - search_radius), min(n_cols, tile_cols[-1] + search_radius + 1)
            width = right - left
            candidates = features[top:bottom, left:right].reshape(-1, n_features)
            references = features[tile_rows[:, None], tile_cols[None, :]].reshape(-1, n_features)
            distances = (references * minus_two) @ candidates.T
            distances += norms[top:bottom, left:right].reshape(1, -1)
            distances += norms[tile_rows[:, None], tile_cols[None, :]].reshape(-1, 1)
            # The reference comes first whatever rounding says about its zero distance.
            own = (tile_rows[:, None] - top) * width + (tile_cols[None, :] - left)
            distances[np.arange(references.shape[0]), own.ravel()] = -1.0
            k = min(n_nearest, distances.shape[1])
            nearest = np.argpartition(distances, k - 1, axis=1)[:, :k]
            values = np.take_along_axis(distances, nearest, axis=1)
            order = np.argsort(values, axis=1, kind="stable")
            nearest = np.take_along_axis(nearest, order, axis=1)
            ids = index[i : i + tile, j : j + tile].ravel()
            out_rows[ids, :k] = top + nearest // width
            out_cols[ids, :k] = left + nearest % width
            out_distances[ids, :k] = np.maximum(np.take_along_axis(values, order, axis=1), 0.0)
            if k < n_nearest:
                out_rows[ids, k:] = out_rows[ids, :1]
                out_cols[ids, k:] = out_cols[ids, :1]
                out_distances[ids, k:] = np.inf
    return out_rows, out_cols, out_distances


def group_sizes(distances: np.ndarray, threshold: float, max_group: int) -> np.ndarray:
    """Per reference: the largest power of two not above its number of
    candidates within ``threshold``, at most ``max_group`` (at least 1)."""
    count = np.count_nonzero(distances <= threshold, axis=1)
    sizes = 2 ** np.floor(np.log2(np.maximum(count, 1))).astype(np.int64)
    return np.minimum(sizes, max_group)
