"""Defect detection benchmark: spmcli's detector with its default settings
beside the previous release's detector, a PCA-reconstruction baseline and a
mean-intensity baseline, all in the same run, on one core.

Sets (see benchmarks/detect_data.py): ELPV mono and poly cells
(``../shared/data/elpv_split``: 60 good cells to learn from, 100 to calibrate,
labelled test cells), KolektorSDD (``../shared/data/ksdd``: 60 / 40 good images,
247 good + 52 defective test images with masks) and a synthetic texture set
(brick, gravel, grass crops with scratches, cracks, spots, stains and missing
texture, with masks); ``--sets outside`` builds the same defects on a texture
no parameter was chosen on (the moon's surface), ``--sets objects`` parts
photographed one at a time, turned and moved (benchmarks/detect_objects.py),
and ``--sets colour`` two colour textures. Each method learns from the training images only and
takes its threshold from the calibration images' scores alone (quantile 0.95).

Reported: image AUROC and average precision, accuracy and F1 at the calibrated
threshold, pixel AUROC and AUPRO (to 30% FPR) where masks exist, AUROC per
synthetic defect kind, seconds to learn (including calibration) and
milliseconds per image to score. Pixel figures are computed on maps and masks
halved in size for images over 200,000 pixels (KolektorSDD: a mask pixel is
defective when any of its 2 x 2 block is; the map is averaged); the detector
works at half resolution anyway.

The spmcli rows call :func:`spmcli.inspection.detector.fit_detector` and
:meth:`spmcli.inspection.detector.Detector.score`, the functions behind
``learn-dict --detector`` and ``detect``, with default settings (mode "auto").

Usage::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_detect.py \\
        [--sets elpv-mono elpv-poly ksdd synthetic outside objects colour] [--subset dev|holdout|all] \\
        [--methods spmcli release pca intensity] [--ablation] [--set name=value ...]

``--subset dev`` / ``holdout``: even / odd rows of the ELPV and KolektorSDD
test lists, seed 0 / seed 1 of the synthetic set. The defaults were tuned on
``dev``; ``holdout`` is the honest check. ``--ablation`` adds spmcli rows with
one part of the method removed or changed at a time. ``--set`` overrides a
``DetectorSettings`` field for the spmcli rows (experiments only).
``--synthetic-split top-bottom`` builds the synthetic set as the first release
of this benchmark did (see ``detect_data.split_regions``).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
from skimage.transform import downscale_local_mean, resize
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))

import baseline_detector_v2 as release
from detect_data import (
    COLOUR_DEFECT_KINDS,
    COLOUR_TEXTURES,
    OUTSIDE_TEXTURES,
    TEXTURES,
    DetectionSet,
    load_elpv,
    load_ksdd,
    synthetic_set,
)
from detect_objects import OBJECT_DEFECT_KINDS, OBJECTS, object_set

from spmcli.inspection.evaluation import aupro, auroc_per_type, image_metrics, pixel_auroc
from spmcli.inspection.fitting import fit_detector
from spmcli.inspection.settings import EXPERTS, DetectorSettings
from spmcli.io.images import to_grey

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
QUANTILE = 0.95
# Defect kinds in the order the tables list them.
KIND_ORDER = (*COLOUR_DEFECT_KINDS, *(kind for kind in OBJECT_DEFECT_KINDS if kind not in COLOUR_DEFECT_KINDS))
# Ablation: one change at a time from the default settings.
ABLATIONS = {
    "no structure (coding residual)": {"features": ("code", "contrast", "intensity", "orientation", "lines", "spots")},
    "no code (l1 norm)": {"features": ("structure", "contrast", "intensity", "orientation", "lines", "spots")},
    "no contrast": {"features": ("structure", "code", "intensity", "orientation", "lines", "spots")},
    "no intensity": {"features": ("structure", "code", "contrast", "orientation", "lines", "spots")},
    "no orientation": {"features": ("structure", "code", "contrast", "intensity", "lines", "spots")},
    "no lines (ridges)": {"features": ("structure", "code", "contrast", "intensity", "orientation", "spots")},
    "no spots (top-hats)": {"features": ("structure", "code", "contrast", "intensity", "orientation", "lines")},
    "sparse model only (structure, code)": {"features": ("structure", "code")},
    "one scale": {"n_scales": 1},
    "mode pooled": {"mode": "pooled"},
    "mode aligned": {"mode": "aligned"},
    "random bank (no rare share)": {"bank_rare_share": 0.0},
    "5 neighbours": {"n_neighbours": 5},
    "no sparse expert (joint and lines)": {"experts": ("joint", "lines")},
    "joint model only (no line or sparse expert)": {"experts": ("joint",)},
    "every feature group an expert (+ joint)": {"experts": tuple(EXPERTS)},
    "two-sided line expert": {"one_sided_experts": ()},
    "isotropic ridges instead of line filters": {"line_length": 0.0},
    "held-out quantile 0.999": {"held_out_quantile": 0.999},
    "image score = map maximum (format 4)": {"score_power": math.inf},
    "blur 1 working pixel (fixed, before stop 29)": {"blur_sigma": 1.0},
}


class Timer:
    def __init__(self) -> None:
        self.wall = time.perf_counter()

    def seconds(self) -> float:
        return time.perf_counter() - self.wall


def _pixel_sized(array: np.ndarray, is_mask: bool) -> np.ndarray:
    if array.size <= 200_000:
        return array
    height, width = (array.shape[0] // 2) * 2, (array.shape[1] // 2) * 2
    block = array[:height, :width].reshape(height // 2, 2, width // 2, 2)
    return block.any(axis=(1, 3)) if is_mask else block.mean(axis=(1, 3))


def run_spmcli(dataset: DetectionSet, with_maps: bool, settings: DetectorSettings):
    timer = Timer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        _, detector = fit_detector(dataset.train, dataset.calib, settings=settings, seed=0)
    learn_seconds = timer.seconds()
    timer = Timer()
    scores, maps = [], []
    for image in dataset.test:
        result = detector.score(image, with_map=with_maps)
        scores.append(result.score)
        if with_maps:
            maps.append(_pixel_sized(result.anomaly_map, False))
    ms = 1000 * timer.seconds() / len(dataset.test)
    info = f"mode {detector.mode}: {detector.mode_reason}"
    return np.array(scores), detector.threshold, maps, learn_seconds, ms, info


def run_release(dataset: DetectionSet, with_maps: bool):
    """The previous release's detector (format 2), default options (pooled)."""
    timer = Timer()
    _, detector = release.fit_detector(dataset.train, dataset.calib, settings=release.DetectorSettings(), seed=0)
    learn_seconds = timer.seconds()
    timer = Timer()
    scores, maps = [], []
    for image in dataset.test:
        result = detector.score(image, with_map=with_maps, with_quality=False)
        scores.append(result.score)
        if with_maps:
            maps.append(_pixel_sized(result.anomaly_map, False))
    ms = 1000 * timer.seconds() / len(dataset.test)
    return np.array(scores), detector.threshold, maps, learn_seconds, ms, ""


def _small(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    grey = to_grey(image)
    if grey.shape != shape:
        grey = resize(grey, shape, order=1, anti_aliasing=True)
    return downscale_local_mean(grey, (4, 4)).ravel()


def run_pca(dataset: DetectionSet, with_maps: bool):
    """PCA (95% variance) on whole images, 4x downscaled (resized to the first
    training image's size when sizes differ); score = RMS reconstruction error."""
    from sklearn.decomposition import PCA

    timer = Timer()
    shape = to_grey(dataset.train[0]).shape
    shape = ((shape[0] // 4) * 4, (shape[1] // 4) * 4)
    model = PCA(n_components=0.95, svd_solver="full", random_state=0).fit(
        np.stack([_small(x, shape) for x in dataset.train])
    )

    def score(images):
        flat = np.stack([_small(x, shape) for x in images])
        rebuilt = model.inverse_transform(model.transform(flat))
        return np.sqrt(((flat - rebuilt) ** 2).mean(axis=1))

    threshold = float(np.quantile(score(dataset.calib), QUANTILE))
    learn_seconds = timer.seconds()
    timer = Timer()
    scores = score(dataset.test)
    return scores, threshold, [], learn_seconds, 1000 * timer.seconds() / len(dataset.test), ""


def run_intensity(dataset: DetectionSet, with_maps: bool):
    """Distance of the mean grey level from the good images' mean (both directions)."""
    timer = Timer()
    levels = np.array([to_grey(x).mean() for x in dataset.train])
    centre, spread = levels.mean(), levels.std() + 1e-9
    threshold = float(np.quantile([abs(to_grey(x).mean() - centre) / spread for x in dataset.calib], QUANTILE))
    learn_seconds = timer.seconds()
    timer = Timer()
    scores = np.array([abs(to_grey(x).mean() - centre) / spread for x in dataset.test])
    return scores, threshold, [], learn_seconds, 1000 * timer.seconds() / len(dataset.test), ""


def load_sets(names: list[str], data: Path, subset: str, split: str = "quadrants") -> list[DetectionSet]:
    sets = []
    seed = {"dev": 0, "holdout": 1, "all": 0}[subset]
    for name in names:
        if name == "elpv-mono":
            sets.append(load_elpv(data, "mono", subset))
        elif name == "elpv-poly":
            sets.append(load_elpv(data, "poly", subset))
        elif name == "ksdd":
            sets.append(load_ksdd(data, subset))
        elif name == "synthetic":
            sets.extend(synthetic_set(texture, seed, split=split) for texture in TEXTURES)
        elif name == "outside":
            sets.extend(synthetic_set(texture, seed, split=split) for texture in OUTSIDE_TEXTURES)
        elif name == "objects":
            sets.extend(object_set(part, seed) for part in OBJECTS)
        elif name == "colour":
            sets.extend(
                synthetic_set(texture, seed, split=split, defect_kinds=COLOUR_DEFECT_KINDS)
                for texture in COLOUR_TEXTURES
            )
        else:
            raise SystemExit(f"unknown set {name}")
    return sets


def _parse_overrides(pairs: list[str]) -> dict:
    overrides = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        field_type = type(getattr(DetectorSettings(), key))
        if key == "downscale":  # None (automatic) by default
            field_type = int
        if key == "blur_sigma":  # None (automatic) by default
            field_type = float
        if field_type is bool:
            overrides[key] = value.lower() in ("1", "true", "yes")
        elif field_type is tuple:
            overrides[key] = tuple(v for v in value.split(",") if v)
        else:
            overrides[key] = field_type(value)
    return overrides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--sets", nargs="+", default=["elpv-mono", "elpv-poly", "ksdd", "synthetic"])
    parser.add_argument("--subset", choices=["all", "dev", "holdout"], default="all")
    parser.add_argument("--methods", nargs="+", default=["spmcli", "release", "pca", "intensity"])
    parser.add_argument("--ablation", action="store_true")
    parser.add_argument(
        "--synthetic-split",
        choices=["quadrants", "top-bottom"],
        default="quadrants",
        help="where the synthetic set's crops come from (see detect_data.split_regions)",
    )
    parser.add_argument("--set", dest="overrides", nargs="*", default=[])
    args = parser.parse_args()
    base = replace(DetectorSettings(), **_parse_overrides(args.overrides))
    runners = {}
    if "spmcli" in args.methods:
        label = "spmcli (default)" + (" " + " ".join(args.overrides) if args.overrides else "")
        runners[label] = partial(run_spmcli, settings=base)
    if args.ablation:
        for name, change in ABLATIONS.items():
            runners[f"spmcli, {name}"] = partial(run_spmcli, settings=replace(base, **change))
    if "release" in args.methods:
        runners["previous release (pooled default)"] = run_release
    if "pca" in args.methods:
        runners["PCA reconstruction (95% variance)"] = run_pca
    if "intensity" in args.methods:
        runners["mean intensity"] = run_intensity
    print(
        "| set | method | AUROC | AP | accuracy | F1 | pixel AUROC | AUPRO 0.3 | AUROC per kind "
        "| learn s | ms/image | notes |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    with threadpool_limits(limits=1):
        for dataset in load_sets(args.sets, args.data, args.subset, args.synthetic_split):
            masks = None
            if dataset.masks is not None:
                masks = [_pixel_sized(mask, True) for mask in dataset.masks]
            for name, runner in runners.items():
                scores, threshold, maps, learn_seconds, ms, info = runner(dataset, masks is not None)
                metrics = image_metrics(dataset.labels, scores, threshold)
                pixel = aupro_text = "-"
                if maps:
                    pixel = f"{pixel_auroc(maps, masks):.3f}"
                    aupro_text = f"{aupro(maps, masks):.3f}"
                kinds = "-"
                if dataset.defect_types and len(set(dataset.defect_types) - {""}) > 1:
                    per_kind = auroc_per_type(dataset.labels, scores, dataset.defect_types)
                    kinds = ", ".join(f"{kind} {per_kind[kind]:.3f}" for kind in KIND_ORDER if kind in per_kind)
                print(
                    f"| {dataset.name} ({len(dataset.test)}) | {name} | {metrics.auroc:.3f} | "
                    f"{metrics.average_precision:.3f} | {metrics.accuracy:.3f} | {metrics.f1:.3f} | {pixel} | "
                    f"{aupro_text} | {kinds} | {learn_seconds:.2f} | {ms:.1f} | {info} |",
                    flush=True,
                )
    print()
    print(f"{os.cpu_count()} cores, BLAS limited to one thread; thresholds: quantile {QUANTILE} of calibration scores")
    print("command: OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python " + " ".join([sys.argv[0], *sys.argv[1:]]))


if __name__ == "__main__":
    main()
