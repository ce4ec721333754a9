"""Learning a detector from good images: the dictionary, the patch
features, the choice of mode, the model of good patches at every scale and
the calibrated thresholds (how it works: :mod:`spmcli.inspection.detector`).

Per-image work (working images of each good image, their features, the
scores of the calibration images, clean and with probe defects) and, when
``auto`` compares both modes, each mode's model of good patches go through a
``map_function`` with the signature of the builtin :func:`map`, so a process pool or a cluster can run
it; the result is the same whichever runs it. The mapped functions are
top-level so that process pools can pickle them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from itertools import repeat
from typing import Any

import numpy as np

from ..sparse.dictionary import Dictionary
from ..sparse.learning import learn_dictionary
from ..sparse.patches import PatchGrid
from .calibration import calibrated_threshold, check_calibration_count
from .density import ScaleModel, fit_expert, group_folds, position_model, robust_location_spread
from .detector import Detector, polarity_clip
from .detector_file import DETECTOR_VERSION
from .features import (
    NEAR_SIZE,
    blur_for_noise,
    detector_planes,
    expert_columns,
    feature_names,
    grey_plane,
    has_colour,
    scale_features,
    size_difference,
    uses_colour,
    working_noise,
    working_pyramid,
)
from .grid_resampling import model_grids, resample_values, resize_for_alignment
from .mode_self_test import SELF_TEST_PROBES, mode_choice, self_test_scores
from .settings import DetectorSettings

__all__ = ["aligned_size", "calibration_score", "fit_detector", "fit_scale_models", "image_features", "image_levels"]

MapFunction = Callable[..., Iterable[Any]]
# The automatic blur follows the median noise of at most this many good images.
NOISE_SAMPLE = 20


def image_levels(
    pixels: np.ndarray, settings: DetectorSettings, patch_size: int, image_shape: tuple[int, int] | None = None
) -> list[np.ndarray]:
    """Working images of one good image, resized to ``image_shape`` first when
    given (the first per-image stage of learning)."""
    return working_pyramid(detector_planes(pixels, image_shape, uses_colour(settings)), settings, patch_size)


def image_features(
    levels: list[np.ndarray], atoms: np.ndarray, patch_size: int, settings: DetectorSettings
) -> list[np.ndarray]:
    """Raw features ``(F, rows, cols)`` of each working image of one good image."""
    return [scale_features(level, atoms, patch_size, settings).values for level in levels]


def calibration_score(detector: Detector, pixels: np.ndarray) -> tuple[float, float]:
    """Score and map maximum of one calibration image (the per-image stage of calibration)."""
    result = detector.score(pixels)
    return result.score, result.peak


def _reporting(items: Iterable[Any], stage: str, total: int, callback: Callable | None) -> Iterator[Any]:
    for done, item in enumerate(items, start=1):
        if callback is not None:
            callback(stage, done, total)
        yield item


def _good_noise(good_images: Sequence[np.ndarray], settings: DetectorSettings) -> float:
    """The median :func:`working_noise` of up to :data:`NOISE_SAMPLE` good
    images spread over the list (cheap: a few milliseconds an image)."""
    count = min(NOISE_SAMPLE, len(good_images))
    picks = np.unique(np.linspace(0, len(good_images) - 1, count).round().astype(np.int64))
    return float(np.median([working_noise(good_images[index], settings) for index in picks]))


def _median_shape(shapes: list[tuple[int, ...]]) -> tuple[float, float]:
    return tuple(np.median(np.array([shape[:2] for shape in shapes], dtype=np.float64), axis=0))  # type: ignore[return-value]


def aligned_size(shapes: list[tuple[int, ...]]) -> tuple[int, int]:
    """The training size of an aligned detector: the size of the good image
    closest to the median size (the first of them), so that one odd image
    first in the list does not set the positions every other image is read at."""
    median = _median_shape(shapes)
    closest = min(range(len(shapes)), key=lambda index: size_difference(shapes[index], median))
    return int(shapes[closest][0]), int(shapes[closest][1])


def _mode_candidates(settings: DetectorSettings, shapes: list[tuple[int, ...]]) -> tuple[tuple[str, ...], str]:
    """The modes worth comparing on probe defects, or the one mode and why."""
    if settings.mode != "auto":
        return (settings.mode,), f"{settings.mode} mode requested"
    if len(set(shapes)) > 1:
        median = _median_shape(shapes)
        difference = max(size_difference(shape, median) for shape in shapes)
        if difference > NEAR_SIZE:
            return ("pooled",), (
                f"the good images differ in size (by up to {100 * difference:.1f}%), so positions do not correspond"
            )
    if len(shapes) < 3:
        return ("pooled",), "too few good images to compare positions (fewer than 3)"
    return ("pooled", "aligned"), ""


def _good_features(
    levels: Iterable[list[np.ndarray]],
    count: int,
    atoms: np.ndarray,
    patch_size: int,
    settings: DetectorSettings,
    map_function: MapFunction,
    callback: Callable | None,
) -> list[list[np.ndarray]]:
    mapped = map_function(image_features, levels, repeat(atoms), repeat(patch_size), repeat(settings))
    return list(_reporting(mapped, "features", count, callback))


def _on_grids(per_scale: list[np.ndarray], grids: list[PatchGrid], targets: list[PatchGrid]) -> list[np.ndarray]:
    """One image's raw features of each scale, on ``grids``, read on ``targets``."""
    return [
        values if grid.image_shape == target.image_shape else resample_values(values, grid, target)
        for values, grid, target in zip(per_scale, grids, targets, strict=True)
    ]


def _by_scale(per_image: list[list[np.ndarray]], n_scales: int) -> list[list[np.ndarray]]:
    """``[image][scale]`` features as ``[scale][image]``."""
    return [[image[scale] for image in per_image] for scale in range(n_scales)]


def _choose_by_probes(
    detectors: list[Detector],
    calibration_images: Sequence[np.ndarray],
    seed: int,
    quantile: float,
    map_function: MapFunction,
    callback: Callable | None,
) -> tuple[int, str, dict[str, Any], list[tuple[float, float]]]:
    """The mode self-test over the first calibration images (:func:`mode_choice`)."""
    n_images = min(SELF_TEST_PROBES, len(calibration_images))
    mapped = map_function(
        self_test_scores,
        repeat(detectors),
        calibration_images[:n_images],
        range(n_images),
        repeat(n_images),
        repeat(seed),
    )
    tested = list(_reporting(mapped, "choose mode", n_images, callback))
    return mode_choice(detectors, tested, quantile)


def fit_scale_models(
    per_scale: list[list[np.ndarray]], mode: str, settings: DetectorSettings, seed: int
) -> list[ScaleModel]:
    """The model of good patches at each scale from the good images' raw
    features ``per_scale[scale][image]`` ``(F, rows, cols)``."""
    names = feature_names(settings.features)
    clip = polarity_clip(names, settings.polarity)
    experts = expert_columns(settings)
    scales = []
    for scale, per_image in enumerate(per_scale):
        flat = np.concatenate([values.reshape(values.shape[0], -1).T for values in per_image])
        location, spread = robust_location_spread(flat)
        positions = None
        if mode == "aligned":
            standardised = (np.stack(per_image) - location[None, :, None, None]) / spread[None, :, None, None]
            positions, deviations = position_model(standardised)
            clipped = np.where(clip[None, :, None, None] * deviations > 0, 0.0, deviations)
            descriptors = list(clipped.transpose(0, 2, 3, 1).reshape(len(per_image), -1, len(names)))
        else:
            descriptors = []
            for values in per_image:
                standardised = (values.reshape(values.shape[0], -1).T - location) / spread
                descriptors.append(np.where(clip * standardised > 0, 0.0, standardised))
        folds = group_folds(len(descriptors), seed + scale)
        models = [
            fit_expert(
                name,
                columns,
                descriptors,
                folds,
                bank_size=settings.bank_size,
                rare_share=settings.bank_rare_share,
                n_neighbours=settings.n_neighbours,
                seed=seed + scale,
                quantile=settings.held_out_quantile,
                one_sided=name in settings.one_sided_experts,
            )
            for name, columns in experts
        ]
        scales.append(ScaleModel(location, spread, models, positions))
    return scales


def fit_detector(
    good_images: Sequence[np.ndarray],
    calibration_images: Sequence[np.ndarray],
    *,
    settings: DetectorSettings | None = None,
    patch_size: int = 8,
    n_atoms: int = 128,
    n_iterations: int = 5,
    method: str = "approx",
    init: str = "dct",
    max_patches: int | None = 10000,
    seed: int = 0,
    callback: Callable[[str, int, int], None] | None = None,
    map_function: MapFunction = map,
) -> tuple[Dictionary, Detector]:
    """Learn a detector from good images and calibrate its thresholds.

    Parameters
    ----------
    good_images : sequence of ndarray
        Defect-free images to learn from, ``(H, W)`` or ``(H, W, C)`` on the
        0..1 scale; any sizes. When these and the calibration images are all
        in colour the ``colour`` features are used; with any grey image
        among them the detector works in grey (colour is brought to grey).
    calibration_images : sequence of ndarray
        At least 3 other defect-free images (20 or more for a reliable
        threshold; fewer warns), never learned from.
    settings : DetectorSettings, optional
        Defaults: ``DetectorSettings()`` (mode ``"auto"``, downscale and blur
        chosen from the good images).
    patch_size, n_atoms, n_iterations, method, init, max_patches
        Dictionary learning, as in :func:`spmcli.sparse.learning.learn_dictionary`
        (sparsity is ``settings.sparsity``).
    seed : int
        Seeds patch sampling, K-SVD and the thinning of the memory bank.
    callback : callable, optional
        ``callback(stage, done, total)`` with stage ``"prepare"`` and
        ``"features"`` (good images), ``"learn"`` (K-SVD iterations),
        ``"choose mode"`` (the calibration images probe defects are drawn on,
        when ``auto`` compares both modes) and ``"calibrate"`` (the other
        calibration images).
    map_function : callable
        Runs the per-image stages and the candidate modes' models; the
        builtin :func:`map` (default) or any
        function of the same signature, such as
        ``concurrent.futures.ProcessPoolExecutor(...).map``. It is called with
        top-level functions and picklable arguments; the model is the same
        whichever runs them.

    Returns
    -------
    dictionary : Dictionary
        With the detector's state in ``extras`` and a ``detector`` record in
        ``metadata`` (mode, why, settings, counts, thresholds; the aligned
        training size as ``training_size`` [width, height], or None; with
        ``mode_self_test`` the number of probed images, each mode's
        geometric mean of probed score over threshold and aligned's lead
        over pooled with its standard error (``lead``), or None when only
        one mode was a candidate; with ``good_image_noise`` the noise the
        automatic blur was chosen from, or None when the blur was given).
    detector : Detector

    Raises
    ------
    ValueError
        No good images, fewer than 3 calibration images, or an image smaller
        than :func:`minimum_side` pixels a side. Fewer than 20 calibration
        images give a ``UserWarning`` (rough threshold).
    """
    requested = settings or DetectorSettings()
    if not good_images:
        raise ValueError("no good images to learn from")
    check_calibration_count(len(calibration_images))
    shapes = [tuple(np.asarray(image).shape[:2]) for image in good_images]
    settings = requested.resolved([min(shape) for shape in shapes])
    if uses_colour(settings) and not all(has_colour(image) for image in [*good_images, *calibration_images]):
        # Any grey image, good or for calibration: the detector works in grey.
        try:
            settings = settings.without_colour()
        except ValueError:
            raise ValueError("the colour features need colour images, and some good images are grey") from None
    noise = None
    if settings.blur_sigma is None:
        noise = _good_noise(good_images, settings)
        settings = replace(settings, blur_sigma=blur_for_noise(noise))
    candidates, reason = _mode_candidates(settings, shapes)
    # An aligned detector compares positions on the grids of its training
    # size; it resizes an image more than NEAR_SIZE off that size first.
    aligned_shape = aligned_size(shapes)
    resize_to = [resize_for_alignment(shape, aligned_shape) if "aligned" in candidates else None for shape in shapes]
    levels = list(
        _reporting(
            map_function(
                image_levels,
                good_images,
                repeat(settings),
                repeat(patch_size),
                resize_to if candidates == ("aligned",) else repeat(None),
            ),
            "prepare",
            len(good_images),
            callback,
        )
    )
    dictionary = learn_dictionary(
        [grey_plane(level) for pyramid in levels for level in pyramid],
        patch_size=patch_size,
        n_atoms=n_atoms,
        sparsity=settings.sparsity,
        n_iterations=n_iterations,
        method=method,
        init=init,
        max_patches=max_patches,
        remove_mean=True,
        seed=seed,
        callback=None if callback is None else (lambda iteration, total, rmse: callback("learn", iteration, total)),
    )
    features = _good_features(levels, len(levels), dictionary.atoms, patch_size, settings, map_function, callback)
    del levels
    aligned_features = features
    if "aligned" in candidates:
        far = {index for index, target in enumerate(resize_to) if target is not None}
        if far and candidates != ("aligned",):
            # Both modes compared: the pooled one saw the far-off images as they are.
            resized = map_function(
                image_levels,
                [good_images[index] for index in sorted(far)],
                repeat(settings),
                repeat(patch_size),
                repeat(aligned_shape),
            )
            computed = _good_features(resized, len(far), dictionary.atoms, patch_size, settings, map_function, callback)
            aligned_features = list(features)
            for index, image_features_ in zip(sorted(far), computed, strict=True):
                aligned_features[index] = image_features_
        # Images of nearly the training size are read at the positions that
        # correspond in proportion, as detection will read them.
        grids = model_grids(aligned_shape, patch_size, settings)
        aligned_features = [
            values if index in far else _on_grids(values, model_grids(shape, patch_size, settings), grids)
            for index, (values, shape) in enumerate(zip(aligned_features, shapes, strict=True))
        ]
    per_mode = [
        _by_scale(aligned_features if mode == "aligned" else features, settings.n_scales) for mode in candidates
    ]
    # Each candidate's model is one task, so two workers fit both at once.
    fitted = map_function(fit_scale_models, per_mode, candidates, repeat(settings), repeat(seed))
    detectors = [
        Detector(
            atoms=dictionary.atoms,
            patch_size=patch_size,
            settings=settings,
            mode=mode,
            mode_reason=reason,
            scales=scales,
            image_shape=aligned_shape if mode == "aligned" else (0, 0),  # type: ignore[arg-type]
        )
        for mode, scales in zip(candidates, fitted, strict=True)
    ]
    del per_mode
    del features
    known: list[tuple[float, float]] = []
    self_test = None
    detector = detectors[0]
    if len(detectors) > 1:
        chosen, reason, self_test, known = _choose_by_probes(
            detectors, calibration_images, seed, settings.threshold_quantile, map_function, callback
        )
        detector = detectors[chosen]
        detector.mode_reason = reason
    mode = detector.mode
    scores_and_peaks = known + list(
        _reporting(
            map_function(calibration_score, repeat(detector), calibration_images[len(known) :]),
            "calibrate",
            len(calibration_images) - len(known),
            callback,
        )
    )
    names = feature_names(settings.features)
    detector.calibration_scores = np.array([score for score, _ in scores_and_peaks], dtype=np.float64)
    detector.calibration_peaks = np.array([peak for _, peak in scores_and_peaks], dtype=np.float64)
    detector.threshold, detector.threshold_method = calibrated_threshold(
        detector.calibration_scores, settings.threshold_quantile
    )
    detector.pixel_threshold, _ = calibrated_threshold(detector.calibration_peaks, settings.threshold_quantile)
    dictionary.extras.update(detector.to_extras())
    dictionary.metadata["detector"] = {
        "format": DETECTOR_VERSION,
        "mode": mode,
        "mode_reason": reason,
        "mode_self_test": self_test,
        "training_size": detector.training_size,
        "settings": settings.to_record(),
        "good_image_noise": None if noise is None else round(noise, 5),
        "requested_settings": requested.to_record(),
        "features": list(names),
        "n_good_images": len(good_images),
        "n_calibration_images": len(calibration_images),
        "experts": [expert.name for expert in detector.scales[0].experts],
        "bank_sizes": [[int(expert.bank.shape[0]) for expert in model.experts] for model in detector.scales],
        "expert_normalisers": [[round(expert.normaliser, 4) for expert in model.experts] for model in detector.scales],
        "threshold": detector.threshold,
        "pixel_threshold": detector.pixel_threshold,
        "threshold_method": detector.threshold_method,
    }
    return dictionary, detector
