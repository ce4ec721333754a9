"""Inpainting benchmark: spmcli's inpaint against biharmonic interpolation on Set12 and Set14.

Each image (grey; Set14 also in colour: its 13 colour images, bridge being grey) with 50% and 80%
of pixels missing at random (``np.random.default_rng(0)``) and a text/scribble
mask drawn here with PIL; PSNR (peak 1) on the missing pixels only (all
channels), per image and mean, and the gain over
``skimage.restoration.inpaint_biharmonic`` on the same image; seconds per image
(one BLAS thread). spm-image's masked K-SVD is slow and far behind; it runs on
the images given with ``--spm-images`` (grey only).

``--large`` instead measures time and memory on large images, each inpainted
in a fresh process (peak resident memory of the whole process, as
``/usr/bin/time`` reports it): Set14's barbara tiled to 1411x1411 with 1% of
the pixels missing as scribbles (lines 3 pixels wide) and at random, and
tiled to 4096x4096 with a 200x200 hole.

Run from the repository root::

    flock /tmp/spmcli-timing.lock python benchmarks/bench_inpaint.py
    python benchmarks/bench_inpaint.py --sets Set12 --images 01,05 --masks random50   # quick check
    flock /tmp/spmcli-timing.lock python benchmarks/bench_inpaint.py --large
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from PIL import Image, ImageDraw
from threadpoolctl import threadpool_limits

from spmcli.restoration.inpainting import inpaint

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MASKS = ("random50", "random80", "scribble")
IMAGE_SUFFIXES = (".png", ".bmp", ".tif", ".jpg")
LARGE_CASES = ("1411-scribble", "1411-random", "4096-hole")


def make_mask(kind: str, shape: tuple[int, int]) -> np.ndarray:
    """True where a pixel is missing."""
    height, width = shape
    if kind.startswith("random"):
        share = int(kind[len("random") :]) / 100
        return np.random.default_rng(0).random(shape) < share
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    scale = width / 256
    for row, text in enumerate(["SPARSE MODELS", "FILL THE HOLES", "K-SVD 2006", "INPAINTING"]):
        draw.text((int(12 * scale), int((20 + 58 * row) * scale)), text, fill=255, font_size=int(30 * scale))
    rng = np.random.default_rng(0)
    for _ in range(6):
        points = [(float(x), float(y)) for x, y in rng.random((4, 2)) * (width, height)]
        draw.line(points, fill=255, width=max(2, int(3 * scale)))
    return np.asarray(canvas) > 0


def psnr_missing(reference: np.ndarray, estimate: np.ndarray, missing: np.ndarray) -> float:
    """PSNR (peak 1) over the missing pixels, every channel."""
    error = (reference - estimate)[missing]
    return float(10 * np.log10(1.0 / np.mean(error * error)))


def biharmonic(image: np.ndarray, missing: np.ndarray) -> np.ndarray:
    from skimage.restoration import inpaint_biharmonic

    channel_axis = -1 if image.ndim == 3 else None
    marked = np.where(missing[..., None] if image.ndim == 3 else missing, 0.0, image)
    return np.clip(inpaint_biharmonic(marked, missing, channel_axis=channel_axis), 0, 1)


def spm_image_ksvd(image: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """spm-image's K-SVD with missing values, the way its README inpaints:
    learn on patches whose missing entries hold ``missing_value``, then code
    overlapping patches with the same mask and average them."""
    from sklearn.feature_extraction.image import extract_patches_2d
    from spmimage.decomposition import KSVD

    size, stride = 8, 4
    marked = np.where(missing, -1.0, image)
    all_patches = extract_patches_2d(marked, (size, size)).reshape(-1, size * size)
    # spm-image raises on a patch with no observed pixel: train and code only the others.
    all_patches = all_patches[np.any(all_patches != -1.0, axis=1)]
    rng = np.random.default_rng(0)
    train = all_patches[rng.choice(all_patches.shape[0], min(2000, all_patches.shape[0]), replace=False)]
    model = KSVD(n_components=128, transform_n_nonzero_coefs=8, max_iter=5, missing_value=-1.0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        model.fit(train)
    height, width = image.shape
    rows = np.unique(np.append(np.arange(0, height - size + 1, stride), height - size))
    cols = np.unique(np.append(np.arange(0, width - size + 1, stride), width - size))
    corners = [(r, c) for r in rows for c in cols if np.any(~missing[r : r + size, c : c + size])]
    patches = np.stack([marked[r : r + size, c : c + size].ravel() for r, c in corners])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # sklearn's OMP "linear dependence" notes
        rebuilt = model.transform(patches) @ model.components_
    total, weight = np.zeros_like(image), np.zeros_like(image)
    for index, (r, c) in enumerate(corners):
        total[r : r + size, c : c + size] += rebuilt[index].reshape(size, size)
        weight[r : r + size, c : c + size] += 1
    # Pixels that only unobserved patches cover: spm-image has no value there; use the observed mean.
    fallback = image[~missing].mean()
    return np.clip(np.divide(total, weight, out=np.full_like(image, fallback), where=weight > 0), 0, 1)


def ours(image: np.ndarray, missing: np.ndarray) -> np.ndarray:
    marked = np.where(missing[..., None] if image.ndim == 3 else missing, 0.0, image)
    return inpaint(marked, missing).pixels


def timed(function, *args) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - started


def load_images(data: Path, set_name: str, colour: bool) -> dict[str, np.ndarray]:
    paths = sorted(path for path in (data / set_name).iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)
    images = {}
    for path in paths:
        with Image.open(path) as image:
            if colour and image.mode == "L":
                continue
            images[path.stem] = np.asarray(image.convert("RGB" if colour else "L"), dtype=np.float64) / 255
    return images


def run_quality(args: argparse.Namespace) -> None:
    spm_wanted = set() if args.spm_images == "none" else set(args.spm_images.split(","))
    summary = []
    for set_name in args.sets.split(","):
        kinds = (False, True) if set_name == "Set14" and not args.grey_only else (False,)
        for colour in kinds[1:] if args.colour_only else kinds:
            images = load_images(args.data, set_name, colour)
            if args.images != "all":
                images = {name: image for name, image in images.items() if name in args.images.split(",")}
            label = f"{set_name} {'colour' if colour else 'grey'}"
            for mask_name in args.masks.split(","):
                print(f"\n#### {label}, {mask_name}\n")
                print("| image | size | missing | biharmonic dB | s | spmcli dB | s | gain dB | spm-image dB | s |")
                print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
                rows = []
                for name, image in images.items():
                    missing = make_mask(mask_name, image.shape[:2])
                    where = np.repeat(missing[:, :, None], 3, axis=2) if colour else missing
                    with threadpool_limits(limits=1):
                        base, base_s = timed(biharmonic, image, missing)
                        mine, mine_s = timed(ours, image, missing)
                        run_spm = name in spm_wanted and not colour
                        spm, spm_s = timed(spm_image_ksvd, image, missing) if run_spm else (None, np.nan)
                    # Observed pixels are kept bit for bit.
                    assert np.array_equal(mine[~where], image[~where])
                    base_db, mine_db = psnr_missing(image, base, where), psnr_missing(image, mine, where)
                    spm_text = "- | -" if spm is None else f"{psnr_missing(image, spm, where):.2f} | {spm_s:.1f}"
                    rows.append((base_db, base_s, mine_db, mine_s))
                    print(
                        f"| {name} | {image.shape[1]}x{image.shape[0]} | {missing.mean():.0%} | {base_db:.2f} | "
                        f"{base_s:.2f} | {mine_db:.2f} | {mine_s:.2f} | {mine_db - base_db:+.2f} | {spm_text} |",
                        flush=True,
                    )
                base_db, base_s, mine_db, mine_s = np.array(rows).T
                gains = mine_db - base_db
                print(
                    f"| **mean** (time: median) | | | {base_db.mean():.2f} | {np.median(base_s):.2f} | "
                    f"{mine_db.mean():.2f} | {np.median(mine_s):.2f} | **{gains.mean():+.2f}** | | |"
                )
                print(f"\nLowest gain over biharmonic on any image: {gains.min():+.2f} dB")
                summary.append((label, mask_name, gains.mean(), gains.min(), float(np.median(mine_s))))
    print("\n#### Summary: gain over biharmonic on the missing pixels (dB)\n")
    print("| images | mask | mean gain | lowest gain | median s/image |")
    print("|---|---|---:|---:|---:|")
    for label, mask_name, mean_gain, min_gain, seconds in summary:
        print(f"| {label} | {mask_name} | {mean_gain:+.2f} | {min_gain:+.2f} | {seconds:.2f} |")


LARGE_PROGRAM = """
import sys, time, resource
import numpy as np
from PIL import Image, ImageDraw
from spmcli.restoration.inpainting import inpaint
case, source = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(0)
tile = np.asarray(Image.open(source).convert("L"), dtype=np.float64) / 255
size = 4096 if case.startswith("4096") else 1411
image = np.tile(tile, (size // tile.shape[0] + 1, size // tile.shape[1] + 1))[:size, :size]
if case == "1411-random":
    missing = rng.random(image.shape) < 0.01
elif case == "1411-scribble":
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    while (np.asarray(canvas) > 0).mean() < 0.01:
        draw.line([tuple(map(float, p)) for p in rng.random((3, 2)) * size], fill=255, width=3)
    missing = np.asarray(canvas) > 0
else:
    missing = np.zeros(image.shape, bool)
    missing[2000:2200, 1500:1700] = True
marked = np.where(missing, 0.0, image)
started = time.perf_counter()
result = inpaint(marked, missing)
seconds = time.perf_counter() - started
error = (result.pixels - image)[missing]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{case}|{missing.mean():.4f}|{seconds:.2f}|{peak:.0f}|{result.patches_processed}|"
      f"{result.stages.get('collaborative', 0)}|{10 * np.log10(1 / np.mean(error ** 2)):.2f}")
"""


def run_large(args: argparse.Namespace) -> None:
    source = args.data / "Set14" / "barbara.bmp"
    print("\n#### Large images: time and memory follow the hole\n")
    print("| case | missing | inpaint s | process s | peak RSS MB | patches | passes | PSNR missing dB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for case in LARGE_CASES:
        started = time.perf_counter()
        output = subprocess.run(
            [sys.executable, "-c", LARGE_PROGRAM, case, str(source)], check=True, capture_output=True, text=True
        ).stdout.strip()
        process_seconds = time.perf_counter() - started
        name, share, seconds, peak, patches, passes, db = output.split("|")
        print(
            f"| {name} | {float(share):.2%} | {seconds} | {process_seconds:.2f} | {peak} | {int(patches):,} | "
            f"{passes} | {db} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding Set12/ and Set14/")
    parser.add_argument("--sets", default="Set12,Set14")
    parser.add_argument("--images", default="all", help="comma-separated image names or 'all'")
    parser.add_argument("--masks", default=",".join(MASKS), help=f"comma-separated, from {', '.join(MASKS)}")
    parser.add_argument("--grey-only", action="store_true", help="skip Set14 in colour")
    parser.add_argument("--colour-only", action="store_true", help="only Set14 in colour")
    parser.add_argument("--spm-images", default="none", help="images also run with spm-image (grey), or 'none'")
    parser.add_argument("--large", action="store_true", help="only the large-image time and memory cases")
    args = parser.parse_args()
    print(f"Command: {' '.join(shlex.quote(part) for part in [Path(sys.executable).name, *sys.argv])}")
    print(f"Cores: {os.cpu_count()}, BLAS threads: 1; PSNR in dB on the missing pixels only, seconds per image")
    if args.large:
        run_large(args)
    else:
        run_quality(args)


if __name__ == "__main__":
    main()
