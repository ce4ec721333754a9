"""Detector variants: one change at a time from the default, image AUROC per set and half.

Each row changes one thing and keeps the rest of ``DetectorSettings()``:

- ``mode pooled`` / ``mode aligned``: the mode forced (``auto`` picks aligned
  on ELPV, pooled on KolektorSDD and the synthetic crops). The calibrated
  threshold is printed beside each: whether a mode whose good images score
  lower is the better one (a rule for ``auto`` that would need no defects).
- ``mean and std``: descriptors standardised by the good patches' mean and
  standard deviation instead of their median and MAD-based spread (the
  pooled mode's standardisation; aligned mode re-standardises each position
  by its own mean and deviation anyway). Done here by replacing
  ``robust_location_spread`` in :mod:`spmcli.inspection.detector` for the run.
- ``maximum`` / ``top 1%`` / ``L4 norm`` / ``L8 norm`` / ``L16 norm``: the
  image score from the default's anomaly map, as its maximum (the score of
  detector format 4, before stop 23), the mean of its highest 1% or the power
  mean ``mean(map**p)**(1/p)`` (a soft maximum that also counts how much of
  the image is anomalous; p = 8 is the default since stop 23, so that row
  repeats the default's).
- ``+ PCA``: the default's score divided by its threshold plus the PCA
  baseline's (``bench_detect.run_pca``) divided by its own: an ensemble with
  the whole-image model.

Sets as in ``bench_detect.py``, including ``outside`` (synthetic defects on the
moon's surface, a texture no parameter was chosen on). One core. Below the
table, for the ELPV sets, the default's AUROC by label: defective against the
rest (the benchmark's figure), without the probability-1/3 cells, clear
defects (probability 1) against probability 0, and the 1/3 cells against
probability 0 (how much the cells counted as good look like defects).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_detect_variants.py --subset dev \\
        [--sets elpv-mono elpv-poly ksdd synthetic outside] [--variants "mean and std" ...]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import warnings
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from bench_detect import DEFAULT_DATA, load_sets, run_pca
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from spmcli.inspection import fitting as fitting_module
from spmcli.inspection.calibration import image_score
from spmcli.inspection.density import SPREAD_FLOOR
from spmcli.inspection.fitting import fit_detector
from spmcli.inspection.settings import DetectorSettings

POWERS = {"L4 norm": 4, "L8 norm": 8, "L16 norm": 16}
VARIANTS = ("default", "mode pooled", "mode aligned", "mean and std", "maximum", "top 1%", *POWERS, "+ PCA")
# Variants computed from the default model's maps or scores (no fit of their own).
FROM_DEFAULT = ("maximum", "top 1%", *POWERS, "+ PCA")


def _mean_and_std(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return values.mean(axis=0), np.maximum(values.std(axis=0), SPREAD_FLOOR)


def _top_share(anomaly_map: np.ndarray, share: float = 0.01) -> float:
    values = np.sort(anomaly_map.ravel())[::-1]
    return float(values[: max(1, int(share * values.size))].mean())


def _fit(dataset, settings: DetectorSettings, mean_and_std: bool = False):
    original = fitting_module.robust_location_spread
    if mean_and_std:
        fitting_module.robust_location_spread = _mean_and_std
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return fit_detector(dataset.train, dataset.calib, settings=settings, seed=0)[1]
    finally:
        fitting_module.robust_location_spread = original


def run_variants(dataset, variants: tuple[str, ...]) -> tuple[dict[str, tuple[float, float, str]], np.ndarray | None]:
    """AUROC, threshold and mode of each variant on ``dataset``, and the default's scores."""
    labels = np.asarray(dataset.labels)
    results = {}
    base = DetectorSettings()
    fitted = {
        "default": lambda: _fit(dataset, base),
        "mode pooled": lambda: _fit(dataset, replace(base, mode="pooled")),
        "mode aligned": lambda: _fit(dataset, replace(base, mode="aligned")),
        "mean and std": lambda: _fit(dataset, base, mean_and_std=True),
    }
    derived = [name for name in variants if name in FROM_DEFAULT]
    if derived and "default" not in variants:
        raise SystemExit("the map and ensemble variants need the default variant")
    default_detector, default_scores, maps = None, None, []
    for name in variants:
        if name in fitted:
            detector = fitted[name]()
            # The default's maps feed the derived variants: one scoring pass gives both.
            with_map = name == "default" and bool(derived)
            image_scores = [detector.score(image, with_map=with_map) for image in dataset.test]
            scores = np.array([result.score for result in image_scores])
            results[name] = (roc_auc_score(labels, scores), detector.threshold, detector.mode)
            if name == "default":
                default_detector, default_scores = detector, scores
                maps = [result.anomaly_map for result in image_scores] if with_map else []
    if derived:
        if "maximum" in derived:
            results["maximum"] = (roc_auc_score(labels, [float(m.max()) for m in maps]), float("nan"), "")
        if "top 1%" in derived:
            results["top 1%"] = (roc_auc_score(labels, [_top_share(m) for m in maps]), float("nan"), "")
        for name, power in POWERS.items():
            if name in derived:
                scores = [image_score(m, power) for m in maps]
                results[name] = (roc_auc_score(labels, scores), float("nan"), "")
        if "+ PCA" in derived:
            pca_scores, pca_threshold, *_ = run_pca(dataset, False)
            combined = default_scores / default_detector.threshold + pca_scores / pca_threshold
            results["+ PCA"] = (roc_auc_score(labels, combined), float("nan"), "")
    return results, default_scores


def by_label(scores: np.ndarray, probability: np.ndarray) -> str:
    """AUROC of ``scores`` on subsets of an ELPV test list by defect probability."""

    def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
        keep = positive | negative
        return roc_auc_score(positive[keep], scores[keep])

    zero, third, clear = (np.isclose(probability, value, atol=0.01) for value in (0.0, 1 / 3, 1.0))
    defective = probability >= 0.5
    return (
        f"defective vs rest {auroc(defective, ~defective):.3f}, without the 1/3 cells "
        f"{auroc(defective, zero):.3f}, clear (p = 1) vs p = 0 {auroc(clear, zero):.3f}, "
        f"1/3 vs p = 0 {auroc(third, zero):.3f} ({int(third.sum())} cells)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--sets", nargs="+", default=["elpv-mono", "elpv-poly", "ksdd", "synthetic", "outside"])
    # "all": both halves of the ELPV and KolektorSDD test lists (the synthetic sets: seed 0, as dev).
    parser.add_argument("--subset", choices=["dev", "holdout", "all"], default="dev")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    args = parser.parse_args()
    variants = tuple(name for name in VARIANTS if name in args.variants)
    print("| set | " + " | ".join(variants) + " |")
    print("| --- |" + " --- |" * len(variants))
    notes = []
    with threadpool_limits(limits=1):
        for dataset in load_sets(args.sets, args.data, args.subset):
            results, default_scores = run_variants(dataset, variants)
            if "proba" in dataset.extra and default_scores is not None:
                labels = by_label(default_scores, dataset.extra["proba"])
                notes.append(f"{dataset.name} ({args.subset}), default: {labels}")
            cells = []
            for name in variants:
                auroc, threshold, mode = results[name]
                cell = f"{auroc:.3f}"
                if name == "default":
                    cell += f" ({mode})"
                if name.startswith("mode"):
                    cell += f" (threshold {threshold:.2f})"
                cells.append(cell)
            print(f"| {dataset.name} ({args.subset}) | " + " | ".join(cells) + " |", flush=True)
    print()
    for note in notes:
        print(f"- {note}")
    print()
    print(f"{os.cpu_count()} cores, BLAS limited to one thread")
    print("command: OMP_NUM_THREADS=1 python " + shlex.join(sys.argv))


if __name__ == "__main__":
    main()
