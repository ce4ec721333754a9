"""``spmcli inpaint``: fill the missing pixels of an image from the pixels that are there."""

from __future__ import annotations

import time
from pathlib import Path

import click
import numpy as np

from ..errors import SpmcliError
from ..io.images import Image, read_image, to_dtype, write_image
from ..metrics import psnr
from ..restoration.inpainting import inpaint
from ..sparse.dictionary import Dictionary, load_dictionary
from ._common import Batch, expand_images, max_pixels_option, output_paths, progress_bar, say, seed_option

EPILOG = """\b
Examples:
  spmcli inpaint sample_images/camera.png --mask sample_images/inpaint/camera_mask.png -o filled.png
  spmcli inpaint scan.png --missing-value 0 -o filled.png --report report.json
  spmcli inpaint damaged.tif --mask holes.png --mask-invert --dict dict.npz -o fixed.tif
  spmcli inpaint frames/ --mask dead_pixels.png --output-dir fixed/
"""


def missing_from_mask(mask: Image, shape: tuple[int, int], invert: bool) -> np.ndarray:
    """A mask image to a boolean "missing" array: nonzero in any channel is
    missing (zero is missing with ``invert``)."""
    if mask.pixels.shape[:2] != shape:
        raise SpmcliError(
            f"mask is {mask.width} x {mask.height} pixels but the image is {shape[1]} x {shape[0]}", mask.path
        )
    nonzero = mask.pixels != 0 if mask.pixels.ndim == 2 else np.any(mask.pixels != 0, axis=2)
    return ~nonzero if invert else nonzero


def missing_from_value(image: Image, value: float) -> np.ndarray:
    """Pixels whose every channel equals ``value`` in the file's own units
    (0..255 for 8-bit, 0..65535 for 16-bit, as stored for float)."""
    stored = to_dtype(image.pixels, image.dtype)
    equal = stored == value
    return equal if equal.ndim == 2 else np.all(equal, axis=2)


def _psnr_report(reference: Image, result: np.ndarray, missing: np.ndarray) -> dict:
    if reference.pixels.shape != result.shape:
        raise SpmcliError(
            f"reference is {reference.width} x {reference.height} with {reference.n_channels} channel(s); "
            f"the image is {result.shape[1]} x {result.shape[0]} with {1 if result.ndim == 2 else result.shape[2]}",
            reference.path,
        )
    on_missing = psnr(reference.pixels[missing], result[missing]) if missing.any() else float("inf")
    return {"psnr_all_db": psnr(reference.pixels, result), "psnr_missing_db": on_missing}


@click.command(name="inpaint", epilog=EPILOG)
@click.argument("images", nargs=-1, required=True)
@click.option("--mask", "mask_path", type=click.Path(dir_okay=False), default=None,
              help="Mask image of the same size: nonzero = missing (see --mask-invert).")  # fmt: skip
@click.option("--mask-invert", is_flag=True, help="Zero in the mask means missing (nonzero = observed).")
@click.option("--missing-value", type=float, default=None,
              help="Instead of --mask: pixels whose every channel has this stored value are missing "
              "(0..255 for 8-bit, 0..65535 for 16-bit images).")  # fmt: skip
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Output image (one input).")
@click.option("--output-dir", type=click.Path(file_okay=False), default=None, help="Output folder (any inputs).")
@click.option("--dict", "dict_path", type=click.Path(dir_okay=False), default=None,
              help="Use this dictionary (.npz) instead of learning one from the image.")  # fmt: skip
@click.option("--patch-size", type=click.IntRange(4, 32), default=8, show_default=True,
              help="Patch side in pixels (taken from --dict when given).")  # fmt: skip
@click.option("--n-atoms", type=click.IntRange(16, 4096), default=256, show_default=True, help="Atoms to learn.")
@click.option("--passes", type=click.IntRange(min=0), default=25, show_default=True,
              help="Passes of iterative DCT thresholding (0: skip that stage).")  # fmt: skip
@click.option("--learn-iters", type=click.IntRange(min=0), default=3, show_default=True,
              help="K-SVD iterations for the learned dictionary (0: no learned-dictionary stage).")  # fmt: skip
@click.option("--sparsity", type=click.IntRange(min=1), default=8, show_default=True,
              help="Most atoms per patch when coding over the dictionary.")  # fmt: skip
@click.option("--stride", type=click.IntRange(1, 8), default=2, show_default=True,
              help="Step between overlapping patches (1: about 4x slower, a few tenths of a dB better).")  # fmt: skip
@click.option("--first-guess", type=click.Choice(["auto", "biharmonic", "smooth"]), default="auto", show_default=True,
              help="First estimate: biharmonic, or a linear-time coarse-to-fine smooth fill; auto uses biharmonic "
              "up to 250,000 missing pixels.")  # fmt: skip
@click.option("--reference", "reference_path", type=click.Path(dir_okay=False), default=None,
              help="Ground-truth image: report PSNR on all pixels and on the missing ones (one input).")  # fmt: skip
@click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None,
              help="Write a JSON report (missing share, seconds, PSNR with --reference).")  # fmt: skip
@seed_option
@max_pixels_option
@click.pass_context
def command(
    ctx: click.Context,
    images: tuple[str, ...],
    mask_path: str | None,
    mask_invert: bool,
    missing_value: float | None,
    output: str | None,
    output_dir: str | None,
    dict_path: str | None,
    patch_size: int,
    n_atoms: int,
    passes: int,
    learn_iters: int,
    sparsity: int,
    stride: int,
    first_guess: str,
    reference_path: str | None,
    report_path: str | None,
    seed: int,
    max_pixels: int,
) -> None:
    """Fill the missing pixels of IMAGE and write the result; observed pixels are copied unchanged.

    Missing pixels are given by --mask (an image of the same size, nonzero =
    missing) or by --missing-value. The image is first filled by biharmonic
    interpolation, then refined by iterative thresholding of overlapping patch
    DCTs, then by sparse coding over a dictionary learned with K-SVD from the
    image itself (or the --dict given). Several images (with --output-dir)
    share one mask. Exit code 3 when an input fails (bad mask, every pixel
    missing, unreadable file); the others are still processed.
    """
    if (mask_path is None) == (missing_value is None):
        raise click.UsageError("give exactly one of --mask MASK or --missing-value V")
    if mask_invert and mask_path is None:
        raise click.UsageError("--mask-invert needs --mask")
    if report_path is not None and Path(report_path).suffix.lower() != ".json":
        raise click.BadParameter(f"{report_path}: the report must end in .json", param_hint="--report")
    paths = expand_images(images)
    if reference_path is not None and len(paths) != 1:
        raise click.UsageError("--reference compares one image; give a single IMAGE")
    targets = output_paths(paths, output, output_dir)
    batch = Batch(ctx, len(paths))

    # Shared by every input: if one of these cannot be read, nothing can run, and the
    # SpmcliError it raises becomes the one-line error and exit code 3.
    mask = None if mask_path is None else read_image(mask_path, max_pixels=max_pixels)
    dictionary: Dictionary | None = None
    if dict_path is not None:
        dictionary = load_dictionary(dict_path)
        patch_size = dictionary.patch_size
    reference = None if reference_path is None else read_image(reference_path, max_pixels=max_pixels)

    records = []
    for path, target in zip(paths, targets, strict=True):

        def process(path: Path = path, target: Path = target) -> dict:
            started = time.perf_counter()
            image = read_image(path, max_pixels=max_pixels)
            if mask is not None:
                missing = missing_from_mask(mask, image.pixels.shape[:2], mask_invert)
            else:
                missing = missing_from_value(image, missing_value)
            record = {"input": str(path), "output": str(target), "missing_share": float(missing.mean())}
            if not missing.any():
                write_image(target, image.pixels, dtype=image.dtype, alpha=image.alpha)
                say(ctx, f"{path}: no pixel is missing; copied unchanged -> {target}")
                record.update(seconds=time.perf_counter() - started, stages={}, note="nothing missing; copied")
                return record
            if missing.all():
                raise SpmcliError("every pixel is missing; there is nothing to fill from", mask_path or path)
            if dictionary is not None and dictionary.n_channels != image.n_channels:
                raise SpmcliError(
                    f"the dictionary {dict_path} is for {dictionary.n_channels} channel(s), "
                    f"the image has {image.n_channels}",
                    path,
                )
            total = 1 + passes + (learn_iters > 0 and dictionary is None) + (learn_iters > 0 or dictionary is not None)
            with progress_bar(ctx, total, path.name, unit="pass") as bar:

                def report(stage: str, done: int, n_stage: int) -> None:
                    bar.set_postfix_str(stage)
                    bar.update(1)

                result = inpaint(
                    image.pixels,
                    missing,
                    atoms=None if dictionary is None else dictionary.atoms,
                    patch_size=patch_size,
                    remove_mean=True if dictionary is None else dictionary.remove_mean,
                    n_atoms=n_atoms,
                    threshold_passes=passes,
                    stride=stride,
                    learn_iterations=learn_iters,
                    sparsity=sparsity,
                    coding_passes=1 if (learn_iters > 0 or dictionary is not None) else 0,
                    first_guess=first_guess,
                    seed=seed,
                    callback=report,
                )
            write_image(target, result.pixels, dtype=image.dtype, alpha=image.alpha)
            seconds = time.perf_counter() - started
            record.update(seconds=seconds, stages=result.stages)
            summary = f"{path}: filled {int(missing.sum()):,} missing pixels ({missing.mean():.1%}) in {seconds:.1f} s"
            if reference is not None:
                record.update(_psnr_report(reference, result.pixels, missing))
                summary += f"; PSNR {record['psnr_all_db']:.2f} dB (missing pixels: {record['psnr_missing_db']:.2f} dB)"
            say(ctx, f"{summary} -> {target}")
            return record

        record = batch.run(path, process)
        if record is not None:
            records.append(record)

    if report_path is not None:
        from ._common import write_json_report

        write_json_report(
            report_path,
            {
                "command": "inpaint",
                "mask": mask_path,
                "missing_value": missing_value,
                "mask_invert": mask_invert,
                "dictionary": dict_path,
                "reference": reference_path,
                "images": records,
                "failures": batch.failure_records(),
            },
        )
    batch.finish()
