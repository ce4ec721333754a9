"""Grey denoising benchmark: spmcli against bm3d on Set12 and Set14 (grey), in one run.

Columns:

- ``spmcli``: ``spmcli.restoration.collaborative_denoise(noisy, sigma)``, the
  default denoiser (collaborative hard thresholding, then collaborative Wiener
  filtering with a transform learned from the pilot);
- ``spmcli-ksvd``: ``ksvd_denoise(noisy, sigma)`` (K-SVD, then the Wiener step
  with the K-SVD estimate as pilot: the previous default);
- ``bm3d``: ``bm3d.bm3d(noisy, sigma)`` (the bm3d package; it runs on every
  core the machine has);
- optional ``tv``, ``wavelet``, ``nlm`` (scikit-image; TV at the best of five
  weights, an oracle).

Protocol (DESIGN.md): each image plus white Gaussian noise of standard
deviation sigma (0..255 scale) drawn with ``np.random.default_rng(0)`` (a fresh
generator per image and sigma), the noisy image kept as float, PSNR on peak
255. Set14 images are converted to grey as a user would (PIL ``convert("L")``,
ITU-R 601 luma); barbara, lenna, man and pepper also appear in Set12 (as other
crops or versions). In-process columns are the call alone, one BLAS thread.

Whole process against whole process (on by default, ``--no-process`` skips):
the noisy image clipped and saved as 8-bit PNG; ``spmcli-process`` is the
command a user runs, ``spmcli -q reconstruct noisy.png -o out.png --sigma S``,
and ``bm3d-process`` the smallest program doing the same with bm3d (imports,
``imageio`` read, ``bm3d.bm3d``, write), each timed from outside.

Usage::

    flock /tmp/spmcli-timing.lock python benchmarks/bench_denoise.py                   # both sets, 3 sigmas
    python benchmarks/bench_denoise.py --sets Set12 --images 01,02 --sigmas 25 --no-process   # quick check
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from PIL import Image
from threadpoolctl import threadpool_limits

from spmcli.io.images import read_image, write_image
from spmcli.metrics import psnr
from spmcli.restoration.collaborative_denoising import collaborative_denoise
from spmcli.restoration.denoising import ksvd_denoise

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
METHODS = ("spmcli", "spmcli-ksvd", "bm3d", "tv", "wavelet", "nlm")
DEFAULT_METHODS = "spmcli,spmcli-ksvd,bm3d"
# Published BM3D means on Set12 (Zhang et al., DnCNN, 2017, Table 2).
PUBLISHED_BM3D_SET12 = {15: 32.37, 25: 29.97, 50: 26.72}
IMAGE_SUFFIXES = (".png", ".bmp", ".tif", ".jpg")

# spmcli's whole process is its command line; bm3d has none, so the smallest program
# a user would write with it: read, denoise, write.
SPMCLI_PROCESS = "spmcli reconstruct"
BM3D_PROCESS = """
import sys
import bm3d
import imageio.v3 as iio
import numpy as np
noisy = iio.imread(sys.argv[1]).astype(np.float64) / 255
denoised = bm3d.bm3d(noisy, float(sys.argv[3]) / 255)
iio.imwrite(sys.argv[2], np.clip(np.round(denoised * 255), 0, 255).astype(np.uint8))
"""
BM3D_RGB_PROCESS = BM3D_PROCESS.replace("bm3d.bm3d(", "bm3d.bm3d_rgb(")


def load_set(data: Path, set_name: str, colour: bool = False) -> dict[str, np.ndarray]:
    """The images of a set as float 0..1 (grey via PIL's ITU-R 601 luma, or RGB)."""
    paths = sorted(path for path in (data / set_name).iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)
    images = {}
    for path in paths:
        with Image.open(path) as image:
            if colour and image.mode == "L":
                continue  # a grey image in a colour set
            images[path.stem] = np.asarray(image.convert("RGB" if colour else "L"), dtype=np.float64) / 255
    return images


def add_noise(clean: np.ndarray, sigma255: float) -> np.ndarray:
    return clean + np.random.default_rng(0).standard_normal(clean.shape) * sigma255 / 255


def timed(function, *args) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - started


def timed_process(command: list[str]) -> float:
    """Wall-clock seconds of a whole child process, start-up included."""
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - started


def run_process(program: str, noisy: np.ndarray, sigma255: float, folder: Path) -> tuple[np.ndarray, float]:
    """Save the noisy image as 8-bit PNG, run ``program`` on it as a fresh process; output and seconds."""
    source, target = folder / "noisy.png", folder / "out.png"
    write_image(source, np.clip(noisy, 0, 1), dtype="uint8")
    if program == SPMCLI_PROCESS:
        command = [sys.executable, "-m", "spmcli", "-q", "reconstruct", str(source), "-o", str(target)]
        command += ["--sigma", f"{sigma255:g}"]
    else:
        command = [sys.executable, "-c", program, str(source), str(target), f"{sigma255:g}"]
    seconds = timed_process(command)
    return read_image(target).pixels, seconds


def denoise(method: str, noisy: np.ndarray, sigma: float, clean: np.ndarray) -> tuple[np.ndarray, float]:
    if method == "spmcli":
        return timed(lambda: collaborative_denoise(noisy, sigma).image)
    if method == "spmcli-ksvd":
        return timed(lambda: ksvd_denoise(noisy, sigma).image)
    if method == "bm3d":
        import bm3d

        return timed(bm3d.bm3d, noisy, sigma)
    if method == "tv":
        from skimage.restoration import denoise_tv_chambolle

        candidates = [timed(denoise_tv_chambolle, noisy, factor * sigma) for factor in (0.5, 0.75, 1.0, 1.5, 2.0)]
        return max(candidates, key=lambda candidate: psnr(clean, candidate[0]))
    if method == "wavelet":
        from skimage.restoration import denoise_wavelet

        return timed(lambda: denoise_wavelet(noisy, sigma=sigma, method="BayesShrink", mode="soft", rescale_sigma=True))
    from skimage.restoration import denoise_nl_means

    return timed(lambda: denoise_nl_means(noisy, h=0.8 * sigma, sigma=sigma, patch_size=5, patch_distance=6))


def cpu_model() -> str:
    """The processor's name: speed ratios against bm3d differ between processors
    (measured: 2.8-3.0x on the machine of stop 18, 1.9-2.1x on an AMD EPYC)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line() -> str:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"Machine: {cpu_model()}, {os.cpu_count()} cores ({usable} usable), one BLAS thread "
        f"(spmcli's command line: threads on the usable cores), Python {sys.version.split()[0]}"
    )


def command_line() -> str:
    return "Command: " + " ".join(shlex.quote(part) for part in [Path(sys.argv[0]).as_posix(), *sys.argv[1:]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding Set12/ and Set14/")
    parser.add_argument("--sets", default="Set12,Set14")
    parser.add_argument("--images", default=None, help="comma-separated image names (default: all)")
    parser.add_argument("--sigmas", default="15,25,50", help="noise levels on the 0..255 scale")
    parser.add_argument("--methods", default=DEFAULT_METHODS, help=f"subset of {','.join(METHODS)}")
    parser.add_argument("--no-process", action="store_true", help="skip the whole-process timings")
    args = parser.parse_args()
    methods = [name for name in args.methods.split(",") if name]
    if set(methods) - set(METHODS):
        parser.error(f"unknown methods {sorted(set(methods) - set(METHODS))}")
    print(command_line())
    print(machine_line())
    summary = []
    folder = Path(tempfile.mkdtemp(prefix="bench_denoise_"))
    for set_name in args.sets.split(","):
        images = load_set(args.data, set_name)
        if args.images:
            images = {name: image for name, image in images.items() if name in args.images.split(",")}
        for sigma255 in [float(value) for value in args.sigmas.split(",")]:
            columns = list(methods) + ([] if args.no_process else ["spmcli-process", "bm3d-process"])
            results: dict[str, dict[str, tuple[float, float]]] = {column: {} for column in columns}
            for name, clean in images.items():
                noisy = add_noise(clean, sigma255)
                for column in columns:
                    if column.endswith("-process"):
                        program = SPMCLI_PROCESS if column == "spmcli-process" else BM3D_PROCESS
                        image, seconds = run_process(program, noisy, sigma255, folder)
                    else:
                        with threadpool_limits(limits=1):
                            image, seconds = denoise(column, noisy, sigma255 / 255, clean)
                    results[column][name] = (psnr(clean, image), seconds)
                line = "  ".join(f"{c} {results[c][name][0]:.2f}/{results[c][name][1]:.1f}s" for c in columns)
                print(f"  {set_name} {sigma255:g} {name}: {line}", file=sys.stderr, flush=True)
            summary.append(print_table(set_name, sigma255, list(images), columns, results))
    print_summary(summary)


def print_table(set_name: str, sigma255: float, names: list[str], columns: list[str], results: dict) -> dict:
    print(f"\n#### {set_name} (grey), sigma {sigma255:g}: PSNR (dB) per image\n")
    print("| image | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for name in names:
        print(f"| {name} | " + " | ".join(f"{results[column][name][0]:.2f}" for column in columns) + " |")
    means = {column: np.mean([results[column][n][0] for n in names]) for column in columns}
    print("| **mean PSNR** | " + " | ".join(f"**{means[column]:.2f}**" for column in columns) + " |")
    print(
        "| median seconds | "
        + " | ".join(f"{np.median([results[column][n][1] for n in names]):.2f}" for column in columns)
        + " |"
    )
    row = {"set": set_name, "sigma": sigma255, "means": means}
    if "bm3d" in results and "spmcli" in results:
        ratio = [results["bm3d"][n][1] / results["spmcli"][n][1] for n in names]
        print(f"\nIn-process call against call: spmcli {np.median(ratio):.2f}x faster than bm3d (median image).")
    if "spmcli-process" in results:
        ratio = [results["bm3d-process"][n][1] / results["spmcli-process"][n][1] for n in names]
        median_image = sorted(names, key=lambda n: results["bm3d-process"][n][1])[len(names) // 2]
        row.update(process_median=float(np.median(ratio)), process_min=float(np.min(ratio)))
        print(
            f"Whole process against whole process (8-bit PNG in and out): spmcli {np.median(ratio):.2f}x faster "
            f"than bm3d for the median image ({np.min(ratio):.2f}x the slowest ratio, {np.max(ratio):.2f}x the "
            f"highest; median bm3d process time {results['bm3d-process'][median_image][1]:.2f} s)."
        )
    return row


def mean_cell(means: dict, method: str) -> str:
    """A mean PSNR for the summary, or "-" for a method this run did not include."""
    return f"{means[method]:.2f}" if method in means else "-"


def print_summary(rows: list[dict]) -> None:
    print("\n#### Summary: mean PSNR (dB); speed = bm3d process seconds / spmcli process seconds, median image\n")
    print(
        "| set | sigma | spmcli | bm3d | spmcli - bm3d | spmcli-process | bm3d-process | process difference "
        "| spmcli-ksvd | published BM3D | speed (median / lowest) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        means = row["means"]
        published = PUBLISHED_BM3D_SET12.get(int(row["sigma"]), "-") if row["set"] == "Set12" else "-"
        speed = f"{row['process_median']:.2f}x / {row['process_min']:.2f}x" if "process_median" in row else "-"
        diff = mean_difference(means, "spmcli", "bm3d")
        process_diff = mean_difference(means, "spmcli-process", "bm3d-process")
        cells = (mean_cell(means, method) for method in ("spmcli", "bm3d", "spmcli-process", "bm3d-process"))
        spmcli, bm3d, spmcli_process, bm3d_process = cells
        ksvd = mean_cell(means, "spmcli-ksvd")
        print(
            f"| {row['set']} | {row['sigma']:g} | {spmcli} | {bm3d} | {diff} | {spmcli_process} | {bm3d_process} "
            f"| {process_diff} | {ksvd} | {published} | {speed} |"
        )


def mean_difference(means: dict, first: str, second: str) -> str:
    return f"{means[first] - means[second]:+.2f}" if first in means and second in means else "-"


if __name__ == "__main__":
    main()
