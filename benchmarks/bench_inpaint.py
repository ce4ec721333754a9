"""Inpainting benchmark: spmcli's inpaint against biharmonic and spm-image's masked K-SVD.

Set12 with 50% and 80% of pixels missing at random (``np.random.default_rng(0)``)
and a text/scribble mask drawn here with PIL; PSNR (peak 1) on the missing
pixels only, per image and mean; seconds per image. spm-image is slow, so it
runs on a subset of images (``--spm-images``, default 01-05).

Run from the repository root (one BLAS thread, like the CLI)::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_inpaint.py
    python benchmarks/bench_inpaint.py --images 01,05,09 --masks random50 --spm-images none   # quick check
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from threadpoolctl import threadpool_limits

from spmcli.restoration.inpainting import inpaint

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MASKS = ("random50", "random80", "scribble")


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
    error = (reference - estimate)[missing]
    return float(10 * np.log10(1.0 / np.mean(error * error)))


def biharmonic(image: np.ndarray, missing: np.ndarray) -> np.ndarray:
    from skimage.restoration import inpaint_biharmonic

    return np.clip(inpaint_biharmonic(np.where(missing, 0.0, image), missing), 0, 1)


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
    return inpaint(np.where(missing, 0.0, image), missing).pixels


def timed(function, *args) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding Set12/")
    parser.add_argument("--images", default="all", help="comma-separated image numbers (01,05) or 'all'")
    parser.add_argument("--masks", default=",".join(MASKS), help=f"comma-separated, from {', '.join(MASKS)}")
    parser.add_argument("--spm-images", default="01,02,03,04,05", help="images also run with spm-image, or 'none'")
    args = parser.parse_args()

    folder = args.data / "Set12"
    paths = sorted(folder.glob("*.png"))
    if not paths:
        sys.exit(f"no images in {folder} (use --data)")
    if args.images != "all":
        wanted = {name.strip().zfill(2) for name in args.images.split(",")}
        paths = [path for path in paths if path.stem in wanted]
    spm_wanted = set() if args.spm_images == "none" else {n.strip().zfill(2) for n in args.spm_images.split(",")}
    masks = [name.strip() for name in args.masks.split(",")]
    for name in masks:
        if name not in MASKS:
            sys.exit(f"unknown mask {name!r}")

    print(f"Command: {' '.join(shlex.quote(part) for part in [Path(sys.executable).name, *sys.argv])}")
    print(f"Cores: {os.cpu_count()}, BLAS threads: 1; PSNR in dB on the missing pixels only, seconds per image")
    print(
        "spm-image: KSVD(n_components=128, transform_n_nonzero_coefs=8, max_iter=5, missing_value=-1) fitted on "
        "2,000 random 8x8 patches, then every patch at stride 4 coded with its mask and the overlaps averaged"
    )
    for mask_name in masks:
        print(f"\n### {mask_name}\n")
        print("| image | size | missing | biharmonic dB | s | spmcli dB | s | gain dB | spm-image dB | s | speed-up |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        rows = []
        for path in paths:
            image = np.asarray(Image.open(path).convert("L"), dtype=np.float64) / 255
            missing = make_mask(mask_name, image.shape)
            with threadpool_limits(limits=1):
                base, base_s = timed(biharmonic, image, missing)
                mine, mine_s = timed(ours, image, missing)
                spm, spm_s = timed(spm_image_ksvd, image, missing) if path.stem in spm_wanted else (None, np.nan)
            base_db, mine_db = psnr_missing(image, base, missing), psnr_missing(image, mine, missing)
            spm_db = psnr_missing(image, spm, missing) if spm is not None else np.nan
            rows.append((base_db, base_s, mine_db, mine_s, spm_db, spm_s))
            spm_text = f"{spm_db:.2f} | {spm_s:.1f} | {spm_s / mine_s:.1f}x" if spm is not None else "- | - | -"
            print(
                f"| {path.stem} | {image.shape[1]}x{image.shape[0]} | {missing.mean():.0%} | {base_db:.2f} | "
                f"{base_s:.2f} | {mine_db:.2f} | {mine_s:.2f} | {mine_db - base_db:+.2f} | {spm_text} |",
                flush=True,
            )
        table = np.array(rows)
        base_db, base_s, mine_db, mine_s, spm_db, spm_s = table.T
        has_spm = ~np.isnan(spm_db)
        spm_summary = "- | - | -"
        if has_spm.any():
            spm_summary = (
                f"{np.mean(spm_db[has_spm]):.2f} | {np.median(spm_s[has_spm]):.1f} | "
                f"{np.median(spm_s[has_spm] / mine_s[has_spm]):.1f}x"
            )
        print(
            f"| **mean** (time: median) | | | {base_db.mean():.2f} | {np.median(base_s):.2f} | {mine_db.mean():.2f} | "
            f"{np.median(mine_s):.2f} | {np.mean(mine_db - base_db):+.2f} | {spm_summary} |"
        )
        if has_spm.any():
            print(
                f"\nOn the {int(has_spm.sum())} image(s) run with spm-image: "
                f"spmcli {np.mean(mine_db[has_spm]):.2f} dB, "
                f"spm-image {np.mean(spm_db[has_spm]):.2f} dB; worst gain over biharmonic on any image: "
                f"{np.min(mine_db - base_db):+.2f} dB"
            )
        else:
            print(f"\nWorst gain over biharmonic on any image: {np.min(mine_db - base_db):+.2f} dB")


if __name__ == "__main__":
    main()
