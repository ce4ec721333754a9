"""``spmcli inpaint``: fill the missing pixels of an image from the pixels that are there."""

from __future__ import annotations

import math

import click

from ..io.images import read_image
from ..sparse.dictionary import load_dictionary
from ..tasks import inpaint as task_module
from ._batch import batch_options, image_tasks, resolve_workers, run_batch
from ._common import (
    AutoOrNumber,
    check_reference,
    expand_images,
    given,
    max_pixels_option,
    output_paths,
    prepare_output_file,
    reference_option,
    refuse_unused,
    report_option,
    seed_option,
)

# Peak memory of one worker per input pixel (measured by benchmarks/bench_batch.py), for --jobs auto.
PEAK_BYTES_PER_PIXEL = 150.0


def automatic_or(passes: float | str) -> int | None:
    """``--passes``: None for auto (the library follows the mask), else the number."""
    return None if passes == "auto" else int(passes)


EPILOG = """\b
Examples:
  spmcli inpaint sample_images/camera.png --mask sample_images/inpaint/camera_mask.png -o filled.png
  spmcli inpaint scan.png --missing-value 0 -o filled.png --report report.json
  spmcli inpaint damaged.tif --mask holes.png --mask-invert --dict dict.npz -o fixed.tif
  spmcli inpaint frames/ --mask dead_pixels.png --output-dir fixed/ --jobs auto
"""


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
              help="Finish with a pass of sparse coding over this dictionary (.npz).")  # fmt: skip
@click.option("--patch-size", type=click.IntRange(4, 32), default=8, show_default=True,
              help="Patch side in pixels (taken from --dict when given).")  # fmt: skip
@click.option("--n-atoms", type=click.IntRange(16, 4096), default=256, show_default=True,
              help="Atoms to learn with --learn-iters.")  # fmt: skip
@click.option("--passes", type=AutoOrNumber("N|auto", 0, strict=False), default="auto", show_default=True,
              help="Passes of collaborative hard thresholding (0: skip that stage); auto follows the mask: up to 30 "
              "for holes, fewer for scattered missing pixels.")  # fmt: skip
@click.option("--learn-iters", type=click.IntRange(min=0), default=0, show_default=True,
              help="K-SVD iterations of a dictionary learned from the estimate, then one pass of sparse coding over "
              "it (0: no dictionary stage; on Set12 it gained nothing after the collaborative stage).")  # fmt: skip
@click.option("--sparsity", type=click.IntRange(min=1), default=8, show_default=True,
              help="Most atoms per patch when coding over a dictionary (--dict or --learn-iters).")  # fmt: skip
@click.option("--stride", type=click.IntRange(1, 8), default=3, show_default=True,
              help="Step between reference patches (1 or 2: slower, a little better).")  # fmt: skip
@click.option("--first-guess", type=click.Choice(["auto", "biharmonic", "smooth"]), default="auto", show_default=True,
              help="First estimate: biharmonic, or a linear-time coarse-to-fine smooth fill; auto uses biharmonic "
              "up to 250,000 missing pixels.")  # fmt: skip
@reference_option
@report_option("missing share, seconds, the stages run, PSNR with --reference")
@batch_options()
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
    passes: float | str,
    learn_iters: int,
    sparsity: int,
    stride: int,
    first_guess: str,
    reference: str | None,
    report_path: str | None,
    seed: int,
    max_pixels: int,
    jobs: int | str,
    scheduler: str | None,
    skip_existing: bool,
) -> None:
    """Fill the missing pixels of IMAGE and write the result; observed pixels are copied unchanged.

    Missing pixels are given by --mask (an image of the same size, nonzero =
    missing) or by --missing-value. The image is first filled by biharmonic
    interpolation (or a smooth fill for very large holes), then refined by
    passes of collaborative hard thresholding (groups of similar patches in a
    3-D DCT/Haar domain); with --dict, or --learn-iters N (a dictionary
    learned with K-SVD from that estimate), one last pass of sparse coding.
    Several images (with --output-dir) share one mask. Exit code 3 when an
    input fails (bad mask, every pixel missing, unreadable file); the others
    are still processed.
    """
    if (mask_path is None) == (missing_value is None):
        raise click.UsageError("give exactly one of --mask MASK or --missing-value V")
    if missing_value is not None and not math.isfinite(missing_value):
        # Float images holding NaN or infinity are refused when read, so such a value never matches.
        raise click.BadParameter(
            f"{missing_value} is not a finite number (images with NaN are refused; mark missing pixels with a mask)",
            param_hint="--missing-value",
        )
    if mask_invert and mask_path is None:
        raise click.UsageError("--mask-invert needs --mask")
    if dict_path is not None:
        refuse_unused(ctx, ["n_atoms", "learn_iters"], "with --dict (nothing is learned)")
    if passes != "auto" and passes != int(passes):
        raise click.BadParameter(f"{passes:g} is not a whole number", param_hint="--passes")
    paths = expand_images(images, ctx)
    check_reference(reference, paths)
    targets = output_paths(paths, output, output_dir)
    if report_path is not None:
        prepare_output_file(report_path, "--report", extensions=(".json",), inputs=paths)
    # Shared by every input and read up front: if one of these cannot be read, nothing
    # can run (the SpmcliError becomes one Error line and exit code 3).
    if mask_path is not None:
        read_image(mask_path, max_pixels=max_pixels)
    if dict_path is not None:
        dictionary = load_dictionary(dict_path)
        if patch_size != dictionary.patch_size and given(ctx, "patch_size"):
            raise click.BadParameter(
                f"the dictionary {dict_path} has {dictionary.patch_size}x{dictionary.patch_size} patches",
                param_hint="--patch-size",
            )
        patch_size = dictionary.patch_size
    workers, scheduler = resolve_workers(ctx, jobs, scheduler, paths, PEAK_BYTES_PER_PIXEL)
    settings = task_module.InpaintSettings(
        mask=mask_path, mask_invert=mask_invert, missing_value=missing_value, dictionary=dict_path,
        patch_size=patch_size, n_atoms=n_atoms, passes=automatic_or(passes), learn_iterations=learn_iters,
        sparsity=sparsity, stride=stride, first_guess=first_guess, reference=reference, seed=seed,
        max_pixels=max_pixels,
    )  # fmt: skip
    run_batch(
        ctx, command="inpaint", function=task_module.inpaint_image, tasks=image_tasks(paths, targets),
        settings=settings, jobs=workers, scheduler=scheduler, skip_existing=skip_existing, summary=task_module.summary,
        verb="Inpainted", report_path=report_path,
    )  # fmt: skip
