"""``spmcli tv-denoise``: total-variation denoising with an automatic weight."""

from __future__ import annotations

import click

from ..restoration.tv_solvers import METHODS
from ..tasks import tv_denoise as task_module
from ._batch import batch_options, image_tasks, resolve_workers, run_batch
from ._common import (
    AutoOrNumber,
    SigmaType,
    check_reference,
    expand_images,
    max_pixels_option,
    output_paths,
    prepare_output_file,
    reference_option,
    refuse_unused,
    report_option,
)

# Peak memory of one worker per input pixel (measured by benchmarks/bench_batch.py), for --jobs auto.
PEAK_BYTES_PER_PIXEL = 80.0

EPILOG = """\b
Examples:
  spmcli tv-denoise noisy.png -o clean.png
  spmcli tv-denoise scans/ --output-dir denoised/ --sigma 20 --report tv.json --jobs auto
  spmcli tv-denoise photo.tif -o smooth.tif --weight 0.2 --method bregman --anisotropic
  spmcli tv-denoise noisy/ --output-dir out/ --reference clean/ --report tv.json
"""


@click.command(name="tv-denoise", epilog=EPILOG)
@click.argument("images", nargs=-1, required=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Output image (one input).")
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder for the outputs (created if missing), one per input with the input's file name.",
)
@click.option(
    "--weight",
    type=AutoOrNumber(
        "WEIGHT|auto", 0.0, strict=True, maximum=1.0, hint=" (the weight is on the 0..1 scale; useful values 0.03-0.3)"
    ),
    default="auto",
    show_default=True,
    help="Smoothing strength, larger = smoother for both methods (Chambolle's weight on the 0..1 "
    "intensity scale; about 0.03-0.2 for usual noise). 'auto' derives it from the noise level.",
)
@click.option(
    "--sigma",
    type=SigmaType(),
    default="auto",
    show_default=True,
    help="Noise standard deviation on the 0..255 scale (whatever the image's dtype), for --weight auto; "
    "'auto' estimates it from each image.",
)
@click.option("--method", type=click.Choice(METHODS), default="chambolle", show_default=True,
              help="Solver: Chambolle's projection or split Bregman (scikit-image's).")  # fmt: skip
@click.option("--anisotropic", is_flag=True, help="Anisotropic TV (sum of |dx| and |dy|); --method bregman only.")
@click.option(
    "--separate-channels",
    is_flag=True,
    help="Denoise colour channels one by one instead of jointly (vectorial TV). Bregman always works per channel.",
)
@click.option(
    "--max-iter",
    type=click.IntRange(min=1),
    default=None,
    help="Iteration limit [default: scikit-image's, 200 for Chambolle, 100 for Bregman].",
)
@reference_option
@report_option("weight and how it was chosen, sigma, solver, iterations, seconds, PSNR/SSIM with --reference")
@batch_options()
@max_pixels_option
@click.pass_context
def command(
    ctx: click.Context,
    images: tuple[str, ...],
    output: str | None,
    output_dir: str | None,
    weight: float | str,
    sigma: float | str,
    method: str,
    anisotropic: bool,
    separate_channels: bool,
    max_iter: int | None,
    reference: str | None,
    report_path: str | None,
    max_pixels: int,
    jobs: int | str,
    scheduler: str | None,
    skip_existing: bool,
) -> None:
    """Denoise IMAGES with total variation (Rudin-Osher-Fatemi), choosing the weight
    from the noise level unless --weight is given.

    --weight has one meaning for both methods: larger = smoother (scikit-image's
    Bregman solver takes the inverse; spmcli converts). The automatic weight
    grows with the noise sigma (estimated, or --sigma) and shrinks for detailed
    images, then a SURE check picks it or 0.75 times it (fine texture; see
    README); it is printed for each image. Colour is denoised
    jointly across channels (vectorial TV); alpha is passed through; outputs
    keep the input's dtype.
    """
    paths = expand_images(images, ctx)
    if anisotropic and method != "bregman":
        raise click.UsageError("--anisotropic needs --method bregman (Chambolle's solver is isotropic only)")
    if weight != "auto":
        refuse_unused(ctx, ["sigma"], "with a given --weight (sigma only serves --weight auto)")
    if method == "bregman":
        refuse_unused(ctx, ["separate_channels"], "with --method bregman (it always works channel by channel)")
    check_reference(reference, paths)
    targets = output_paths(paths, output, output_dir)
    if report_path is not None:
        prepare_output_file(report_path, "--report", extensions=(".json",), inputs=paths)
    workers, scheduler = resolve_workers(ctx, jobs, scheduler, paths, PEAK_BYTES_PER_PIXEL)
    settings = task_module.TVSettings(
        weight=weight, sigma=sigma, method=method, anisotropic=anisotropic, separate_channels=separate_channels,
        max_iterations=max_iter, reference=reference, max_pixels=max_pixels,
    )  # fmt: skip
    run_batch(
        ctx, command="tv-denoise", function=task_module.tv_denoise_image, tasks=image_tasks(paths, targets),
        settings=settings, jobs=workers, scheduler=scheduler, skip_existing=skip_existing, summary=task_module.summary,
        verb="Denoised", report_path=report_path,
    )  # fmt: skip
