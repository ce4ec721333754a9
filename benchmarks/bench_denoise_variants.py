"""Denoising variants: one change at a time from the default, mean PSNR on Set12 and Set14 (grey).

Each variant changes one parameter of ``collaborative_denoise`` (the first,
hard-thresholding step or the second, Wiener step), on the same noise as
``bench_denoise.py``, in process on the float noisy image (no clipping), so
the differences are the parameter's alone. The hard-thresholding pilot is
shared by the variants that change only the Wiener step. ``bm3d pilot`` runs
spmcli's Wiener step on the ``bm3d`` package's own first-step estimate
(``stage_arg=BM3DStages.HARD_THRESHOLDING``; needs the ``bench`` extra), to
tell how much of a gap to bm3d lies in the pilot. ``wiener patches 8+6``
averages the Wiener estimates with 8x8 and 6x6 patches on one pilot;
``wiener 6x6 pass`` aggregates the patches of both in one average, as
``collaborative_denoise`` does up to sigma 20. ``default`` is the 8x8 Wiener
step alone (``collaborative_denoise`` above sigma 20).

``--sets`` also takes ``skimage``: six 192x192 (or 256x256) grey crops of
``skimage.data`` images (cameraman, astronaut, coffee, brick, text, moon),
images that none of spmcli's parameters were chosen on.

A variant's time relative to the default is reported too (one image of each
set, one BLAS thread, medians of 3), since a change that costs the speed
margin over bm3d is no gain for ``spmcli reconstruct``.

Usage::

    python benchmarks/bench_denoise_variants.py --sets Set12 --sigmas 15
    python benchmarks/bench_denoise_variants.py --sets Set12,Set14 --sigmas 15,25 --variants wiener-patch-7
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from bench_denoise import DEFAULT_DATA, add_noise, command_line, load_set, machine_line
from threadpoolctl import threadpool_limits

from spmcli.metrics import psnr
from spmcli.restoration import wiener
from spmcli.restoration.hard_thresholding import collaborative_hard_thresholding
from spmcli.restoration.wiener import collaborative_wiener


def _per_pixel(value255: float) -> float:
    return value255 / 255**2


# name -> (hard-thresholding keywords, Wiener keywords, wiener module constants)
VARIANTS: dict[str, tuple[dict, dict, dict]] = {
    "default": ({}, {}, {}),
    "hard threshold 2.7": ({"threshold": 2.7}, {}, {}),
    "hard groups of 16": ({"max_group": 16}, {}, {}),
    "hard distance 3000": ({"distance_threshold": _per_pixel(3000)}, {}, {}),
    "hard stride 2": ({"reference_stride": 2}, {}, {}),
    "wiener gain 0.4": ({}, {"noise_factor": 0.4}, {}),
    "wiener gain 0.6": ({}, {"noise_factor": 0.6}, {}),
    "wiener dct": ({}, {"transform": "dct"}, {}),
    "wiener learn threshold 2.5": ({}, {}, {"LEARN_THRESHOLD": 2.5}),
    "wiener distance 250": ({}, {"distance_threshold": _per_pixel(250)}, {}),
    "wiener distance 700": ({}, {"distance_threshold": _per_pixel(700)}, {}),
    "wiener groups of 64": ({}, {"max_group": 64}, {}),
    "wiener radius 12": ({}, {"search_radius": 12}, {}),
    "wiener stride 2": ({}, {"reference_stride": 2}, {}),
    "wiener patch 6": ({}, {"patch_size": 6}, {}),
    "wiener patch 7": ({}, {"patch_size": 7}, {}),
    "wiener patches 8+6": ({}, {}, {}),
    # The second pass of collaborative_denoise up to sigma 20 (stop 26), and
    # the same with the first pass's groups and window (stop 25).
    "wiener 6x6 pass": ({}, {"patch_size": (8, 6), "max_group": (32, 16), "search_radius": (19, 8)}, {}),
    "wiener 6x6 pass 32 within 19": ({}, {"patch_size": (8, 6)}, {}),
    "bm3d pilot": ({}, {}, {}),
}


def skimage_crops() -> dict[str, np.ndarray]:
    """Grey crops of ``skimage.data`` images, 0..1 (the ``skimage`` set)."""
    from skimage import color, data

    return {
        "camera (half size)": data.camera()[::2, ::2] / 255.0,
        "astronaut": color.rgb2gray(data.astronaut())[0:192, 128:320],
        "coffee": color.rgb2gray(data.coffee())[100:292, 200:392],
        "brick": data.brick()[:192, :192] / 255.0,
        "text": data.text()[:, :192] / 255.0,
        "moon": data.moon()[100:292, 100:292] / 255.0,
    }


def _slug(name: str) -> str:
    return name.replace(" ", "-")


def run_variant(name: str, noisy: np.ndarray, sigma: float, pilots: dict) -> np.ndarray:
    """The variant's estimate; ``pilots`` caches first steps by their keywords."""
    hard, second, constants = VARIANTS[name]
    key = "bm3d" if name == "bm3d pilot" else repr(sorted(hard.items()))
    if key not in pilots:
        if name == "bm3d pilot":
            import bm3d

            pilots[key] = bm3d.bm3d(noisy, sigma, stage_arg=bm3d.BM3DStages.HARD_THRESHOLDING)
        else:
            pilots[key] = collaborative_hard_thresholding(noisy, sigma, **hard)
    saved = {constant: getattr(wiener, constant) for constant in constants}
    try:
        for constant, value in constants.items():
            setattr(wiener, constant, value)
        if name == "wiener patches 8+6":
            passes = [collaborative_wiener(noisy, pilots[key], sigma, patch_size=size) for size in (8, 6)]
            return (passes[0] + passes[1]) / 2
        return collaborative_wiener(noisy, pilots[key], sigma, **second)
    finally:
        for constant, value in saved.items():
            setattr(wiener, constant, value)


def relative_time(name: str, noisy: np.ndarray, sigma: float, rounds: int = 3) -> float:
    """Seconds of the variant's two steps over the default's (medians of ``rounds``)."""
    if name == "bm3d pilot":
        return float("nan")
    seconds: dict[str, list[float]] = {"default": [], name: []}
    for _ in range(rounds):
        for which in seconds:
            started = time.perf_counter()
            run_variant(which, noisy, sigma, {})
            seconds[which].append(time.perf_counter() - started)
    return float(np.median(seconds[name]) / np.median(seconds["default"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--sets", default="Set12")
    parser.add_argument("--sigmas", default="15")
    parser.add_argument(
        "--variants",
        default=",".join(_slug(name) for name in VARIANTS),
        help="comma-separated, spaces as dashes (the default is always run); all by default",
    )
    parser.add_argument("--no-timing", action="store_true", help="skip the relative times")
    args = parser.parse_args()
    by_slug = {_slug(name): name for name in VARIANTS}
    unknown = [slug for slug in args.variants.split(",") if slug not in by_slug]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {sorted(by_slug)}")
    names = ["default"] + [by_slug[slug] for slug in args.variants.split(",") if slug != "default"]
    print(command_line())
    print(machine_line())
    sets = args.sets.split(",")
    sigmas = [float(value) for value in args.sigmas.split(",")]
    keys = [(set_name, sigma255) for set_name in sets for sigma255 in sigmas]
    table: dict[str, dict[tuple[str, float], float]] = {name: {} for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    with threadpool_limits(limits=1):
        for set_name, sigma255 in keys:
            sigma = sigma255 / 255
            scores: dict[str, list[float]] = {name: [] for name in names}
            images = skimage_crops() if set_name == "skimage" else load_set(args.data, set_name)
            for index, (image_name, clean) in enumerate(images.items()):
                noisy = add_noise(clean, sigma255)
                pilots: dict = {}
                for name in names:
                    scores[name].append(psnr(clean, run_variant(name, noisy, sigma, pilots)))
                if index == 0 and not args.no_timing:
                    for name in names[1:]:
                        times[name].append(relative_time(name, noisy, sigma))
                print(f"  {set_name} {sigma255:g} {image_name}", file=sys.stderr, flush=True)
            for name in names:
                table[name][(set_name, sigma255)] = float(np.mean(scores[name]))
    print("\n#### Variants: mean PSNR (dB), and the difference from the default\n")
    print("| variant | " + " | ".join(f"{s} sigma {g:g}" for s, g in keys) + " | time / default |")
    print("|---|" + "---|" * len(keys) + "---|")
    for name in names:
        cells = []
        for key in keys:
            value, base = table[name][key], table["default"][key]
            cells.append(f"{value:.3f}" if name == "default" else f"{value:.3f} ({value - base:+.3f})")
        ratio = np.nanmedian(times[name]) if times[name] and not np.all(np.isnan(times[name])) else float("nan")
        timing = "1" if name == "default" else ("-" if np.isnan(ratio) else f"{ratio:.2f}x")
        print(f"| {name} | " + " | ".join(cells) + f" | {timing} |")


if __name__ == "__main__":
    main()
