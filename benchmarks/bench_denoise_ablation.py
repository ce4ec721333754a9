"""Denoising ablation: how each change to the denoiser moved the mean PSNR on Set12 and Set14 (grey).

Rows, each adding one change to the one above (same noise as ``bench_denoise.py``):

1. ``ksvd + old wiener``: the previous default, K-SVD then the Wiener step as
   it was (groups of 8 within 5 pixels, DCT across the group, textbook gain),
   loaded from the git history (commit 6f61bf5; skipped without git);
2. ``ksvd + wiener``: the rebuilt Wiener step on the same K-SVD pilot (groups
   of up to 32 by a distance threshold within 19 pixels, Haar across, Kaiser
   window, DCT, textbook gain);
3. ``ksvd + wiener, gain 0.5``: its gain softened to p**2 / (p**2 + 0.5 sigma**2);
4. ``hard thresholding + wiener``: the K-SVD pilot replaced by collaborative
   hard thresholding (BM3D's first step; textbook gain, DCT);
5. ``... gain 0.5``: softened gain;
6. ``... learned transform``: the Wiener step's DCT replaced by a transform
   learned from the pilot: the default.

Usage::

    python benchmarks/bench_denoise_ablation.py                    # about 30 minutes on 2 cores
    python benchmarks/bench_denoise_ablation.py --sets Set12 --sigmas 25
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from bench_denoise import DEFAULT_DATA, add_noise, command_line, load_set, machine_line
from threadpoolctl import threadpool_limits

from spmcli.metrics import psnr
from spmcli.restoration.denoising import ksvd_denoise
from spmcli.restoration.hard_thresholding import collaborative_hard_thresholding
from spmcli.restoration.wiener import collaborative_wiener

OLD_COMMIT = "6f61bf5"
ROWS = (
    "ksvd + old wiener",
    "ksvd + wiener",
    "ksvd + wiener, gain 0.5",
    "hard thresholding + wiener",
    "hard thresholding + wiener, gain 0.5",
    "hard thresholding + wiener, gain 0.5, learned transform (default)",
)


def old_wiener():
    """The Wiener step of commit 6f61bf5, or None without the git history."""
    root = Path(__file__).resolve().parents[1]
    try:
        source = subprocess.run(
            ["git", "-C", str(root), "show", f"{OLD_COMMIT}:spmcli/restoration/wiener.py"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    # Its relative imports point into spmcli: load it as a module of that package.
    path = Path(tempfile.mkdtemp()) / "old_wiener.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("spmcli.restoration._old_wiener", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.collaborative_wiener


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--sets", default="Set12,Set14")
    parser.add_argument("--sigmas", default="15,25,50")
    args = parser.parse_args()
    print(command_line())
    print(machine_line())
    previous = old_wiener()
    sets = args.sets.split(",")
    sigmas = [float(value) for value in args.sigmas.split(",")]
    table: dict[str, dict[tuple[str, float], float]] = {row: {} for row in ROWS}
    for set_name in sets:
        for sigma255 in sigmas:
            sigma = sigma255 / 255
            scores: dict[str, list[float]] = {row: [] for row in ROWS}
            for name, clean in load_set(args.data, set_name).items():
                noisy = add_noise(clean, sigma255)
                with threadpool_limits(limits=1):
                    ksvd = ksvd_denoise(noisy, sigma, wiener=False).image
                    hard = collaborative_hard_thresholding(noisy, sigma)
                    estimates = {
                        ROWS[1]: collaborative_wiener(noisy, ksvd, sigma, noise_factor=1.0, transform="dct"),
                        ROWS[2]: collaborative_wiener(noisy, ksvd, sigma, noise_factor=0.5, transform="dct"),
                        ROWS[3]: collaborative_wiener(noisy, hard, sigma, noise_factor=1.0, transform="dct"),
                        ROWS[4]: collaborative_wiener(noisy, hard, sigma, noise_factor=0.5, transform="dct"),
                        ROWS[5]: collaborative_wiener(noisy, hard, sigma, noise_factor=0.5),
                    }
                    if previous is not None:
                        estimates[ROWS[0]] = previous(noisy, ksvd, sigma)
                for row, estimate in estimates.items():
                    scores[row].append(psnr(clean, estimate))
                print(f"  {set_name} {sigma255:g} {name}", file=sys.stderr, flush=True)
            for row in ROWS:
                table[row][(set_name, sigma255)] = float(np.mean(scores[row])) if scores[row] else float("nan")
    keys = [(set_name, sigma255) for set_name in sets for sigma255 in sigmas]
    print("\n#### Ablation: mean PSNR (dB), each row adds one change\n")
    print("| change | " + " | ".join(f"{s} sigma {g:g}" for s, g in keys) + " |")
    print("|---|" + "---|" * len(keys))
    for row in ROWS:
        print(f"| {row} | " + " | ".join(f"{table[row][key]:.2f}" for key in keys) + " |")


if __name__ == "__main__":
    main()
