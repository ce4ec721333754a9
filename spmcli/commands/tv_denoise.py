"""``spmcli tv-denoise``: total-variation denoising with an automatic weight."""

from __future__ import annotations

import time
from pathlib import Path

import click
import numpy as np

from ..errors import SpmcliError
from ..io.images import read_image, to_dtype, write_image
from ..metrics import psnr, ssim
from ..restoration.total_variation import tv_denoise
from ..restoration.tv_solvers import METHODS
from ._common import (
    AutoOrNumber,
    Batch,
    SigmaType,
    expand_images,
    find_reference,
    max_pixels_option,
    output_paths,
    progress_bar,
    say,
    write_json_report,
)

EPILOG = """\b
Examples:
  spmcli tv-denoise noisy.png -o clean.png
  spmcli tv-denoise scans/ --output-dir denoised/ --sigma 20 --report tv.json
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
@click.option(
    "--reference",
    type=click.Path(exists=True),
    default=None,
    help="Clean image (one input) or folder of clean images matched by file name (a batch): "
    "PSNR and SSIM of each result go in the summary and the report.",
)
@click.option(
    "--report", type=click.Path(dir_okay=False), default=None, help="Write per-image details to this JSON file."
)
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
    report: str | None,
    max_pixels: int,
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
    paths = expand_images(images)
    if anisotropic and method != "bregman":
        raise click.UsageError("--anisotropic needs --method bregman (Chambolle's solver is isotropic only)")
    if weight != "auto" and sigma != "auto":
        raise click.UsageError("--sigma only serves --weight auto; give one or the other")
    reference_path = None if reference is None else Path(reference)
    if reference_path is not None and not reference_path.is_dir() and len(paths) != 1:
        raise click.BadParameter(
            f"{reference} is a file but there are {len(paths)} inputs; give a folder of references matched by name",
            param_hint="--reference",
        )
    targets = output_paths(paths, output, output_dir)
    batch = Batch(ctx, len(paths))
    records: list[dict] = []
    started = time.perf_counter()
    with progress_bar(ctx, len(paths), "TV denoise", unit="image") as bar:
        for source, target in zip(paths, targets, strict=True):
            record = batch.run(
                source,
                lambda source=source, target=target: _denoise_one(
                    source,
                    target,
                    reference_path,
                    weight,
                    sigma,
                    method,
                    anisotropic,
                    separate_channels,
                    max_iter,
                    max_pixels,
                ),
            )
            bar.update(1)
            if record is None:
                continue
            records.append(record)
            bar.clear()
            say(ctx, _summary_line(record))
    if report:
        write_json_report(
            report,
            {
                "command": "tv-denoise",
                "method": method,
                "anisotropic": anisotropic,
                "weight_option": weight,
                "sigma_option": sigma,
                "images": records,
                "failures": batch.failure_records(),
            },
        )
    if len(records) > 1:
        say(ctx, f"Denoised {len(records)} image(s) in {time.perf_counter() - started:.1f} s")
    batch.finish()


def _denoise_one(
    source: Path,
    target: Path,
    reference: Path | None,
    weight: float | str,
    sigma: float | str,
    method: str,
    anisotropic: bool,
    separate_channels: bool,
    max_iter: int | None,
    max_pixels: int,
) -> dict:
    image = read_image(source, max_pixels=max_pixels)
    clean = None
    reference_file = find_reference(reference, source)
    if reference_file is not None:
        clean = read_image(reference_file, max_pixels=max_pixels).pixels
        if clean.shape != image.pixels.shape:
            raise SpmcliError(f"reference {reference_file} is {clean.shape}, the image is {image.pixels.shape}", source)
    started = time.perf_counter()
    result = tv_denoise(
        image.pixels,
        weight,
        sigma=None if sigma == "auto" else float(sigma) / 255.0,
        method=method,
        anisotropic=anisotropic,
        joint_channels=not separate_channels,
        max_iterations=max_iter,
    )
    seconds = time.perf_counter() - started
    written_dtype = write_image(target, result.image, dtype=image.dtype, alpha=image.alpha)
    record = {
        "input": str(source),
        "output": str(target),
        "dtype": written_dtype,
        "method": result.method,
        "weight": result.weight,
        "weight_source": "auto" if weight == "auto" else "given",
        "rule_weight": result.rule_weight,
        "solver_weight": result.solver_weight,
        "sigma": None if result.sigma is None else result.sigma * 255.0,
        "sigma_source": None if result.sigma is None else ("estimated" if sigma == "auto" else "given"),
        "joint_channels": result.joint_channels,
        "iterations": result.iterations,
        "max_iterations": result.max_iterations,
        "seconds": round(seconds, 4),
    }
    if clean is not None:
        # Compare what was written (after rounding to the output's dtype), not the float result.
        scale = {"uint8": 255.0, "uint16": 65535.0}.get(written_dtype)
        stored = to_dtype(result.image, written_dtype).astype(np.float64)
        stored = stored / scale if scale else stored
        record["reference"] = str(reference_file)
        record["psnr_noisy"] = psnr(clean, image.pixels)
        record["psnr"] = psnr(clean, stored)
        record["ssim"] = ssim(clean, stored)
    return record


def _summary_line(record: dict) -> str:
    if record["sigma"] is not None:
        how = f"auto, sigma {record['sigma']:.1f}/255 {record['sigma_source']}"
        if record["rule_weight"] is not None and record["weight"] != record["rule_weight"]:
            how += f", SURE: {record['weight'] / record['rule_weight']:.2f} x rule"
    else:
        how = "given"
    text = f"{record['input']}: weight {record['weight']:.4g} ({how}), {record['method']}, {record['seconds']:.2f} s"
    if "psnr" in record:
        text += f", PSNR {record['psnr_noisy']:.2f} -> {record['psnr']:.2f} dB, SSIM {record['ssim']:.3f}"
    return f"{text} -> {record['output']}"
