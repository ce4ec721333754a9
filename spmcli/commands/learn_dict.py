"""``spmcli learn-dict``: learn a patch dictionary from images with K-SVD."""

from __future__ import annotations

import time
import traceback
from pathlib import Path

import click
import numpy as np

from ..batch import Stopped, Task, run_tasks
from ..errors import SpmcliError
from ..io.images import IMAGE_EXTENSIONS, probe_image, write_image
from ..sparse.dictionary import Dictionary, atoms_mosaic, save_dictionary
from ..sparse.learning import learn_dictionary_from_patches, patch_quotas
from ..tasks.learn import SampleSettings, sample_training_patches
from ._batch import batch_options, resolve_workers
from ._common import (
    expand_images,
    is_verbose,
    max_pixels_option,
    prepare_output_file,
    progress_bar,
    say,
    seed_option,
)
from ._detector_options import DETECTOR_ONLY, apply_detector_defaults, detector_options, learn_detector

# Reading and sampling one image needs a few copies of it (for --jobs auto).
PEAK_BYTES_PER_PIXEL = 60.0

EPILOG = """\b
Examples:
  spmcli learn-dict sample_images/ -o dict.npz --atoms-png atoms.png
  spmcli learn-dict "scans/*.png" -o dict.npz --patch-size 8 --n-atoms 256 --sparsity 4 --seed 1
  spmcli learn-dict good/ -o dict.npz --tol 5 --method approx --iters 20 --jobs auto
  spmcli learn-dict good/ -o model.npz --detector --calibration-images more-good/
"""


def _working_images_line(record: dict) -> str:
    """How the detector's working images are made, and which of it was chosen automatically."""
    settings, requested = record["settings"], record["requested_settings"]
    downscale = settings["downscale"]
    size = "full size" if downscale == 1 else f"reduced 1/{downscale}"
    if requested.get("downscale") is None:
        size += " (from the good images' sizes)"
    blur = f"blur {settings['blur_sigma']:.2f} working px"
    noise = record.get("good_image_noise")
    if noise is not None:
        blur += f" (from the good images' pixel noise, {100 * noise:.1f}% of their level)"
    return f"Working images: {size}, {blur}"


def _save(dictionary: Dictionary, output: str, atoms_png: str | None) -> None:
    save_dictionary(dictionary, output)
    if atoms_png:
        picture = atoms_mosaic(dictionary.atoms, dictionary.patch_size, dictionary.n_channels)
        write_image(atoms_png, picture, dtype="uint8")


@click.command(name="learn-dict", epilog=EPILOG)
@click.argument("images", nargs=-1, required=True)
@click.option(
    "-o", "--output", "output", required=True, type=click.Path(dir_okay=False), help="Dictionary file (.npz) to write."
)
@click.option(
    "--patch-size",
    type=click.IntRange(2, 64),
    default=8,
    show_default=True,
    help="Side of the square patches, in pixels.",
)
@click.option("--n-atoms", type=click.IntRange(1, 8192), default=256, show_default=True, help="Number of atoms.")
@click.option(
    "--sparsity",
    type=click.IntRange(min=1),
    default=None,
    help="Atoms per patch when coding [default: 4 unless --tol].",
)
@click.option(
    "--tol",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Code each patch until its RMS error per pixel is below this (0..255 scale); "
    "with --sparsity, whichever comes first.",
)
@click.option("--iters", type=click.IntRange(min=0), default=10, show_default=True, help="K-SVD iterations.")
@click.option("--method", type=click.Choice(["ksvd", "approx"]), default="ksvd", show_default=True,
              help="Exact K-SVD atom update (rank-1 SVD) or approximate K-SVD (faster).")  # fmt: skip
@click.option("--init", type=click.Choice(["dct", "data"]), default="dct", show_default=True,
              help="Start from the overcomplete DCT or from random training patches.")  # fmt: skip
@click.option(
    "--max-patches",
    type=click.IntRange(min=1),
    default=20000,
    show_default=True,
    help="Train on at most this many random patches.",
)
@click.option(
    "--remove-mean/--keep-mean", default=True, show_default=True, help="Remove each patch's mean before coding."
)
@click.option(
    "--grayscale",
    is_flag=True,
    help="Convert colour images to grey and learn a grey dictionary; with --detector, a detector that ignores "
    "colour (by default colour good images give it colour features).",
)
@click.option("--atoms-png", type=click.Path(dir_okay=False), default=None, help="Also write a picture of the atoms.")
@detector_options
@batch_options(skip_existing=False)
@seed_option
@max_pixels_option
@click.pass_context
def command(
    ctx: click.Context,
    images: tuple[str, ...],
    output: str,
    patch_size: int,
    n_atoms: int,
    sparsity: int | None,
    tol: float | None,
    iters: int,
    method: str,
    init: str,
    max_patches: int,
    remove_mean: bool,
    grayscale: bool,
    atoms_png: str | None,
    seed: int,
    max_pixels: int,
    jobs: int | str,
    scheduler: str | None,
    **detector_settings,
) -> None:
    """Learn a patch dictionary from IMAGES with K-SVD and save it as an .npz file.

    Patches are sampled (seeded) from all images, their mean removed, and the
    dictionary learned from an overcomplete DCT start. All images must have
    the same number of channels (or use --grayscale); images that cannot be
    read are reported and skipped, and the command then exits with code 3.
    With --jobs, images are read and sampled in parallel (same result).
    """
    paths = expand_images(images, ctx)
    prepare_output_file(output, "-o", extensions=(".npz",), inputs=paths)
    if atoms_png:
        prepare_output_file(atoms_png, "--atoms-png", extensions=IMAGE_EXTENSIONS, inputs=paths)
    detector = detector_settings.pop("detector") or bool(detector_settings["calibration_images"])
    if not detector:
        used = [name for name in DETECTOR_ONLY if ctx.get_parameter_source(name).name != "DEFAULT"]
        if used:
            flags = ", ".join("--" + name.replace("_", "-") for name in used)
            raise click.UsageError(f"{flags} {'only applies' if len(used) == 1 else 'only apply'} with --detector")
    workers, scheduler = resolve_workers(ctx, jobs, scheduler, paths, PEAK_BYTES_PER_PIXEL)
    started = time.perf_counter()

    if detector:
        if tol is not None:
            raise click.UsageError("--tol cannot be used with --detector (the detector codes with --sparsity)")
        if ctx.get_parameter_source("remove_mean").name != "DEFAULT":
            raise click.UsageError("--keep-mean has no effect with --detector (it codes mean-removed patches)")
        options = apply_detector_defaults(
            ctx,
            {"n_atoms": n_atoms, "sparsity": sparsity, "iters": iters, "method": method, "max_patches": max_patches},
        )
        dictionary = learn_detector(
            ctx, paths, patch_size=patch_size, init=init, seed=seed, max_pixels=max_pixels, jobs=workers,
            scheduler=scheduler, grayscale=grayscale, **options, **detector_settings,
        )  # fmt: skip
        _save(dictionary, output, atoms_png)
        record = dictionary.metadata["detector"]
        mode = record["mode"]
        kind = f"{mode} colour" if "colour" in record["settings"]["features"] else mode
        say(
            ctx,
            f"Learned {'an' if mode[0] in 'aeiou' else 'a'} {kind} detector ({dictionary.n_atoms} atoms, "
            f"{patch_size}x{patch_size}) from {record['n_good_images']} good image(s) "
            f"in {time.perf_counter() - started:.1f} s; threshold {record['threshold']:.3f} "
            f"({record['threshold_method']}), pixel threshold {record['pixel_threshold']:.3f} -> {output}",
        )
        say(ctx, f"Mode {mode}: {record['mode_reason']}")
        if record.get("training_size"):
            width, height = record["training_size"]
            say(
                ctx,
                f"Positions: compared on the {width}x{height} good images' grid (the size closest to their median); "
                "images within 10% of it are read in proportion, others are resized to it",
            )
        say(ctx, _working_images_line(record))
        if record.get("failed_inputs"):
            ctx.exit(3)
        return

    # Each image's share of patches, from the headers; images are then read and sampled
    # one by one (in parallel with --jobs), each seeded by its position.
    failures: list[tuple[str, str]] = []
    shapes = {}
    for path in paths:
        try:
            width, height = probe_image(path, max_pixels=max_pixels)
            if min(width, height) < patch_size:
                raise ValueError(
                    f"image is {width} x {height} pixels, smaller than the {patch_size} x {patch_size} patch"
                )
            shapes[path] = (height, width)
        except Exception as error:  # the reader's own message, one line
            message = getattr(error, "message", str(error))
            failures.append((str(path), message))
            click.echo(f"Error: {path}: {message}", err=True)
            if is_verbose(ctx):
                traceback.print_exc()
    readable = [path for path in paths if path in shapes]
    quotas = patch_quotas([shapes[path] for path in readable], patch_size, max_patches) if readable else []
    tasks = [
        Task(index, str(path), payload=quota) for index, (path, quota) in enumerate(zip(readable, quotas, strict=True))
    ]
    settings = SampleSettings(patch_size=patch_size, grayscale=grayscale, seed=seed, max_pixels=max_pixels)

    def received(record: dict) -> None:
        if record["status"] == "failed":
            failures.append((record["input"], record["error"]))
            click.echo(f"Error: {record['input']}: {record['error']}", err=True)
            if is_verbose(ctx) and record.get("traceback"):
                click.echo(record["traceback"].rstrip(), err=True)

    result = run_tasks(sample_training_patches, tasks, settings, jobs=workers, scheduler=scheduler, on_record=received)
    if result.stopped_by is not None:
        raise Stopped(result.stopped_by)
    samples, used_paths, n_channels = [], [], None
    for record in result.records:
        if record["status"] != "done":
            continue
        if n_channels is None:
            n_channels = record["n_channels"]
        elif record["n_channels"] != n_channels:
            cause = (
                f"has {record['n_channels']} channel(s) but {used_paths[0]} has {n_channels}; "
                "use --grayscale to learn from both"
            )
            failures.append((record["input"], cause))
            click.echo(f"Error: {record['input']}: {cause}", err=True)
            continue
        samples.append(record["patches"])
        used_paths.append(record["input"])
    if samples:
        tol_unit = None if tol is None else tol / 255.0
        with progress_bar(ctx, iters, "K-SVD", unit="iter") as bar:

            def report(iteration: int, n_iterations: int, rmse: float) -> None:
                bar.update(1)
                bar.set_postfix(rmse=f"{rmse * 255:.3f}/255")

            try:
                dictionary = learn_dictionary_from_patches(
                    np.concatenate(samples), patch_size=patch_size, n_channels=n_channels, n_atoms=n_atoms,
                    sparsity=sparsity, tol=tol_unit, n_iterations=iters,
                    method="exact" if method == "ksvd" else "approx", init=init, remove_mean=remove_mean, seed=seed,
                    n_images=len(samples), callback=report,
                )  # fmt: skip
            except ValueError as error:
                raise SpmcliError(f"cannot learn a dictionary: {error}", " ".join(images)) from None
        dictionary.metadata["training_images"] = [Path(path).name for path in used_paths]
        _save(dictionary, output, atoms_png)
        history = dictionary.metadata["error_history"]
        error_text = f"; RMS error {history[-1] * 255:.2f}/255" if history else ""
        say(
            ctx,
            f"Learned {dictionary.n_atoms} atoms ({patch_size}x{patch_size}, {dictionary.n_channels} channel(s)) "
            f"from {dictionary.metadata['n_training_patches']:,} patches of {len(samples)} image(s) "
            f"in {time.perf_counter() - started:.1f} s{error_text} -> {output}",
        )
    if failures:
        click.echo(f"Error: {len(failures)} of {len(paths)} input(s) could not be processed:", err=True)
        for path, cause in failures:
            click.echo(f"  {path}: {cause}", err=True)
        ctx.exit(3)
