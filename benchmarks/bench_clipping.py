"""What modelling clipped noise is worth: 8-bit noisy images, spmcli with and without it, bm3d.

Users' noisy images are files of integers: the noise is clipped at black and
white. ``spmcli reconstruct`` then maps its estimate back through the mean of
clipped noise (``--clipped auto``, Foi 2009; ``spmcli.restoration.clipping``).
This benchmark isolates that step on the same 8-bit input, in process:

- ``spmcli`` is ``collaborative_denoise(noisy8, sigma)`` (clipping detected);
- ``spmcli-no-clip`` is the same with ``clipped=False`` (the estimate as it
  comes out of the Wiener step);
- ``bm3d`` is ``bm3d.bm3d(noisy8, sigma)``.

Protocol as ``bench_denoise.py``: white Gaussian noise from
``np.random.default_rng(0)`` fresh per image and sigma, then rounded and
clipped to 8 bits; outputs rounded to 8 bits as a written file would be;
PSNR on peak 255. Set14 converted to grey (PIL ``convert("L")``). Quality only:
the time of the mapping is a table lookup (milliseconds), and whole-process
times are ``bench_denoise.py``'s.

Usage::

    python benchmarks/bench_clipping.py                      # Set12 and Set14, sigma 15, 25, 50
    python benchmarks/bench_clipping.py --sets Set14 --sigmas 25
    python benchmarks/bench_clipping.py --columns spmcli,spmcli-no-clip    # bm3d's figures from bench_denoise
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from bench_denoise import DEFAULT_DATA, add_noise, command_line, load_set, machine_line, mean_cell, mean_difference
from threadpoolctl import threadpool_limits

from spmcli.metrics import psnr
from spmcli.restoration.clipping import looks_clipped
from spmcli.restoration.collaborative_denoising import collaborative_denoise

COLUMNS = ("spmcli", "spmcli-no-clip", "bm3d")


def as_8bit(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image * 255), 0, 255) / 255


def run(column: str, noisy: np.ndarray, sigma: float) -> np.ndarray:
    if column == "bm3d":
        import bm3d

        return bm3d.bm3d(noisy, sigma)
    return collaborative_denoise(noisy, sigma, clipped=None if column == "spmcli" else False).image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding Set12/ and Set14/")
    parser.add_argument("--sets", default="Set12,Set14")
    parser.add_argument("--sigmas", default="15,25,50", help="noise levels on the 0..255 scale")
    parser.add_argument("--columns", default=",".join(COLUMNS), help=f"subset of {','.join(COLUMNS)}")
    args = parser.parse_args()
    columns = [column for column in COLUMNS if column in args.columns.split(",")]
    print(command_line())
    print(machine_line())
    summary = []
    for set_name in args.sets.split(","):
        images = load_set(args.data, set_name)
        for sigma255 in [float(value) for value in args.sigmas.split(",")]:
            scores: dict[str, dict[str, float]] = {column: {} for column in columns}
            clipped_share = {}
            for name, clean in images.items():
                noisy = as_8bit(add_noise(clean, sigma255))
                assert looks_clipped(noisy)
                clipped_share[name] = float(np.mean((noisy == 0) | (noisy == 1)))
                for column in columns:
                    with threadpool_limits(limits=1):
                        scores[column][name] = psnr(clean, as_8bit(run(column, noisy, sigma255 / 255)))
                line = "  ".join(f"{column} {scores[column][name]:.2f}" for column in columns)
                print(f"  {set_name} {sigma255:g} {name}: {line}", file=sys.stderr, flush=True)
            print(f"\n#### {set_name} (grey, 8-bit noisy input), sigma {sigma255:g}: PSNR (dB) per image\n")
            print("| image | pixels at 0 or 255 | " + " | ".join(columns) + " |")
            print("|---" * (len(columns) + 2) + "|")
            for name in images:
                cells = " | ".join(f"{scores[column][name]:.2f}" for column in columns)
                print(f"| {name} | {100 * clipped_share[name]:.1f}% | {cells} |")
            means = {column: float(np.mean(list(scores[column].values()))) for column in columns}
            print("| **mean PSNR** | | " + " | ".join(f"**{means[column]:.2f}**" for column in columns) + " |")
            summary.append((set_name, sigma255, means))
    print("\n#### Summary: mean PSNR (dB), 8-bit noisy input\n")
    print("| set | sigma | spmcli | spmcli-no-clip | bm3d | modelling the clipping | spmcli - bm3d |")
    print("|---|---|---|---|---|---|---|")
    for set_name, sigma255, means in summary:
        cells = " | ".join(mean_cell(means, column) for column in COLUMNS)
        print(
            f"| {set_name} | {sigma255:g} | {cells} | {mean_difference(means, 'spmcli', 'spmcli-no-clip')} | "
            f"{mean_difference(means, 'spmcli', 'bm3d')} |"
        )


if __name__ == "__main__":
    main()
