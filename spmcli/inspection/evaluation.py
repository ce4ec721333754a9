"""Evaluation of a detector on labelled images: image-level AUROC and average
precision, accuracy / precision / recall / F1 at a threshold, AUROC per defect
type, and with ground-truth masks pixel AUROC and AUPRO.

Scores: larger means more anomalous. Labels: 1 (or True) for defective.
Everything is computed exactly (sorting, ties averaged as in
``sklearn.metrics``), in plain numpy, so the command line does not need
scikit-learn; the tests check every figure against ``sklearn.metrics``.

References
----------
.. [1] T. Fawcett, "An introduction to ROC analysis", Pattern Recognition
       Letters 27(8), 2006.
.. [2] P. Bergmann, K. Batzner, M. Fauser, D. Sattlegger and C. Steger, "The
       MVTec Anomaly Detection Dataset: A Comprehensive Real-World Dataset for
       Unsupervised Anomaly Detection", IJCV 129, 2021 (the per-region overlap
       curve and its area up to a false positive rate of 0.3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

__all__ = [
    "ImageMetrics",
    "auroc",
    "aupro",
    "auroc_per_type",
    "average_precision",
    "image_metrics",
    "pixel_auroc",
]


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))


def _as_binary(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.dtype != bool and not np.all(np.isin(labels, (0, 1))):
        raise ValueError("labels must be 0/1 or boolean")
    return labels.astype(bool).ravel()


def _distinct_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative true and false positives at each distinct score, highest first."""
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores = scores[order]
    sorted_labels = labels[order]
    # Index of the last element of each run of equal scores.
    ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1]
    true_positives = np.cumsum(sorted_labels)[ends]
    false_positives = (ends + 1) - true_positives
    return true_positives.astype(np.float64), false_positives.astype(np.float64)


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve [1]_ (ties count half). NaN when one class is absent."""
    labels = _as_binary(labels)
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.size != scores.size:
        raise ValueError("labels and scores differ in length")
    n_positive = int(labels.sum())
    n_negative = labels.size - n_positive
    if n_positive == 0 or n_negative == 0:
        return float("nan")
    true_positives, false_positives = _distinct_curve(labels, scores)
    tpr = np.r_[0.0, true_positives / n_positive]
    fpr = np.r_[0.0, false_positives / n_negative]
    return _trapezoid(tpr, fpr)


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision: sum over thresholds of precision x recall increase
    (the step-wise area, as ``sklearn.metrics.average_precision_score``)."""
    labels = _as_binary(labels)
    scores = np.asarray(scores, dtype=np.float64).ravel()
    n_positive = int(labels.sum())
    if n_positive == 0:
        return float("nan")
    true_positives, false_positives = _distinct_curve(labels, scores)
    precision = true_positives / (true_positives + false_positives)
    recall = true_positives / n_positive
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


@dataclass
class ImageMetrics:
    """Image-level figures of a labelled batch.

    Attributes
    ----------
    n_images, n_defective : int
    auroc, average_precision : float
        Threshold-free (NaN when a class is missing).
    threshold : float
        The decision threshold (score above it = anomalous).
    accuracy, precision, recall, f1 : float
        At ``threshold`` (precision and F1 are 0 when nothing is flagged).
    true_positives, false_positives, true_negatives, false_negatives : int
    """

    n_images: int
    n_defective: int
    auroc: float
    average_precision: float
    threshold: float
    accuracy: float
    precision: float
    recall: float
    f1: float
    true_positives: int
    false_positives: int
    true_negatives: int
    false_negatives: int

    def to_record(self) -> dict:
        return asdict(self)


def image_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> ImageMetrics:
    """AUROC, AP, and the confusion figures at ``threshold`` (``score > threshold`` is anomalous)."""
    labels = _as_binary(labels)
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.size != scores.size:
        raise ValueError("labels and scores differ in length")
    predicted = scores > threshold
    tp = int(np.sum(predicted & labels))
    fp = int(np.sum(predicted & ~labels))
    tn = int(np.sum(~predicted & ~labels))
    fn = int(np.sum(~predicted & labels))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return ImageMetrics(
        n_images=int(labels.size),
        n_defective=int(labels.sum()),
        auroc=auroc(labels, scores),
        average_precision=average_precision(labels, scores),
        threshold=float(threshold),
        accuracy=(tp + tn) / labels.size if labels.size else float("nan"),
        precision=precision,
        recall=recall,
        f1=f1,
        true_positives=tp,
        false_positives=fp,
        true_negatives=tn,
        false_negatives=fn,
    )


def auroc_per_type(labels: np.ndarray, scores: np.ndarray, defect_types: Sequence[str | None]) -> dict[str, float]:
    """AUROC of each defect type's images against the good images (label 0).

    ``defect_types`` names the type of each defective image (ignored for good ones).
    """
    labels = _as_binary(labels)
    scores = np.asarray(scores, dtype=np.float64).ravel()
    types = np.asarray([str(t) if t not in (None, "") else "" for t in defect_types], dtype=object)
    if types.size != labels.size:
        raise ValueError("defect types and labels differ in length")
    good = ~labels
    result = {}
    for name in sorted({t for t, defective in zip(types, labels, strict=True) if defective and t}):
        chosen = good | (labels & (types == name))
        result[name] = auroc(labels[chosen], scores[chosen])
    return result


def _flatten_maps(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    if len(maps) != len(masks):
        raise ValueError("as many masks as anomaly maps are needed")
    for anomaly_map, mask in zip(maps, masks, strict=True):
        if np.shape(anomaly_map) != np.shape(mask):
            raise ValueError(f"a mask of shape {np.shape(mask)} does not match its map {np.shape(anomaly_map)}")
    scores = np.concatenate([np.asarray(m, dtype=np.float64).ravel() for m in maps])
    labels = np.concatenate([np.asarray(m).astype(bool).ravel() for m in masks])
    return scores, labels


def pixel_auroc(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> float:
    """AUROC over all pixels of all images (defect pixels against the rest)."""
    scores, labels = _flatten_maps(maps, masks)
    return auroc(labels, scores)


def aupro(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], max_fpr: float = 0.3) -> float:
    """Normalised area under the per-region-overlap curve up to ``max_fpr`` [2]_.

    For a threshold, the per-region overlap (PRO) is the mean, over every
    connected defect region of every mask (8-connectivity), of the share of
    its pixels above the threshold; the false positive rate is the share of
    defect-free pixels above it. The curve PRO(FPR) is integrated from 0 to
    ``max_fpr`` (linearly interpolated at the end) and divided by ``max_fpr``,
    as in the MVTec AD evaluation code. Images without defects contribute
    their pixels to the false positive rate only.
    """
    if not 0 < max_fpr <= 1:
        raise ValueError(f"max_fpr must be in (0, 1], got {max_fpr}")
    scores, defect = _flatten_maps(maps, masks)
    weights = np.zeros(scores.size)
    n_regions = 0
    offset = 0
    region_weights = []
    for mask in masks:
        mask = np.asarray(mask).astype(bool)
        labelled, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
        if count:
            sizes = np.bincount(labelled.ravel(), minlength=count + 1).astype(np.float64)
            inverse = np.zeros(count + 1)
            inverse[1:] = 1.0 / sizes[1:]
            region_weights.append((offset, inverse[labelled.ravel()]))
        n_regions += count
        offset += mask.size
    n_normal = int((~defect).sum())
    if n_regions == 0 or n_normal == 0:
        return float("nan")
    for start, values in region_weights:
        weights[start : start + values.size] = values / n_regions
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores = scores[order]
    ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1]
    pro = np.cumsum(weights[order])[ends]
    fpr = np.cumsum(~defect[order])[ends] / n_normal
    pro, fpr = np.r_[0.0, pro], np.r_[0.0, fpr]
    # Area up to max_fpr: whole segments, plus the part of the crossing one.
    inside = fpr <= max_fpr
    last = int(np.flatnonzero(inside)[-1])
    area = _trapezoid(pro[: last + 1], fpr[: last + 1])
    if last + 1 < fpr.size and fpr[last] < max_fpr:
        step = fpr[last + 1] - fpr[last]
        share = (max_fpr - fpr[last]) / step
        end_pro = pro[last] + share * (pro[last + 1] - pro[last])
        area += (max_fpr - fpr[last]) * (pro[last] + end_pro) / 2
    return area / max_fpr
