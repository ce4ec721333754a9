"""Evaluation metrics of spmcli.inspection.evaluation against sklearn.metrics
and against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from sklearn import metrics

from spmcli.inspection.evaluation import (
    aupro,
    auroc,
    auroc_per_type,
    average_precision,
    image_metrics,
    pixel_auroc,
)


@pytest.fixture(scope="module")
def labelled():
    rng = np.random.default_rng(5)
    labels = np.r_[np.zeros(40, int), np.ones(25, int)]
    # Overlapping classes, with ties (rounded scores).
    scores = np.round(np.r_[rng.normal(0, 1, 40), rng.normal(1.2, 1, 25)], 1)
    return labels, scores


def test_auroc_and_average_precision_match_sklearn(labelled):
    labels, scores = labelled
    assert auroc(labels, scores) == pytest.approx(metrics.roc_auc_score(labels, scores), abs=1e-12)
    assert average_precision(labels, scores) == pytest.approx(
        metrics.average_precision_score(labels, scores), abs=1e-12
    )
    assert auroc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert auroc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 0.0
    assert auroc([0, 1], [0.5, 0.5]) == 0.5
    assert np.isnan(auroc([1, 1], [0.1, 0.2]))


def test_image_metrics_at_a_threshold_match_sklearn(labelled):
    labels, scores = labelled
    threshold = 0.55
    result = image_metrics(labels, scores, threshold)
    predicted = scores > threshold
    assert result.accuracy == pytest.approx(metrics.accuracy_score(labels, predicted))
    assert result.precision == pytest.approx(metrics.precision_score(labels, predicted))
    assert result.recall == pytest.approx(metrics.recall_score(labels, predicted))
    assert result.f1 == pytest.approx(metrics.f1_score(labels, predicted))
    tn, fp, fn, tp = metrics.confusion_matrix(labels, predicted).ravel()
    assert (result.true_negatives, result.false_positives, result.false_negatives, result.true_positives) == (
        tn,
        fp,
        fn,
        tp,
    )
    assert result.n_images == 65 and result.n_defective == 25
    # Nothing flagged: precision and F1 are 0, not NaN.
    none = image_metrics(labels, scores, 1e9)
    assert none.precision == 0 and none.f1 == 0 and none.recall == 0


def test_auroc_per_defect_type(labelled):
    labels, scores = labelled
    types = [""] * 40 + ["crack"] * 10 + ["stain"] * 15
    result = auroc_per_type(labels, scores, types)
    assert set(result) == {"crack", "stain"}
    good = labels == 0
    for name, chosen in (("crack", slice(40, 50)), ("stain", slice(50, 65))):
        subset_labels = np.r_[labels[good], labels[chosen]]
        subset_scores = np.r_[scores[good], scores[chosen]]
        assert result[name] == pytest.approx(metrics.roc_auc_score(subset_labels, subset_scores))


def _maps_and_masks():
    rng = np.random.default_rng(2)
    masks, maps = [], []
    for index in range(4):
        mask = np.zeros((24, 30), dtype=bool)
        if index:  # the first image is defect-free
            mask[3 + index : 8 + index, 4:12] = True
            mask[15:17, 20 : 22 + index] = True  # a second, smaller region
        anomaly = rng.normal(0, 1, mask.shape) + 1.5 * mask
        masks.append(mask)
        maps.append(np.round(anomaly, 2))
    return maps, masks


def test_pixel_auroc_matches_sklearn():
    maps, masks = _maps_and_masks()
    expected = metrics.roc_auc_score(
        np.concatenate([m.ravel() for m in masks]), np.concatenate([a.ravel() for a in maps])
    )
    assert pixel_auroc(maps, masks) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="does not match"):
        pixel_auroc([maps[0]], [masks[0][:-1]])


def _aupro_by_thresholds(maps, masks, max_fpr=0.3):
    """Brute force: PRO and FPR at every distinct score, then the same integral."""
    regions = []
    for index, mask in enumerate(masks):
        labelled, count = ndimage.label(mask, structure=np.ones((3, 3)))
        regions += [(index, labelled == k) for k in range(1, count + 1)]
    normal = np.concatenate([a[~m] for a, m in zip(maps, masks, strict=True)])
    thresholds = np.unique(np.concatenate([a.ravel() for a in maps]))[::-1]
    fprs, pros = [0.0], [0.0]
    for threshold in thresholds:
        fprs.append(float((normal >= threshold).mean()))
        pros.append(float(np.mean([(maps[i][region] >= threshold).mean() for i, region in regions])))
    fprs, pros = np.array(fprs), np.array(pros)
    keep = fprs <= max_fpr
    area = np.trapezoid(pros[keep], fprs[keep]) if hasattr(np, "trapezoid") else np.trapz(pros[keep], fprs[keep])
    last = np.flatnonzero(keep)[-1]
    if last + 1 < fprs.size:
        end = pros[last] + (max_fpr - fprs[last]) / (fprs[last + 1] - fprs[last]) * (pros[last + 1] - pros[last])
        area += (max_fpr - fprs[last]) * (pros[last] + end) / 2
    return area / max_fpr


def test_aupro_matches_a_brute_force_curve():
    maps, masks = _maps_and_masks()
    assert aupro(maps, masks) == pytest.approx(_aupro_by_thresholds(maps, masks), abs=1e-9)
    assert aupro(maps, masks, max_fpr=0.1) == pytest.approx(_aupro_by_thresholds(maps, masks, 0.1), abs=1e-9)


def test_aupro_of_perfect_and_useless_maps():
    _, masks = _maps_and_masks()
    perfect = [m.astype(float) for m in masks]
    # Every defect pixel above every normal pixel: PRO is 1 from FPR 0 on.
    assert aupro(perfect, masks) == pytest.approx(1.0)
    # A constant map jumps from nothing to everything: the chance diagonal
    # PRO = FPR, whose normalised area up to 0.3 is 0.15.
    assert aupro([np.zeros(m.shape) for m in masks], masks) == pytest.approx(0.15)
    # Small regions count as much as large ones: a map that finds only the
    # large regions has PRO 0.5 from FPR 0 (then the straight line to (1, 1)
    # of the all-zero rest), whatever the regions' pixel shares:
    # (0.5 + 0.65) / 2 * 0.3 / 0.3 = 0.575.
    large_only = []
    for mask in masks:
        big = mask.copy()
        big[15:17, :] = False
        large_only.append(big.astype(float))
    assert aupro(large_only, masks) == pytest.approx(0.575)
