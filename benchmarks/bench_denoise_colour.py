"""Colour denoising benchmark: spmcli against CBM3D (``bm3d.bm3d_rgb``) on Set14's colour images.

``spmcli`` is ``collaborative_denoise(noisy, sigma)`` on the RGB image (filtered
in an orthonormal opponent colour space, grouped on the luminance);
``spmcli-ksvd`` is ``ksvd_denoise(noisy, sigma)`` (joint RGB K-SVD, then the
Wiener step); ``bm3d-rgb`` is ``bm3d.bm3d_rgb`` (CBM3D, YCbCr; it runs on every
core). Protocol: white Gaussian noise of standard deviation sigma on every
channel (0..255 scale, ``np.random.default_rng(0)``), noisy image kept as
float, PSNR on peak 255 over all channels. The 12 colour images of Set14 (bridge
and man are grey and left out). In-process columns are the call alone, one BLAS
thread; the ``-process`` columns time whole programs on the 8-bit PNG (see
``bench_denoise.py``).

Usage::

    flock /tmp/spmcli-timing.lock python benchmarks/bench_denoise_colour.py --sigmas 25
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from bench_denoise import (
    BM3D_RGB_PROCESS,
    DEFAULT_DATA,
    SPMCLI_PROCESS,
    add_noise,
    command_line,
    load_set,
    machine_line,
    run_process,
    timed,
)
from threadpoolctl import threadpool_limits

from spmcli.metrics import psnr
from spmcli.restoration.collaborative_denoising import collaborative_denoise
from spmcli.restoration.denoising import ksvd_denoise

METHODS = ("spmcli", "spmcli-ksvd", "bm3d-rgb")


def denoise(method: str, noisy: np.ndarray, sigma: float) -> tuple[np.ndarray, float]:
    if method == "spmcli":
        return timed(lambda: collaborative_denoise(noisy, sigma).image)
    if method == "spmcli-ksvd":
        return timed(lambda: ksvd_denoise(noisy, sigma).image)
    import bm3d

    return timed(bm3d.bm3d_rgb, noisy, sigma)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding Set14/")
    parser.add_argument("--sigmas", default="25", help="noise levels on the 0..255 scale")
    parser.add_argument("--images", default=None, help="comma-separated image names (default: all colour ones)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"subset of {','.join(METHODS)}")
    parser.add_argument("--no-process", action="store_true", help="skip the whole-process timings")
    args = parser.parse_args()
    print(command_line())
    print(machine_line())
    images = load_set(args.data, "Set14", colour=True)
    if args.images:
        images = {name: image for name, image in images.items() if name in args.images.split(",")}
    methods = [name for name in args.methods.split(",") if name]
    columns = methods + ([] if args.no_process else ["spmcli-process", "bm3d-rgb-process"])
    folder = Path(tempfile.mkdtemp(prefix="bench_denoise_colour_"))
    for sigma255 in [float(value) for value in args.sigmas.split(",")]:
        results: dict[str, dict[str, tuple[float, float]]] = {column: {} for column in columns}
        for name, clean in images.items():
            noisy = add_noise(clean, sigma255)
            for column in columns:
                if column.endswith("-process"):
                    program = SPMCLI_PROCESS if column == "spmcli-process" else BM3D_RGB_PROCESS
                    image, seconds = run_process(program, noisy, sigma255, folder)
                else:
                    with threadpool_limits(limits=1):
                        image, seconds = denoise(column, noisy, sigma255 / 255)
                results[column][name] = (psnr(clean, image), seconds)
            line = "  ".join(f"{c} {results[c][name][0]:.2f}/{results[c][name][1]:.1f}s" for c in columns)
            print(f"  {sigma255:g} {name}: {line}", file=sys.stderr, flush=True)
        print(f"\n#### Set14 colour, sigma {sigma255:g}: PSNR (dB) / seconds\n")
        print("| image | size | " + " | ".join(columns) + " |")
        print("|---|---|" + "---|" * len(columns))
        for name, clean in images.items():
            cells = [f"{results[c][name][0]:.2f} / {results[c][name][1]:.1f}" for c in columns]
            print(f"| {name} | {clean.shape[1]}x{clean.shape[0]} | " + " | ".join(cells) + " |")
        means = []
        for c in columns:
            values = list(results[c].values())
            means.append(f"**{np.mean([v[0] for v in values]):.2f}** / {np.median([v[1] for v in values]):.1f}")
        print("| **mean PSNR / median s** | | " + " | ".join(means) + " |")
        if "spmcli" in results and "bm3d-rgb" in results:
            ratio = [results["bm3d-rgb"][n][1] / results["spmcli"][n][1] for n in images]
            print(f"\nIn-process: spmcli {np.median(ratio):.2f}x faster than CBM3D (median image).")
        if not args.no_process:
            ratio = [results["bm3d-rgb-process"][n][1] / results["spmcli-process"][n][1] for n in images]
            print(
                f"Whole process against whole process: spmcli {np.median(ratio):.2f}x faster than CBM3D for the "
                f"median image ({np.min(ratio):.2f}x the lowest ratio)."
            )


if __name__ == "__main__":
    main()
