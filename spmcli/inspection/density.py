"""The density model of good patches: robust standardisation of the features,
per-position deviations for aligned images, and experts, each the distance of
a descriptor's features (all, or a group) to the nearest good descriptors in
a thinned memory bank, divided by that of held-out good patches.

A patch is anomalous when no good patch looks like it. The descriptor of a
patch (its features, each divided by the spread of that feature over good
patches) is compared with a *memory bank* of good descriptors; its anomaly is
the mean Euclidean distance to its ``n_neighbours`` nearest ones, in units of
the good patches' spread. Unlike independent z-scores, this knows which
*combinations* are normal (a high residual is normal on a mortar joint, not on
a flat brick face), and it works in both directions: too little contrast
("texture missing") is as far from the good patches as too much. This is the
nearest-neighbour scoring of PatchCore [1]_ on hand-made, explainable
features, with a random, seeded thinning of the bank instead of a coreset.

Several *experts* can watch different feature groups (:class:`Expert`): the
joint model of all features, and for instance the line features alone, so
that one strong feature is not drowned by the spread of ten others. Each
expert's distance is divided by a high quantile of the distances of good
patches it never saw (cross-validated over the good images), which puts
experts of different dimensions and tails on one scale; a patch's anomaly is
the largest (a union of detectors, each with a known false-alarm rate on good
patches).

For aligned images each feature is first replaced by its deviation from the
good images at the same grid position (divided by the spread there, shrunk
towards the average spread since a few dozen images give noisy estimates);
the bank then holds the leave-one-out deviations of the training images, so a
training image is not compared with statistics that contain itself.

References
----------
.. [1] K. Roth, L. Pemula, J. Zepeda, B. Schölkopf, T. Brox and P. Gehler,
       "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022.
.. [3] S. Arya, D. M. Mount, N. S. Netanyahu, R. Silverman and A. Y. Wu, "An
       optimal algorithm for approximate nearest neighbor searching in fixed
       dimensions", J. ACM 45(6), 1998.
.. [2] F. R. Hampel, "The influence curve and its role in robust estimation",
       J. American Statistical Association 69, 1974 (median absolute deviation).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

__all__ = [
    "HELD_OUT_QUANTILE",
    "MAX_HELD_OUT_PATCHES",
    "RARE_CANDIDATES",
    "Expert",
    "PositionModel",
    "ScaleModel",
    "fit_expert",
    "group_folds",
    "position_model",
    "robust_location_spread",
    "search_eps",
    "search_tree",
    "thin_bank",
    "thin_bank_rows",
]

# Approximate nearest-neighbour search [3]_: the neighbour found is at most
# (1 + SEARCH_EPS) times farther than the true nearest one. Measured on the
# dev halves, exact search cost twice the time (KolektorSDD 306 vs 145 ms per
# image) for the same AUROC to 0.01 on every set (BENCHMARKS.md).
SEARCH_EPS = 1.0
# Up to this many features the search is exact: in so few dimensions an exact
# kd-tree search is as fast as the approximate one (the approximation's error
# reached the size of the normaliser on the two-feature line expert).
EXACT_SEARCH_MAX_FEATURES = 3
# Spreads never reach zero (flat training images), so standardised values stay finite.
SPREAD_FLOOR = 1e-6
# The rare half of a bank is chosen among at most this many times its size
# of seeded candidates (not every row), so learning time stays bounded.
RARE_CANDIDATES = 5
# Aligned mode: weight of the position-averaged variance in each position's
# variance (shrinkage, as Ledoit & Wolf 2004 for covariances).
POSITION_SHRINK = 0.5


def robust_location_spread(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and MAD-based spread [2]_ of each column of ``values`` ``(n, F)``."""
    location = np.median(values, axis=0)
    spread = 1.4826 * np.median(np.abs(values - location), axis=0)
    # A feature constant on most patches (MAD 0) falls back to its standard deviation.
    spread = np.where(spread > SPREAD_FLOOR, spread, values.std(axis=0))
    return location, np.maximum(spread, SPREAD_FLOOR)


def search_tree(rows: np.ndarray, distinct: bool = False) -> tuple[cKDTree, np.ndarray | None]:
    """A nearest-neighbour search tree over ``rows`` ``(n, F)``.

    With ``distinct``, over the distinct rows only, and with each one's first
    index in ``rows`` (None when no row repeats): for the nearest row alone,
    repeated rows add nothing, and a one-sided feature group holds thousands
    of rows exactly zero, which slow a tree down. Query it with
    ``eps=search_eps(F)``.
    """
    first = None
    if distinct:
        unique, index = np.unique(rows, axis=0, return_index=True)
        if index.size < rows.shape[0]:
            rows, first = unique, index
    # Sliding-midpoint splits, not medians: faster to search on these
    # descriptors, and the approximate search's error a little smaller.
    return cKDTree(rows, balanced_tree=False), first


def search_eps(n_features: int) -> float:
    """The search's approximation for ``n_features`` features (0: exact)."""
    return 0.0 if n_features <= EXACT_SEARCH_MAX_FEATURES else SEARCH_EPS


def thin_bank(descriptors: np.ndarray, bank_size: int, seed: int, rare_share: float = 0.5) -> np.ndarray:
    """At most ``bank_size`` good descriptors: half a seeded random sample (the
    typical patches, in proportion), half the rows farthest from that sample
    (rare but normal patches, such as a reflection or an edge, which a random
    sample would drop and then flag). In the rows' original order."""
    return descriptors[thin_bank_rows(descriptors, bank_size, seed, rare_share)]


def thin_bank_rows(descriptors: np.ndarray, bank_size: int, seed: int, rare_share: float = 0.5) -> np.ndarray:
    """The sorted row indices :func:`thin_bank` keeps."""
    count = descriptors.shape[0]
    if count <= bank_size:
        return np.arange(count)
    rng = np.random.default_rng(seed)
    order = rng.permutation(count)
    n_rare = round(rare_share * bank_size)
    typical = order[: bank_size - n_rare]
    if n_rare == 0:
        return np.sort(typical)
    candidates = order[bank_size - n_rare :][: RARE_CANDIDATES * bank_size]
    tree, _ = search_tree(descriptors[typical], distinct=True)
    distance, _ = tree.query(descriptors[candidates], k=1, eps=search_eps(descriptors.shape[1]))
    rare = candidates[np.argsort(-distance, kind="stable")[:n_rare]]
    return np.sort(np.concatenate([typical, rare]))


@dataclass
class PositionModel:
    """Per-position statistics of standardised features (aligned mode).

    Attributes
    ----------
    mean : ndarray, shape (F, n_rows, n_cols)
    spread : ndarray, shape (F, n_rows, n_cols)
        Shrunk standard deviation at each position.
    """

    mean: np.ndarray
    spread: np.ndarray

    def deviations(self, standardised: np.ndarray) -> np.ndarray:
        """``(F, rows, cols)`` standardised features -> deviations in position spreads."""
        return (standardised - self.mean) / self.spread


def _shrunk_spread(variance: np.ndarray) -> np.ndarray:
    average = variance.mean(axis=(1, 2), keepdims=True)
    return np.sqrt((1 - POSITION_SHRINK) * variance + POSITION_SHRINK * average + SPREAD_FLOOR**2)


def position_model(stack: np.ndarray) -> tuple[PositionModel, np.ndarray]:
    """Per-position model of ``stack`` ``(n_images, F, rows, cols)`` and the
    leave-one-out deviations of every image, same shape as ``stack``."""
    n_images = stack.shape[0]
    if n_images < 2:
        raise ValueError("aligned statistics need at least 2 good images")
    mean = stack.mean(axis=0)
    variance = stack.var(axis=0, ddof=1)
    model = PositionModel(mean, _shrunk_spread(variance))
    # Mean without image i: (n * mean - x_i) / (n - 1); the spread barely
    # changes and is kept (the shrinkage dominates it anyway).
    loo_mean = (n_images * mean[None] - stack) / (n_images - 1)
    return model, (stack - loo_mean) / model.spread[None]


def group_folds(n_images: int, seed: int, n_folds: int = 3) -> np.ndarray:
    """Seeded assignment of ``n_images`` good images to ``n_folds`` folds (fewer for fewer images)."""
    folds = max(1, min(n_folds, n_images))
    order = np.random.default_rng(seed).permutation(n_images)
    assignment = np.empty(n_images, dtype=np.int64)
    assignment[order] = np.arange(n_images) % folds
    return assignment


@dataclass
class Expert:
    """A density model over some features of the descriptor: one "expert".

    Attributes
    ----------
    name : str
        The feature group it watches (``"joint"`` for all features).
    columns : ndarray of int
        Indices of its features in the descriptor.
    bank : ndarray, shape (n_bank, len(columns))
        Thinned good descriptors restricted to ``columns``.
    one_sided : bool
        Only values above the good level count (values below it are taken
        as the good level): the expert looks for something that is there and
        should not be, such as a line.
    normaliser : float
        The :data:`HELD_OUT_QUANTILE` quantile of the distances of held-out
        good patches to the good patches of the other images: an expert's
        anomaly is its distance divided by this, so 1 is as unusual as the
        rarest good patches (about one per image) and experts of different
        dimensions and tails are comparable.
    """

    name: str
    columns: np.ndarray
    bank: np.ndarray
    normaliser: float = 1.0
    one_sided: bool = False
    _trees: dict = field(default_factory=dict, repr=False, compare=False)

    def __getstate__(self) -> dict:
        # The search trees are rebuilt where they are used: cheaper than shipping them.
        state = self.__dict__.copy()
        state["_trees"] = {}
        return state

    def _search_tree(self, distinct: bool) -> tuple[cKDTree, np.ndarray | None]:
        if distinct not in self._trees:
            self._trees[distinct] = search_tree(self.bank, distinct)
        return self._trees[distinct]

    def watched(self, descriptors: np.ndarray) -> np.ndarray:
        """The expert's columns of ``descriptors`` ``(n, F)``, one-sided where it is."""
        values = descriptors[:, self.columns]
        return np.maximum(values, 0.0) if self.one_sided else values

    def distances(self, descriptors: np.ndarray, n_neighbours: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw mean distance of ``descriptors`` (all features) to the nearest bank rows, and the nearest row."""
        count = min(n_neighbours, self.bank.shape[0])
        # With several neighbours, repeated rows count as often as they occur.
        tree, first = self._search_tree(distinct=count == 1)
        distances, indices = tree.query(self.watched(descriptors), k=count, eps=search_eps(self.bank.shape[1]))
        if first is not None:
            indices = first[indices]
        if count == 1:
            return distances, indices
        return distances.mean(axis=1), indices[:, 0]


# Each expert's distances are divided by this quantile of held-out good
# patches' distances (see Expert.normaliser).
HELD_OUT_QUANTILE = 0.9999
# At most this many held-out patches per fold are compared with the other
# folds' bank (the 0.9999 quantile of 3 x 40,000 is about the 12th largest).
MAX_HELD_OUT_PATCHES = 40000


def fit_expert(
    name: str,
    columns: np.ndarray,
    per_image: list[np.ndarray],
    folds: np.ndarray,
    *,
    bank_size: int,
    rare_share: float,
    n_neighbours: int,
    seed: int,
    quantile: float = HELD_OUT_QUANTILE,
    one_sided: bool = False,
) -> Expert:
    """An expert over ``columns`` of the good images' descriptors ``per_image``.

    The bank thins all images' descriptors (:func:`thin_bank`); the normaliser
    comes from cross-validation over images: each fold's patches are compared
    with the bank's rows from the other folds' images, so it measures how far
    a *new* good patch typically lies from a bank thinned like the final one
    (a training patch lies at distance 0 from itself). The folds share the
    one thinning: a fold's bank is the final bank without the fold's images'
    rows, as sparse a sample of each image as the final bank; thinning each
    fold apart cost three more searches for the rare rows, three quarters of
    the time of learning the models (KolektorSDD: 10.8 of 14.4 s).
    """
    columns = np.asarray(columns, dtype=np.int64)
    expert = Expert(name, columns, np.zeros((1, columns.size)), one_sided=one_sided)
    restricted = [expert.watched(descriptors) for descriptors in per_image]
    rows = np.concatenate(restricted)
    row_folds = np.repeat(folds, [values.shape[0] for values in restricted])
    kept = thin_bank_rows(rows, bank_size, seed, rare_share)
    expert.bank = rows[kept]
    held_out = []
    unkept = np.ones(rows.shape[0], dtype=bool)
    unkept[kept] = False
    for fold in np.unique(folds):
        inside = row_folds != fold
        fold_rows = kept[inside[kept]]
        if fold_rows.size == 0:
            continue
        # Filled up to the final bank's size with random rows of the same
        # images: a nearest neighbour's distance depends on the bank's size.
        spare = np.flatnonzero(inside & unkept)
        missing = min(kept.size - fold_rows.size, spare.size)
        if missing > 0:
            fill = np.random.default_rng([seed, int(fold), 1]).choice(spare, missing, replace=False)
            fold_rows = np.concatenate([fold_rows, fill])
        fold_bank = rows[np.sort(fold_rows)]
        fold_expert = Expert(name, np.arange(columns.size), fold_bank)
        queries = rows[row_folds == fold]
        if queries.shape[0] > MAX_HELD_OUT_PATCHES:
            # A seeded sample bounds the learning time on large training sets.
            pick = np.random.default_rng([seed, int(fold)]).choice(
                queries.shape[0], MAX_HELD_OUT_PATCHES, replace=False
            )
            queries = queries[np.sort(pick)]
        held_out.append(fold_expert.distances(queries, n_neighbours)[0])
    if held_out:
        expert.normaliser = max(float(np.quantile(np.concatenate(held_out), quantile)), SPREAD_FLOOR)
    return expert


@dataclass
class ScaleModel:
    """The model of good patches at one scale.

    Attributes
    ----------
    location, spread : ndarray, shape (F,)
        Median and MAD-based spread of each raw feature over good patches.
    experts : list of Expert
        Density models over feature groups (or one over all features); a
        patch's anomaly is the largest of their normalised distances.
    positions : PositionModel or None
        Aligned mode's per-position statistics of the standardised features.
    """

    location: np.ndarray
    spread: np.ndarray
    experts: list[Expert]
    positions: PositionModel | None = None

    def descriptors(self, values: np.ndarray, polarity_clip: np.ndarray) -> np.ndarray:
        """Raw features ``(F, rows, cols)`` -> descriptors ``(rows * cols, F)``.

        ``polarity_clip`` ``(F,)`` holds -1 (ignore values below the good
        median), +1 (ignore values above it) or 0 for each feature.
        """
        standardised = (values - self.location[:, None, None]) / self.spread[:, None, None]
        if self.positions is not None:
            standardised = self.positions.deviations(standardised)
        clip = polarity_clip[:, None, None]
        standardised = np.where(clip * standardised > 0, 0.0, standardised)
        return standardised.reshape(standardised.shape[0], -1).T

    def anomaly(self, descriptors: np.ndarray, n_neighbours: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per descriptor: the largest normalised expert distance, which expert
        gave it, and that expert's nearest bank row."""
        scores = np.empty((len(self.experts), descriptors.shape[0]))
        nearest = np.empty((len(self.experts), descriptors.shape[0]), dtype=np.int64)
        for index, expert in enumerate(self.experts):
            distance, nearest[index] = expert.distances(descriptors, n_neighbours)
            scores[index] = distance / expert.normaliser
        winner = np.argmax(scores, axis=0)
        columns = np.arange(descriptors.shape[0])
        return scores[winner, columns], winner, nearest[winner, columns]
