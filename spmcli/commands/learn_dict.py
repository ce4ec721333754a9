"""``spmcli learn-dict``: learn a patch dictionary from images with K-SVD."""

from __future__ import annotations

import time
from pathlib import Path

import click
import numpy as np

from ..errors import SpmcliError
from ..io.images import read_image, to_grey, write_image
from ..sparse.dictionary import Dictionary, atoms_mosaic, save_dictionary
from ..sparse.learning import learn_dictionary
from ._common import Batch, check_new_output, expand_images, max_pixels_option, progress_bar, say, seed_option
from ._detector_options import apply_detector_defaults, detector_options, detector_requested, learn_detector

EPILOG = """\b
Examples:
  spmcli learn-dict sample_images/ -o dict.npz --atoms-png atoms.png
  spmcli learn-dict "scans/*.png" -o dict.npz --patch-size 8 --n-atoms 256 --sparsity 4 --seed 1
  spmcli learn-dict good/ -o dict.npz --tol 5 --method approx --iters 20
  spmcli learn-dict good/ -o model.npz --detector --calibration-images more-good/
"""


def _save(dictionary: Dictionary, output: str, atoms_png: str | None) -> None:
    save_dictionary(dictionary, output)
    if atoms_png:
        picture = atoms_mosaic(dictionary.atoms, dictionary.patch_size, dictionary.n_channels)
        write_image(atoms_png, picture, dtype="uint8")


def _learn_or_explain(source: str, images: list[np.ndarray], **options) -> Dictionary:
    """Learn, turning a problem with the training data itself into a user-facing error."""
    try:
        return learn_dictionary(images, **options)
    except ValueError as error:
        raise SpmcliError(f"cannot learn a dictionary: {error}", source) from None


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
@click.option("--grayscale", is_flag=True, help="Convert colour images to grey and learn a grey dictionary.")
@click.option("--atoms-png", type=click.Path(dir_okay=False), default=None, help="Also write a picture of the atoms.")
@detector_options
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
    **detector_settings,
) -> None:
    """Learn a patch dictionary from IMAGES with K-SVD and save it as an .npz file.

    Patches are sampled (seeded) from all images, their mean removed, and the
    dictionary learned from an overcomplete DCT start. All images must have
    the same number of channels (or use --grayscale); images that cannot be
    read are reported and skipped, and the command then exits with code 3.
    """
    paths = expand_images(images)
    if Path(output).suffix.lower() != ".npz":
        raise click.BadParameter(f"{output}: the dictionary file must end in .npz", param_hint="-o")
    if atoms_png:
        check_new_output(atoms_png, paths, "--atoms-png")
    started = time.perf_counter()
    batch = Batch(ctx, len(paths))
    loaded: list[np.ndarray] = []
    used_paths: list[Path] = []
    for path in paths:
        image = batch.run(path, lambda path=path: read_image(path, max_pixels=max_pixels))
        if image is None:
            continue
        pixels = to_grey(image.pixels) if grayscale else image.pixels
        if min(pixels.shape[:2]) < patch_size:
            batch.fail(
                path,
                f"image is {pixels.shape[1]} x {pixels.shape[0]} pixels, "
                f"smaller than the {patch_size} x {patch_size} patch",
            )
            continue
        channels = 1 if pixels.ndim == 2 else pixels.shape[2]
        first_channels = channels if not loaded else (1 if loaded[0].ndim == 2 else loaded[0].shape[2])
        if channels != first_channels:
            batch.fail(
                path,
                f"has {channels} channel(s) but {used_paths[0]} has {first_channels}; "
                "use --grayscale to learn from both",
            )
            continue
        loaded.append(pixels)
        used_paths.append(path)
    if not loaded:
        batch.finish()
        return

    if detector_requested(detector_settings["detector"], detector_settings["calibration_images"]):
        if tol is not None:
            raise click.UsageError("--tol cannot be used with --detector (the detector codes with --sparsity)")
        options = apply_detector_defaults(
            ctx,
            {"n_atoms": n_atoms, "sparsity": sparsity, "iters": iters, "method": method, "max_patches": max_patches},
        )
        detector_settings.pop("detector")
        dictionary = learn_detector(
            ctx, batch, loaded, patch_size=patch_size, init=init, seed=seed, max_pixels=max_pixels,
            **options, **detector_settings,
        )  # fmt: skip
        if dictionary is None:
            batch.finish()
            return
        dictionary.metadata["training_images"] = [path.name for path in used_paths]
        _save(dictionary, output, atoms_png)
        say(
            ctx,
            f"Learned a {dictionary.metadata['detector']['mode']} detector ({dictionary.n_atoms} atoms, "
            f"{patch_size}x{patch_size}) from {dictionary.metadata['detector']['n_good_images']} good image(s) "
            f"in {time.perf_counter() - started:.1f} s; threshold {dictionary.metadata['detector']['threshold']:.3f} "
            f"({dictionary.metadata['detector']['threshold_method']}) -> {output}",
        )
        batch.finish()
        return

    tol_unit = None if tol is None else tol / 255.0
    with progress_bar(ctx, iters, "K-SVD", unit="iter") as bar:

        def report(iteration: int, n_iterations: int, rmse: float) -> None:
            bar.update(1)
            bar.set_postfix(rmse=f"{rmse * 255:.3f}/255")

        dictionary = _learn_or_explain(
            " ".join(images),
            loaded,
            patch_size=patch_size,
            n_atoms=n_atoms,
            sparsity=sparsity,
            tol=tol_unit,
            n_iterations=iters,
            method="exact" if method == "ksvd" else "approx",
            init=init,
            max_patches=max_patches,
            remove_mean=remove_mean,
            seed=seed,
            callback=report,
        )
    dictionary.metadata["training_images"] = [path.name for path in used_paths]
    _save(dictionary, output, atoms_png)
    history = dictionary.metadata["error_history"]
    error_text = f"; RMS error {history[-1] * 255:.2f}/255" if history else ""
    say(
        ctx,
        f"Learned {dictionary.n_atoms} atoms ({patch_size}x{patch_size}, {dictionary.n_channels} channel(s)) "
        f"from {dictionary.metadata['n_training_patches']:,} patches of {len(loaded)} image(s) "
        f"in {time.perf_counter() - started:.1f} s{error_text} -> {output}",
    )
    batch.finish()
