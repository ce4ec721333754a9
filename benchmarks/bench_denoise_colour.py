"""Colour denoising: spmcli's joint RGB K-SVD and Wiener step against CBM3D.

Three scikit-image colour images (no external data needed), white Gaussian
noise of standard deviation sigma on every channel (0..255 scale,
``np.random.default_rng(0)``), noisy image kept as float, PSNR on peak 255 over
all channels. ``spmcli`` is ``ksvd_denoise(noisy, sigma)`` (joint RGB patches,
then the Wiener step in an opponent colour space); ``spmcli-ksvd-only`` is the
same with ``wiener=False``; ``bm3d-rgb`` is ``bm3d.bm3d_rgb`` (CBM3D, which
works in YCbCr), in the same process. One BLAS thread.

Usage::

    flock /tmp/spmcli-heavy.lock python benchmarks/bench_denoise_colour.py --sigmas 25
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from skimage import data
from threadpoolctl import threadpool_limits

from spmcli.metrics import psnr
from spmcli.restoration.denoising import ksvd_denoise

IMAGES = {
    "astronaut": lambda: data.astronaut(),
    "coffee": lambda: data.coffee(),
    "chelsea": lambda: data.chelsea(),
}


def run(name: str, noisy: np.ndarray, sigma: float) -> np.ndarray:
    if name == "spmcli":
        return ksvd_denoise(noisy, sigma).image
    if name == "spmcli-ksvd-only":
        return ksvd_denoise(noisy, sigma, wiener=False).image
    import bm3d

    return bm3d.bm3d_rgb(noisy, sigma)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sigmas", default="25", help="noise levels on the 0..255 scale")
    args = parser.parse_args()
    print("Command: " + " ".join(shlex.quote(part) for part in [Path(sys.argv[0]).as_posix(), *sys.argv[1:]]))
    print(f"Machine: {os.cpu_count()} cores, one BLAS thread, Python {sys.version.split()[0]}")
    methods = ["spmcli", "spmcli-ksvd-only", "bm3d-rgb"]
    with threadpool_limits(limits=1):
        for sigma255 in [float(value) for value in args.sigmas.split(",")]:
            print(f"\n### Colour images, sigma {sigma255:g}: PSNR (dB) / seconds\n")
            print("| image | size | " + " | ".join(methods) + " |")
            print("|---|---|" + "---|" * len(methods))
            totals = {method: [] for method in methods}
            for image_name, load in IMAGES.items():
                clean = load() / 255.0
                noisy = clean + np.random.default_rng(0).standard_normal(clean.shape) * sigma255 / 255
                cells = []
                for method in methods:
                    started = time.perf_counter()
                    denoised = run(method, noisy, sigma255 / 255)
                    seconds = time.perf_counter() - started
                    totals[method].append((psnr(clean, denoised), seconds))
                    cells.append(f"{totals[method][-1][0]:.2f} / {seconds:.1f} s")
                size = f"{clean.shape[1]}x{clean.shape[0]}"
                print(f"| {image_name} | {size} | " + " | ".join(cells) + " |", flush=True)
            means = [
                f"**{np.mean([p for p, _ in totals[m]]):.2f}** / {np.mean([s for _, s in totals[m]]):.1f} s"
                for m in methods
            ]
            print("| **mean** | | " + " | ".join(means) + " |")


if __name__ == "__main__":
    main()
