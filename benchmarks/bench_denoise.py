"""Denoising benchmark: spmcli's K-SVD denoiser against BM3D, scikit-image and spm-image on Set12.

``spmcli`` is the default (K-SVD, then collaborative Wiener filtering);
``spmcli-ksvd-only`` is K-SVD alone (``wiener=False``, ``--no-wiener``).

Protocol (DESIGN.md): each Set12 image plus white Gaussian noise of standard
deviation sigma (0..255 scale) drawn with ``np.random.default_rng(0)`` (a fresh
generator per image and sigma), the noisy image kept as float (not clipped),
PSNR with peak 255 and SSIM against the clean image. In the same run and
process: ``bm3d.bm3d``, ``skimage.restoration`` TV (Chambolle, the best of
five weights: an oracle), wavelet (BayesShrink) and NL-means, and spm-image's
KSVD (slow; a subset of images). Extra rows at sigma 25: spmcli with
``--sigma auto`` (the estimate's time included), and the clipped uint8 PNG a
user has: the whole ``spmcli reconstruct`` process (interpreter start, read,
denoise, write) timed from outside, against bm3d on the same uint8 image, both
as a call in this process and as a whole process (a minimal script: imports,
read, ``bm3d.bm3d``, write).
Everything runs on one BLAS thread.

Usage::

    flock /tmp/spmcli-heavy.lock python benchmarks/bench_denoise.py                # full table
    python benchmarks/bench_denoise.py --images 01,02 --sigmas 25 --methods spmcli,bm3d  # quick check
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from threadpoolctl import threadpool_limits

from spmcli.io.images import read_image, write_image
from spmcli.metrics import psnr, ssim
from spmcli.restoration.denoising import ksvd_denoise
from spmcli.restoration.noise import estimate_noise_sigma

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ALL_METHODS = ("spmcli", "spmcli-ksvd-only", "bm3d", "tv", "wavelet", "nlm", "spmimage")
# Published BM3D means on BSD68 (Zhang et al., DnCNN, 2017), for orientation.
PUBLISHED_BM3D_BSD68 = {15: 31.07, 25: 28.57, 50: 25.62}


def denoise_spmcli(noisy: np.ndarray, sigma: float) -> np.ndarray:
    return ksvd_denoise(noisy, sigma).image


def denoise_spmcli_ksvd_only(noisy: np.ndarray, sigma: float) -> np.ndarray:
    return ksvd_denoise(noisy, sigma, wiener=False).image


def denoise_spmcli_auto(noisy: np.ndarray, sigma: float) -> np.ndarray:
    return ksvd_denoise(noisy, estimate_noise_sigma(noisy)).image


def denoise_bm3d(noisy: np.ndarray, sigma: float) -> np.ndarray:
    import bm3d

    return bm3d.bm3d(noisy, sigma)


def denoise_tv(noisy: np.ndarray, sigma: float, clean: np.ndarray) -> tuple[np.ndarray, float]:
    """Chambolle TV at the best of five weights (an oracle); returns the image and one call's seconds."""
    from skimage.restoration import denoise_tv_chambolle

    best, best_psnr, seconds = None, -np.inf, 0.0
    for factor in (0.5, 0.75, 1.0, 1.5, 2.0):
        started = time.perf_counter()
        candidate = denoise_tv_chambolle(noisy, weight=factor * sigma)
        elapsed = time.perf_counter() - started
        value = psnr(clean, candidate)
        if value > best_psnr:
            best, best_psnr, seconds = candidate, value, elapsed
    return best, seconds


def denoise_wavelet(noisy: np.ndarray, sigma: float) -> np.ndarray:
    from skimage.restoration import denoise_wavelet

    return denoise_wavelet(noisy, sigma=sigma, method="BayesShrink", mode="soft", rescale_sigma=True)


def denoise_nlm(noisy: np.ndarray, sigma: float) -> np.ndarray:
    from skimage.restoration import denoise_nl_means

    return denoise_nl_means(noisy, h=0.8 * sigma, sigma=sigma, patch_size=5, patch_distance=6, fast_mode=True)


def denoise_spmimage(noisy: np.ndarray, sigma: float) -> np.ndarray:
    """spm-image's KSVD on 8x8 patches: trained on 10,000 mean-removed patches
    (sparsity 4, 10 approximate-K-SVD iterations), then every patch coded with
    scikit-learn's OMP to the (1.15 sigma)^2 error target and averaged."""
    from sklearn.feature_extraction.image import extract_patches_2d, reconstruct_from_patches_2d
    from spmimage.decomposition import KSVD

    patches = extract_patches_2d(noisy, (8, 8)).reshape(-1, 64)
    means = patches.mean(axis=1, keepdims=True)
    centred = patches - means
    rng = np.random.default_rng(0)
    training = centred[rng.choice(centred.shape[0], size=10000, replace=False)]
    model = KSVD(n_components=256, transform_n_nonzero_coefs=4, transform_max_iter=1000, max_iter=10, random_state=0)
    model.fit(training)
    model.set_params(transform_alpha=64 * (1.15 * sigma) ** 2, transform_n_nonzero_coefs=None)
    rebuilt = model.transform(centred) @ model.components_ + means
    return reconstruct_from_patches_2d(rebuilt.reshape(-1, 8, 8), noisy.shape)


def run_cli_uint8(noisy_png: Path, output: Path, sigma255: float) -> float:
    """Seconds for the whole ``python -m spmcli reconstruct`` process."""
    return timed_process([sys.executable, "-m", "spmcli", "-q", "reconstruct", str(noisy_png), "-o", str(output),
                          "--sigma", f"{sigma255:g}"])  # fmt: skip


# The smallest whole program a bm3d user would run on a PNG: read, denoise, write.
BM3D_PROCESS = """
import sys
import bm3d
import imageio.v3 as iio
import numpy as np
noisy = iio.imread(sys.argv[1]).astype(np.float64) / 255
denoised = bm3d.bm3d(noisy, float(sys.argv[3]) / 255)
iio.imwrite(sys.argv[2], np.clip(np.round(denoised * 255), 0, 255).astype(np.uint8))
"""


def run_bm3d_process_uint8(noisy_png: Path, output: Path, sigma255: float) -> float:
    """Seconds for a whole Python process running bm3d on the PNG (read and write included)."""
    return timed_process([sys.executable, "-c", BM3D_PROCESS, str(noisy_png), str(output), f"{sigma255:g}"])


def timed_process(command: list[str]) -> float:
    """Wall-clock seconds of a whole child process, start-up included."""
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - started


def timed(function, *args) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding Set12/")
    parser.add_argument("--images", default=None, help="comma-separated image names, e.g. 01,02 (default: all 12)")
    parser.add_argument("--sigmas", default="15,25,50", help="noise levels on the 0..255 scale")
    parser.add_argument("--methods", default=",".join(ALL_METHODS), help=f"subset of {','.join(ALL_METHODS)}")
    parser.add_argument("--spmimage-images", default="01,02", help="images spm-image's (slow) KSVD runs on")
    parser.add_argument("--no-extras", action="store_true", help="skip the sigma-auto and uint8-PNG rows")
    args = parser.parse_args()

    folder = args.data / "Set12"
    names = args.images.split(",") if args.images else sorted(path.stem for path in folder.glob("*.png"))
    sigmas = [float(value) for value in args.sigmas.split(",")]
    methods = [name for name in args.methods.split(",") if name]
    unknown = set(methods) - set(ALL_METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}")
    spmimage_names = set(args.spmimage_images.split(","))
    print("Command: " + " ".join(shlex.quote(part) for part in [Path(sys.argv[0]).as_posix(), *sys.argv[1:]]))
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"Machine: {os.cpu_count()} cores ({affinity} usable), one BLAS thread, Python {sys.version.split()[0]}")
    print()

    clean_images = {name: read_image(folder / f"{name}.png").pixels for name in names}
    temporary = Path(tempfile.mkdtemp(prefix="bench_denoise_"))
    with threadpool_limits(limits=1):
        for sigma255 in sigmas:
            sigma = sigma255 / 255.0
            columns = list(methods)
            if sigma255 == 25 and not args.no_extras:
                columns += ["spmcli-auto", "bm3d-uint8", "spmcli-cli-uint8", "bm3d-process-uint8"]
            results: dict[str, dict[str, tuple[float, float, float]]] = {column: {} for column in columns}
            for name in names:
                clean = clean_images[name]
                noisy = clean + np.random.default_rng(0).standard_normal(clean.shape) * sigma
                line = [name]
                for column in columns:
                    if column == "spmimage" and name not in spmimage_names:
                        continue
                    if column == "tv":
                        image, seconds = denoise_tv(noisy, sigma, clean)
                    elif column == "bm3d-uint8":
                        noisy8 = np.round(np.clip(noisy, 0, 1) * 255) / 255
                        image, seconds = timed(denoise_bm3d, noisy8, sigma)
                    elif column in ("spmcli-cli-uint8", "bm3d-process-uint8"):
                        noisy_png, output = temporary / f"{name}_noisy.png", temporary / f"{name}_{column}.png"
                        write_image(noisy_png, np.clip(noisy, 0, 1), dtype="uint8")
                        run = run_cli_uint8 if column == "spmcli-cli-uint8" else run_bm3d_process_uint8
                        seconds = run(noisy_png, output, sigma255)
                        image = read_image(output).pixels
                    else:
                        function = {
                            "spmcli": denoise_spmcli, "spmcli-ksvd-only": denoise_spmcli_ksvd_only,
                            "spmcli-auto": denoise_spmcli_auto, "bm3d": denoise_bm3d,
                            "wavelet": denoise_wavelet, "nlm": denoise_nlm, "spmimage": denoise_spmimage,
                        }[column]  # fmt: skip
                        image, seconds = timed(function, noisy, sigma)
                    results[column][name] = (psnr(clean, image), ssim(clean, image), seconds)
                    line.append(f"{column} {results[column][name][0]:.2f}/{seconds:.1f}s")
                print("  " + "  ".join(line), file=sys.stderr, flush=True)
            print_table(sigma255, names, columns, results)


def print_table(sigma255: float, names: list[str], columns: list[str], results: dict) -> None:
    print(f"### Set12, sigma {sigma255:g}: PSNR (dB) per image")
    print()
    print("| image | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for name in names:
        cells = [f"{results[column][name][0]:.2f}" if name in results[column] else "-" for column in columns]
        print(f"| {name} | " + " | ".join(cells) + " |")

    def mean(column: str, index: int, subset: list[str] | None = None) -> str:
        values = [results[column][name][index] for name in (subset or names) if name in results[column]]
        if not values:
            return "-"
        return f"{np.mean(values):.{3 if index == 1 else 2}f}"

    print("| **mean PSNR** | " + " | ".join(f"**{mean(column, 0)}**" for column in columns) + " |")
    print("| mean SSIM | " + " | ".join(mean(column, 1) for column in columns) + " |")
    print("| mean seconds/image | " + " | ".join(mean(column, 2) for column in columns) + " |")
    print("| median seconds/image | " + " | ".join(
        f"{np.median([results[column][n][2] for n in names if n in results[column]]):.2f}"
        if results[column] else "-" for column in columns) + " |")  # fmt: skip
    if results.get("bm3d"):
        ratios, slowest = [], []
        for column in columns:
            shared = [n for n in names if n in results[column] and n in results["bm3d"]]
            if not shared:
                ratios.append("-")
                slowest.append("-")
                continue
            per_image = [results["bm3d"][n][2] / results[column][n][2] for n in shared]
            ratios.append(f"{np.median(per_image):.2f}x")
            slowest.append(f"{np.min(per_image):.2f}x")
        print("| median speed vs bm3d (bm3d s / method s, per image) | " + " | ".join(ratios) + " |")
        print("| lowest per-image speed vs bm3d | " + " | ".join(slowest) + " |")
    if results.get("spmcli-cli-uint8") and results.get("bm3d-process-uint8"):
        per_image = [results["bm3d-process-uint8"][n][2] / results["spmcli-cli-uint8"][n][2] for n in names]
        print(
            f"\nWhole process against whole process (uint8 PNG in, PNG out, interpreter start included): "
            f"spmcli is {np.median(per_image):.2f}x faster than bm3d for the median image, "
            f"{np.min(per_image):.2f}x for the slowest, {np.max(per_image):.2f}x for the fastest."
        )
    subset_columns = [column for column in columns if 0 < len(results[column]) < len(names)]
    for column in subset_columns:
        subset = sorted(results[column])
        others = ", ".join(f"{other} {mean(other, 0, subset)}" for other in columns if other != column)
        print(f"\n{column} ran on images {', '.join(subset)} only; on those: {column} {mean(column, 0)}, {others}.")
    if sigma255 in PUBLISHED_BM3D_BSD68:
        print(f"\nPublished BM3D on BSD68 at sigma {sigma255:g}: {PUBLISHED_BM3D_BSD68[sigma255]} dB (DnCNN paper).")
    print()


if __name__ == "__main__":
    main()
