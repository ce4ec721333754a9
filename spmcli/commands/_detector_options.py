"""The ``learn-dict`` options that turn a dictionary into a defect detector
(``--detector``, ``--calibration-images``...), and the learning step they run.
Kept apart from learn_dict.py so that command stays about dictionaries."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path

import click
import numpy as np

from ..batch import make_map
from ..errors import SpmcliError
from ..inspection.calibration import MIN_CALIBRATION_IMAGES, split_calibration
from ..inspection.features import minimum_side
from ..inspection.fitting import fit_detector
from ..inspection.settings import MODES, POLARITIES, DetectorSettings
from ..io.images import read_image
from ..sparse.dictionary import Dictionary
from ._common import expand_images, given, progress_bar

# Options that only mean something with --detector (--calibration-images implies it).
DETECTOR_ONLY = ("calibration_share", "threshold_quantile", "mode", "polarity", "downscale", "blur_sigma")

# learn-dict options that take detector defaults when --detector is on and they
# were not given: small, fast dictionaries code good texture and leave defects out.
DETECTOR_DEFAULTS = {"n_atoms": 128, "sparsity": 2, "iters": 5, "method": "approx", "max_patches": 10000}


def detector_options(function: Callable) -> Callable:
    options = [
        click.option(
            "--detector",
            is_flag=True,
            help="Also learn defect-detector statistics and calibrate its threshold (for `spmcli detect`); "
            "unspecified options then default to --n-atoms 128 --sparsity 2 --iters 5 --method approx "
            "--max-patches 10000.",
        ),
        click.option(
            "--calibration-images",
            multiple=True,
            help="Other good images (file, folder or glob; repeatable) to calibrate the threshold on. "
            "Implies --detector. Without it a seeded --calibration-share of IMAGES is held out.",
        ),
        click.option(
            "--calibration-share",
            type=click.FloatRange(0, 1, min_open=True, max_open=True),
            default=0.25,
            show_default=True,
            help="Share of IMAGES held out for calibration when no --calibration-images are given.",
        ),
        click.option(
            "--threshold-quantile",
            type=click.FloatRange(0, 1, min_open=True),
            default=0.95,
            show_default=True,
            help="The detector's threshold is this quantile of the calibration images' scores (0.95: about 5% "
            "false alarms on good images), its pixel threshold the same quantile of their anomaly maps' maxima; "
            "with fewer than 20 calibration images, of a normal fit.",
        ),
        click.option(
            "--mode",
            type=click.Choice(MODES),
            default="auto",
            show_default=True,
            help="pooled: one model of good patches for every position (textures, unaligned parts, any size); "
            "aligned: compare each position with the good images' same position (cells, labels framed alike); "
            "auto: when the good images share one size (within 10%), fit both and keep the one that puts "
            "probe defects drawn on calibration images further above its threshold; else pooled.",
        ),
        click.option(
            "--polarity",
            type=click.Choice(POLARITIES),
            default="both",
            show_default=True,
            help="Which brightness changes count as defects: darker, brighter or both.",
        ),
        click.option(
            "--downscale",
            type=click.IntRange(1, 16),
            default=None,
            help="Reduce images by this factor before looking at patches [default: automatic, keeping the good "
            "images' smaller side at 150 working pixels or more].",
        ),
        click.option(
            "--blur-sigma",
            type=click.FloatRange(0, 10),
            default=None,
            help="Gaussian blur of the working images, in working pixels [default: automatic, from the good "
            "images' pixel noise: about 0 for clean images, at most 1 for grainy ones].",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def apply_detector_defaults(ctx: click.Context, values: dict) -> dict:
    """Replace the values of options the user did not give by the detector defaults."""
    updated = dict(values)
    for name, default in DETECTOR_DEFAULTS.items():
        if not given(ctx, name):
            updated[name] = default
    return updated


def _read_all(
    paths: list[Path], max_pixels: int, failures: list[tuple[str, str]]
) -> tuple[list[np.ndarray], list[Path]]:
    """The readable images among ``paths`` and their paths; the others are reported."""
    images, kept = [], []
    for path in paths:
        try:
            images.append(read_image(path, max_pixels=max_pixels).pixels)
            kept.append(path)
        except SpmcliError as error:
            _fail(failures, str(error.path or path), error.message)
    return images, kept


def _fail(failures: list[tuple[str, str]], path: str, message: str) -> None:
    failures.append((path, message))
    click.echo(f"Error: {path}: {message}", err=True)


def _large_enough(
    images: list[np.ndarray], paths: list[Path], needed: int, failures: list[tuple[str, str]]
) -> tuple[list[np.ndarray], list[Path]]:
    """The images whose smaller side is at least ``needed``; the others are reported by name."""
    kept_images, kept_paths = [], []
    for image, path in zip(images, paths, strict=True):
        height, width = image.shape[:2]
        if min(height, width) >= needed:
            kept_images.append(image)
            kept_paths.append(path)
        else:
            _fail(
                failures, str(path), f"image is {width} x {height} pixels; the detector needs at least {needed} a side"
            )
    return kept_images, kept_paths


def _warn_if_learned_from(paths: list[Path], calibration_paths: list[Path]) -> None:
    """Warn when calibration images are also learned from: they score lower
    than new good images, so the threshold would flag good images."""
    learned = {os.path.realpath(path) for path in paths}
    shared = [path for path in calibration_paths if os.path.realpath(path) in learned]
    if shared:
        warnings.warn(
            f"{len(shared)} of {len(calibration_paths)} calibration image(s) are also learned from (e.g. "
            f"{shared[0]}): they score lower than new good images, so the threshold comes out too low and good "
            "images will be flagged; give other good images, or leave out --calibration-images to hold out a share",
            UserWarning,
            stacklevel=2,
        )


def learn_detector(
    ctx: click.Context,
    paths: list[Path],
    *,
    calibration_images: tuple[str, ...],
    calibration_share: float,
    threshold_quantile: float,
    mode: str,
    polarity: str,
    downscale: int | None,
    blur_sigma: float | None,
    grayscale: bool,
    patch_size: int,
    n_atoms: int,
    sparsity: int | None,
    iters: int,
    method: str,
    init: str,
    max_patches: int,
    seed: int,
    max_pixels: int,
    jobs: int,
    scheduler: str | None,
) -> Dictionary:
    """Learn and calibrate the detector from the good images ``paths``.

    The per-image stages (features of each good image, scores of the
    calibration images) run on the batch engine (``--jobs``, ``--scheduler``).
    Unreadable images are reported (one ``Error:`` line each) and left out;
    ``metadata["detector"]["failed_inputs"]`` lists them so the command exits 3.
    With ``grayscale`` the detector works in grey even on colour images.
    """
    if calibration_images and given(ctx, "calibration_share"):
        raise click.UsageError("--calibration-share has no effect with --calibration-images")
    calibration_paths = expand_images(calibration_images, ctx) if calibration_images else []
    _warn_if_learned_from(paths, calibration_paths)
    failures: list[tuple[str, str]] = []
    good, good_paths = _read_all(paths, max_pixels, failures)
    calibration, calibration_paths = _read_all(calibration_paths, max_pixels, failures)
    # The working scale follows the good images' sizes; an image too small for
    # it is reported by name here, rather than failing the whole fit.
    scale = DetectorSettings(downscale=downscale).resolved([min(image.shape[:2]) for image in good])
    needed = minimum_side(scale, patch_size)
    good, good_paths = _large_enough(good, good_paths, needed, failures)
    calibration, calibration_paths = _large_enough(calibration, calibration_paths, needed, failures)
    if calibration_images:
        training, training_paths = good, good_paths
    else:
        try:
            train_index, calibration_index = split_calibration(len(good), calibration_share, seed)
        except ValueError as error:
            raise click.UsageError(str(error)) from None
        training = [good[i] for i in train_index]
        training_paths = [good_paths[i] for i in train_index]
        calibration = [good[i] for i in calibration_index]
    if len(calibration) < MIN_CALIBRATION_IMAGES:
        raise click.UsageError(
            f"{len(calibration)} calibration image(s): a threshold needs at least {MIN_CALIBRATION_IMAGES} "
            "(give more --calibration-images, or more good images with a larger --calibration-share)"
        )
    settings = DetectorSettings(
        mode=mode,
        downscale=downscale,
        blur_sigma=blur_sigma,
        sparsity=sparsity or DETECTOR_DEFAULTS["sparsity"],
        polarity=polarity,
        threshold_quantile=threshold_quantile,
    )
    if grayscale:
        settings = settings.without_colour()
    with progress_bar(ctx, None, "detector", unit="step") as bar:

        def report(stage: str, done: int, total: int) -> None:
            bar.set_description(stage)
            bar.update(1)

        try:
            dictionary, _ = fit_detector(
                training,
                calibration,
                settings=settings,
                patch_size=patch_size,
                n_atoms=n_atoms,
                n_iterations=iters,
                method="exact" if method == "ksvd" else "approx",
                init=init,
                max_patches=max_patches,
                seed=seed,
                callback=report,
                map_function=make_map(jobs, scheduler),
            )
        except ValueError as error:
            raise SpmcliError(f"cannot learn a detector: {error}", "IMAGES") from None
    dictionary.metadata["training_images"] = [path.name for path in training_paths]
    dictionary.metadata["detector"]["failed_inputs"] = [path for path, _ in failures]
    return dictionary
