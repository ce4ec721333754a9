"""The ``learn-dict`` options that turn a dictionary into a defect detector
(``--detector``, ``--calibration-images``...), and the learning step they run.
Kept apart from learn_dict.py so that command stays about dictionaries."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click
import numpy as np

from ..inspection.detector import POLARITIES, DetectorSettings, fit_detector, split_calibration
from ..io.images import read_image
from ..sparse.dictionary import Dictionary
from ._common import Batch, expand_images, progress_bar

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
            "false alarms on good images); with fewer than 20 calibration images, of a normal fit to their scores.",
        ),
        click.option(
            "--aligned",
            is_flag=True,
            help="Images are all framed alike (solar cells, labels): keep feature statistics per position.",
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
            default=2,
            show_default=True,
            help="Detector: reduce images by this factor before looking at patches.",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def detector_requested(detector: bool, calibration_images: tuple[str, ...]) -> bool:
    return detector or bool(calibration_images)


def apply_detector_defaults(ctx: click.Context, values: dict) -> dict:
    """Replace the values of options the user did not give by the detector defaults."""
    updated = dict(values)
    for name, default in DETECTOR_DEFAULTS.items():
        if ctx.get_parameter_source(name) in (None, click.core.ParameterSource.DEFAULT):
            updated[name] = default
    return updated


def learn_detector(
    ctx: click.Context,
    batch: Batch,
    good: list[np.ndarray],
    *,
    calibration_images: tuple[str, ...],
    calibration_share: float,
    threshold_quantile: float,
    aligned: bool,
    polarity: str,
    downscale: int,
    patch_size: int,
    n_atoms: int,
    sparsity: int | None,
    iters: int,
    method: str,
    init: str,
    max_patches: int,
    seed: int,
    max_pixels: int,
) -> Dictionary | None:
    """Learn and calibrate the detector; None (after reporting) when it cannot be."""
    if calibration_images:
        calibration_paths = expand_images(calibration_images)
        calibration = []
        for path in calibration_paths:
            image = batch.run(path, lambda path=path: read_image(path, max_pixels=max_pixels))
            if image is not None:
                calibration.append(image.pixels)
        training = good
    else:
        try:
            train_index, calibration_index = split_calibration(len(good), calibration_share, seed)
        except ValueError as error:
            raise click.UsageError(str(error)) from None
        training = [good[i] for i in train_index]
        calibration = [good[i] for i in calibration_index]
    if not calibration:
        batch.fail("--calibration-images", "no calibration image could be read")
        return None
    settings = DetectorSettings(
        mode="aligned" if aligned else "pooled",
        downscale=downscale,
        sparsity=sparsity or DETECTOR_DEFAULTS["sparsity"],
        polarity=polarity,
        threshold_quantile=threshold_quantile,
    )
    with progress_bar(ctx, None, "detector", unit="step") as bar:

        def report(stage: str, done: int, total: int) -> None:
            bar.set_description(stage)
            bar.update(1)

        try:
            dictionary, detector = fit_detector(
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
            )
        except ValueError as error:
            batch.fail(Path("IMAGES"), error)
            return None
    dictionary.metadata["detector"]["threshold_method"] = detector.threshold_method
    return dictionary
