"""Where good images' anomaly scores come from on unaligned textures: the image border.

On the synthetic texture sets (``detect_data.synthetic_set``, dev half, seed
0) the detector's image score is the maximum of the anomaly map, and on
gravel most good crops reach their maximum within a few pixels of the crop's
border. This script measures what two ways of discounting the border would
be worth, per texture and per defect kind (image AUROC), beside the default:

- ``maximum beyond B px of the border``: the image score is the map's
  maximum more than B pixels from the border (a defect touching the border would be missed: a diagnostic,
  not a method);
- ``border normaliser q``: the map is divided, in bands of distance to the
  border (0-1, 2-3, 4-7, 8-11, 12-15, 16-23, 24-31 pixels), by the ratio of
  the calibration images' ``q`` quantile of map values in that band to the
  one in the interior (at least 1): good images only, no defect label.

With ``--ksdd`` the same on both halves of KolektorSDD (``../shared/data``),
whose good images have bright reflections along their left edge.

Usage::

    python benchmarks/bench_detect_border.py [--ksdd]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_denoise import DEFAULT_DATA
from detect_data import DEFECT_KINDS, TEXTURES, load_ksdd, synthetic_set

from spmcli.inspection.fitting import fit_detector
from spmcli.inspection.settings import DetectorSettings

BANDS = (4, 8, 12)
QUANTILES = (0.99, 0.999)
BAND_EDGES = np.array([0, 2, 4, 8, 12, 16, 24, 32])


def border_distance(shape: tuple[int, int]) -> np.ndarray:
    """Each pixel's distance in pixels to the nearest image border."""
    height, width = shape
    rows = np.minimum(np.arange(height), np.arange(height)[::-1])[:, None]
    cols = np.minimum(np.arange(width), np.arange(width)[::-1])[None, :]
    return np.minimum(rows, cols)


def distance_band(shape: tuple[int, int]) -> np.ndarray:
    """Index of each pixel's band of :data:`BAND_EDGES` (the last: the interior)."""
    return np.searchsorted(BAND_EDGES, border_distance(shape), side="right") - 1


def border_ratios(calibration_maps: list[np.ndarray], quantile: float) -> np.ndarray:
    """Per band, the calibration maps' ``quantile`` over the interior's (at least 1)."""
    values: list[list[np.ndarray]] = [[] for _ in BAND_EDGES]
    for anomaly_map in calibration_maps:
        bands = distance_band(anomaly_map.shape)
        for band in range(len(BAND_EDGES)):
            values[band].append(anomaly_map[bands == band])
    levels = np.array([np.quantile(np.concatenate(parts), quantile) for parts in values])
    return np.maximum(levels / levels[-1], 1.0)


def auroc_row(labels: np.ndarray, kinds: np.ndarray, scores: np.ndarray) -> str:
    cells = [f"{roc_auc_score(labels, scores):.3f}"]
    for kind in DEFECT_KINDS:
        chosen = (kinds == "") | (kinds == kind)
        cells.append(f"{roc_auc_score(labels[chosen], scores[chosen]):.2f}")
    return " | ".join(cells)


def score_rows(detector, data) -> tuple[dict[str, np.ndarray], str]:
    """Image scores of ``data.test`` by each way of scoring, and the share of
    good images whose map peaks within 8 pixels of the border."""
    calibration = [detector.score(image, with_map=True).anomaly_map for image in data.calib]
    maps = [detector.score(image, with_map=True).anomaly_map for image in data.test]
    good_maps = [m for m, label in zip(maps, data.labels, strict=True) if label == 0]
    peaks_near_border = [border_distance(m.shape).flat[int(np.argmax(m))] < 8 for m in good_maps]
    rows = {"maximum of the map (default)": np.array([m.max() for m in maps])}
    for band in BANDS:
        rows[f"maximum beyond {band} px of the border"] = np.array([m[band:-band, band:-band].max() for m in maps])
    for quantile in QUANTILES:
        ratios = border_ratios(calibration, quantile)
        rows[f"border normaliser {quantile:g} (ratios {', '.join(f'{r:.2f}' for r in ratios[:-1])})"] = np.array(
            [(m / ratios[distance_band(m.shape)]).max() for m in maps]
        )
    return rows, f"{np.mean(peaks_near_border):.2f} within 8 px"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--ksdd", action="store_true", help="KolektorSDD's two halves instead of the synthetic set")
    args = parser.parse_args()
    if args.ksdd:
        print("| half | image score | AUROC | border share of good maxima |")
        print("| --- | --- | --- | --- |")
        for subset in ("dev", "holdout"):
            data = load_ksdd(args.data, subset)
            _, detector = fit_detector(data.train, data.calib, settings=DetectorSettings(), seed=0)
            rows, share = score_rows(detector, data)
            for name, scores in rows.items():
                print(f"| {subset} | {name} | {roc_auc_score(data.labels, scores):.3f} | {share} |")
                share = ""
        return
    print("| texture | image score | AUROC | " + " | ".join(DEFECT_KINDS) + " | border share of good maxima |")
    print("| --- | --- | --- |" + " --- |" * len(DEFECT_KINDS) + " --- |")
    for texture in TEXTURES:
        data = synthetic_set(texture, 0)
        _, detector = fit_detector(data.train, data.calib, settings=DetectorSettings(), seed=0)
        rows, share = score_rows(detector, data)
        labels, kinds = np.asarray(data.labels), np.asarray(data.defect_types)
        for name, scores in rows.items():
            print(f"| {texture} | {name} | {auroc_row(labels, kinds, scores)} | {share} |")
            share = ""


if __name__ == "__main__":
    main()
