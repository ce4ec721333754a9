"""Defect detection on the ELPV solar-cell split: spmcli's detector (pooled and
aligned modes) beside a PCA-reconstruction baseline and a plain intensity
baseline, all computed in the same run on one core.

Learns from ``train.csv`` (60 good cells), chooses each threshold from the
scores of ``calib.csv`` (100 other good cells) alone, and measures on
``test.csv``: ROC AUC (defective vs the rest; clear defects vs probability 0),
accuracy, precision, recall and F1 at the calibrated threshold, seconds to
learn (including calibration) and milliseconds per image to detect (wall
clock, and the process's CPU time, which a busy shared machine inflates less).

The spmcli rows go through the same functions the CLI calls
(:func:`spmcli.inspection.detector.fit_detector`, :meth:`spmcli.inspection.detector.Detector.score`).
Images are read from the ``elpv-dataset`` package's data folder.

Usage::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_detect.py [--types mono poly]
        [--data ../shared/data] [--subset all|dev|holdout] [--quantiles 0.95 0.99]

``--subset dev`` / ``holdout`` keep the even / odd rows of test.csv (with ``all``,
the "AUROC even half" / "AUROC odd half" columns are those rows): the
detector's hyper-parameters were tuned on ``dev``; ``holdout`` was not looked at
while tuning.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score
from threadpoolctl import threadpool_limits

from spmcli.inspection.detector import DetectorSettings, fit_detector
from spmcli.io.images import read_image

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def load_split(data: Path, cell_type: str, part: str, subset: str) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    import elpv_dataset

    root = Path(elpv_dataset.__file__).parent / "data"
    with open(data / "elpv_split" / cell_type / f"{part}.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    if part == "test" and subset != "all":
        rows = rows[0::2] if subset == "dev" else rows[1::2]
    images = [read_image(root / row["path"]).pixels for row in rows]
    labels = {
        "defective": np.array([int(row["defective"]) for row in rows]),
        "proba": np.array([float(row["proba"]) for row in rows]),
    }
    return images, labels


def evaluate(scores: np.ndarray, threshold: float, labels: dict[str, np.ndarray]) -> dict[str, float]:
    truth = labels["defective"]
    predicted = (scores > threshold).astype(int)
    proba = labels["proba"]
    clear_or_good = (proba == 0) | (proba == 1)
    return {
        "auroc": roc_auc_score(truth, scores),
        "auroc_clear": roc_auc_score(proba[clear_or_good] == 1, scores[clear_or_good]),
        "accuracy": accuracy_score(truth, predicted),
        "precision": precision_score(truth, predicted, zero_division=0),
        "recall": recall_score(truth, predicted),
        "f1": f1_score(truth, predicted),
    }


def run_spmcli(train, calib, test, settings: DetectorSettings):
    started = time.perf_counter()
    _, detector = fit_detector(train, calib, settings=settings, seed=0)
    learn_seconds = time.perf_counter() - started
    started, cpu_started = time.perf_counter(), time.process_time()
    # Quality figures (PSNR/SSIM) are part of every CLI report, so they are timed too.
    scores = np.array([detector.score(image).score for image in test])
    ms_per_image = 1000 * (time.perf_counter() - started) / len(test)
    cpu_ms_per_image = 1000 * (time.process_time() - cpu_started) / len(test)
    return scores, detector.calibration_scores, learn_seconds, ms_per_image, cpu_ms_per_image


def _small(image: np.ndarray) -> np.ndarray:
    from skimage.transform import downscale_local_mean

    side = (min(image.shape) // 4) * 4
    return downscale_local_mean(image[:side, :side], (4, 4)).ravel()


def run_pca(train, calib, test, quantile: float = 0.0):
    """PCA on whole (4x downscaled) images; score = reconstruction error."""
    started = time.perf_counter()
    model = PCA(n_components=0.95, svd_solver="full", random_state=0).fit(np.stack([_small(x) for x in train]))

    def score(images):
        flat = np.stack([_small(x) for x in images])
        rebuilt = model.inverse_transform(model.transform(flat))
        return np.sqrt(((flat - rebuilt) ** 2).mean(axis=1))

    calib_scores = score(calib)
    learn_seconds = time.perf_counter() - started
    started = time.perf_counter()
    cpu_started = time.process_time()
    scores = score(test)
    cpu_ms = 1000 * (time.process_time() - cpu_started) / len(test)
    return scores, calib_scores, learn_seconds, 1000 * (time.perf_counter() - started) / len(test), cpu_ms


def run_intensity(train, calib, test, quantile: float = 0.0):
    """Darkness: how far the mean grey level is below the good cells' mean."""
    started = time.perf_counter()
    reference = np.mean([x.mean() for x in train])
    calib_scores = np.array([reference - x.mean() for x in calib])
    learn_seconds = time.perf_counter() - started
    started, cpu_started = time.perf_counter(), time.process_time()
    scores = np.array([reference - x.mean() for x in test])
    cpu_ms = 1000 * (time.process_time() - cpu_started) / len(test)
    return scores, calib_scores, learn_seconds, 1000 * (time.perf_counter() - started) / len(test), cpu_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--types", nargs="+", default=["mono", "poly"])
    parser.add_argument("--subset", choices=["all", "dev", "holdout"], default="all")
    parser.add_argument(
        "--quantiles", type=float, nargs="+", default=[0.95], help="threshold quantiles of the calib scores to report"
    )
    args = parser.parse_args()
    quantile = args.quantiles[0]
    methods = {
        "spmcli detect (default: pooled, both)": DetectorSettings(threshold_quantile=quantile),
        "spmcli detect --aligned --polarity dark": DetectorSettings(
            mode="aligned", polarity="dark", threshold_quantile=quantile
        ),
    }
    print(
        "| cells | method | AUROC | AUROC clear | AUROC even half | AUROC odd half | calib quantile | accuracy "
        "| precision | recall | F1 | learn s | ms/image | CPU ms/image |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    with threadpool_limits(limits=1):
        for cell_type in args.types:
            train, _ = load_split(args.data, cell_type, "train", "all")
            calib, _ = load_split(args.data, cell_type, "calib", "all")
            test, labels = load_split(args.data, cell_type, "test", args.subset)
            runs = {name: run_spmcli(train, calib, test, settings) for name, settings in methods.items()}
            runs["PCA reconstruction (95% variance)"] = run_pca(train, calib, test, quantile)
            runs["mean intensity (darkness)"] = run_intensity(train, calib, test, quantile)
            for name, (scores, calib_scores, learn_seconds, ms, cpu_ms) in runs.items():
                dev_auroc = roc_auc_score(labels["defective"][0::2], scores[0::2])
                holdout_auroc = roc_auc_score(labels["defective"][1::2], scores[1::2])
                for q in args.quantiles:
                    m = evaluate(scores, float(np.quantile(calib_scores, q)), labels)
                    print(
                        f"| {cell_type} ({len(test)}) | {name} | {m['auroc']:.3f} | {m['auroc_clear']:.3f} | "
                        f"{dev_auroc:.3f} | {holdout_auroc:.3f} | {q:g} | {m['accuracy']:.3f} | {m['precision']:.3f} | "
                        f"{m['recall']:.3f} | {m['f1']:.3f} | {learn_seconds:.2f} | {ms:.1f} | {cpu_ms:.1f} |",
                        flush=True,
                    )
    print()
    print(f"{os.cpu_count()} cores, BLAS limited to 1 thread; thresholds from the 100 calib cells' scores alone")
    print("command: OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python " + " ".join([sys.argv[0], *sys.argv[1:]]))


if __name__ == "__main__":
    main()
