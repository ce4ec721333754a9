"""Block matching: for each reference patch, the most similar patches around it.

The distances from a tile of reference patches to every candidate patch of
the tile's search window are one matrix product of patch vectors
(``|r|^2 + |c|^2 - 2 r.c``); :func:`nearest_first` then keeps the nearest,
sorting only the few candidates under a bound taken from minima of runs of
candidates. On a 512x512 image (39x39 window, a reference every 3 pixels)
this takes about 0.5 s per step in numpy; ``argpartition`` over every
candidate took 0.8 s more per step, and one pass over the image per displacement
(running box sums of squared differences) took as long for an 11x11 window.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MATCH_TILE", "block_match", "group_sizes", "match_references", "nearest_first"]

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
    """The ``n_nearest`` patch positions closest to each reference of a grid, nearest first.

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
    norms = np.einsum("rcf,rcf->rc", features, features)
    n_refs = ref_rows.size * ref_cols.size
    result = _empty_result(n_refs, n_nearest)
    index = np.arange(n_refs).reshape(ref_rows.size, ref_cols.size)
    for i in range(0, ref_rows.size, tile):
        for j in range(0, ref_cols.size, tile):
            rows, cols = np.meshgrid(ref_rows[i : i + tile], ref_cols[j : j + tile], indexing="ij")
            ids = index[i : i + tile, j : j + tile].ravel()
            _match_tile(features, norms, rows.ravel(), cols.ravel(), search_radius, n_nearest, ids, result)
    return result


def match_references(
    features: np.ndarray,
    ref_rows: np.ndarray,
    ref_cols: np.ndarray,
    search_radius: int,
    n_nearest: int,
    tile_span: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`block_match` for references anywhere (``ref_rows[i], ref_cols[i]``).

    References are matched together by square cells of ``tile_span``
    positions; cells without a reference cost nothing, so the time follows
    the number of references, not the image size.
    """
    norms = np.einsum("rcf,rcf->rc", features, features)
    result = _empty_result(ref_rows.size, n_nearest)
    cells = (ref_rows // tile_span) * (features.shape[1] // tile_span + 1) + ref_cols // tile_span
    order = np.argsort(cells, kind="stable")
    starts = np.flatnonzero(np.diff(cells[order], prepend=-1))
    for ids in np.split(order, starts[1:]):
        _match_tile(features, norms, ref_rows[ids], ref_cols[ids], search_radius, n_nearest, ids, result)
    return result


def _empty_result(n_refs: int, n_nearest: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.empty((n_refs, n_nearest), dtype=np.int64),
        np.empty((n_refs, n_nearest), dtype=np.int64),
        np.empty((n_refs, n_nearest), dtype=np.float32),
    )


def _match_tile(
    features: np.ndarray,
    norms: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    search_radius: int,
    n_nearest: int,
    ids: np.ndarray,
    result: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    """Match the references at ``rows, cols`` against every candidate within
    ``search_radius`` of their bounding box; write rows ``ids`` of ``result``."""
    n_rows, n_cols, n_features = features.shape
    out_rows, out_cols, out_distances = result
    top, bottom = max(0, int(rows.min()) - search_radius), min(n_rows, int(rows.max()) + search_radius + 1)
    left, right = max(0, int(cols.min()) - search_radius), min(n_cols, int(cols.max()) + search_radius + 1)
    width = right - left
    candidates = features[top:bottom, left:right].reshape(-1, n_features)
    distances = (features[rows, cols] * np.float32(-2.0)) @ candidates.T
    distances += norms[top:bottom, left:right].reshape(1, -1)
    distances += norms[rows, cols].reshape(-1, 1)
    k = min(n_nearest, distances.shape[1])
    nearest, values = nearest_first(distances, k, (rows - top) * width + (cols - left))
    out_rows[ids, :k] = top + nearest // width
    out_cols[ids, :k] = left + nearest % width
    out_distances[ids, :k] = values
    if k < n_nearest:
        out_rows[ids, k:] = out_rows[ids, :1]
        out_cols[ids, k:] = out_cols[ids, :1]
        out_distances[ids, k:] = np.inf


def nearest_first(distances: np.ndarray, k: int, reference_columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` smallest entries of each row, in ascending order, the reference first.

    Parameters
    ----------
    distances : ndarray, shape (n_references, n_candidates), float32
        Squared distances (slightly negative ones, from rounding, count as
        0). Overwritten at the references' columns.
    k : int
        Entries kept per row, at most ``n_candidates``.
    reference_columns : ndarray of int, shape (n_references,)
        Each row's own column: it comes first whatever its distance.

    Returns
    -------
    columns : ndarray of int64, shape (n_references, k)
        Ties are broken by the lower column.
    values : ndarray of float32, shape (n_references, k)
        The distances, at least 0 (the reference's: 0).

    Notes
    -----
    ``argpartition`` over every candidate was half of the denoiser's time.
    Here the minima of ``2 k`` runs of candidates bound each row's k-th
    smallest distance from above (each minimum is a distinct entry), so only
    the few entries under the bound (about 2 k on natural images) are
    gathered and sorted, by one key that packs row, distance and column;
    where many entries tie at the bound, only the lowest columns of those.
    """
    n_rows, n_candidates = distances.shape
    # The reference comes first whatever rounding says about its zero distance.
    distances[np.arange(n_rows), reference_columns] = -1.0
    n_runs = min(n_candidates, 2 * k)
    starts = np.arange(n_runs) * (n_candidates // n_runs)
    run_minima = np.minimum.reduceat(distances, starts, axis=1)
    # At least 0: distances rounded below 0 tie with 0, broken by column.
    bound = np.maximum(np.partition(run_minima, k - 1, axis=1)[:, k - 1], 0.0)
    flat = np.flatnonzero(distances <= bound[:, None])
    if flat.size > 4 * k * n_rows:
        # Many ties at the bound (identical patches, as in flat or saturated
        # areas): of those, only the lowest columns can be among the k.
        np.maximum(distances, 0.0, out=distances)
        distances[np.arange(n_rows), reference_columns] = -1.0
        below = distances < bound[:, None]
        at_bound = distances == bound[:, None]
        room = k - np.count_nonzero(below, axis=1)
        at_bound &= np.cumsum(at_bound, axis=1) <= room[:, None]
        flat = np.flatnonzero(below | at_bound)
    row, column = np.divmod(flat, n_candidates)
    value = distances.ravel()[flat]
    np.maximum(value, 0.0, out=value)
    value[value == 0.0] = 0.0  # -0.0 has the sign bit set
    # Non-negative float32 values order like their bit patterns; the
    # reference's field is 0, everyone else's the bits plus one.
    value_field = value.view(np.int32).astype(np.int64) + 1
    value_field[column == reference_columns[row]] = 0
    column_bits = max(1, int(n_candidates - 1).bit_length())
    keys = (row << (31 + column_bits)) | (value_field << column_bits) | column
    keys.sort()
    first = np.concatenate(([0], np.cumsum(np.bincount(row, minlength=n_rows))[:-1]))
    kept = keys[first[:, None] + np.arange(k)]
    columns = kept & ((1 << column_bits) - 1)
    values = np.take_along_axis(distances, columns, axis=1)
    np.maximum(values, 0.0, out=values)
    values[:, 0] = 0.0
    return columns, values


def group_sizes(distances: np.ndarray, threshold: float, max_group: int) -> np.ndarray:
    """Per reference: the largest power of two not above its number of
    candidates within ``threshold``, at most ``max_group`` (at least 1)."""
    count = np.count_nonzero(distances <= threshold, axis=1)
    sizes = 2 ** np.floor(np.log2(np.maximum(count, 1))).astype(np.int64)
    return np.minimum(sizes, max_group)
