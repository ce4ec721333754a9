"""The mode self-test of ``auto``: probe defects drawn on calibration images,
scored by each candidate detector (pooled, aligned), and the mode that puts
them furthest above its own threshold, aligned only when its lead is more
than one standard error of the probes (:mod:`spmcli.inspection.fitting`
runs it; :mod:`spmcli.inspection.probe_defects` draws the probes).

A probe changes a small part of an image, so only the patches near it are
described and scored again: the rest of the image keeps its clean features
and anomalies (the probed image is divided by the clean image's level, so
the probe does not rescale the rest). Colour features are relative to the
whole image's median patch; with them each probed image is scored whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .calibration import calibrated_threshold
from .detector import Detector
from .features import (
    ScaleFeatures,
    detector_planes,
    level_gain,
    scale_features,
    uses_colour,
    window_features,
    working_pyramid,
)
from .grid_resampling import resample_values, resize_for_alignment, touched_window
from .probe_defects import PROBE_KINDS, draw_probe_defect

__all__ = ["SELF_TEST_PROBES", "lead_and_standard_error", "mode_choice", "probe_margin", "self_test_scores"]

# Probe defects the mode self-test draws: one on each of the first 20
# calibration images, or several on each when there are fewer.
SELF_TEST_PROBES = 20


def _changed(before: np.ndarray, after: np.ndarray) -> tuple[slice, slice] | None:
    """The bounding rows and columns of the pixels that differ (None: none do)."""
    differs = before != after
    rows = np.flatnonzero(np.any(differs, axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(np.any(differs, axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


class _ProbedViews:
    """One image, clean and probed, as the detectors of one working size see
    it: the clean features, and per probe and scale the grid window a probe
    changed with the whole grid's features after it (None: unchanged)."""

    def __init__(self, detector: Detector, clean: np.ndarray, probed: list[np.ndarray], shape: tuple | None) -> None:
        settings, patch_size, atoms = detector.settings, detector.patch_size, detector.atoms
        colour = uses_colour(settings)
        raw = working_pyramid(detector_planes(clean, shape, colour), settings, patch_size, gain=1.0)
        gain = level_gain(raw[0])
        levels = [level / gain for level in raw]
        self.features: list[ScaleFeatures] = [scale_features(level, atoms, patch_size, settings) for level in levels]
        self.whole: list[list[ScaleFeatures]] = []
        self.windows: list[list[tuple[slice, slice, np.ndarray] | None]] = []
        for image in probed:
            if colour:
                planes = detector_planes(image, shape, colour)
                probed_levels = working_pyramid(planes, settings, patch_size)
                self.whole.append([scale_features(level, atoms, patch_size, settings) for level in probed_levels])
                continue
            probed_raw = working_pyramid(detector_planes(image, shape, colour), settings, patch_size, gain=1.0)
            windows = []
            for clean_level, raw_level, scale in zip(levels, probed_raw, self.features, strict=True):
                level = raw_level / gain
                changed = _changed(clean_level, level)
                if changed is None:
                    windows.append(None)
                    continue
                rows, cols, values = window_features(level, changed, atoms, patch_size, settings)
                spliced = scale.values.copy()
                spliced[:, rows, cols] = values
                windows.append((rows, cols, spliced))
            self.windows.append(windows)

    def scores(self, detector: Detector, original_shape: tuple[int, int]) -> tuple[tuple[float, float], list[float]]:
        """The clean image's (score, map maximum) and each probed image's score."""
        features = detector.model_features(self.features)
        clean = detector.patch_anomalies(features)
        clean_score = detector.score_anomalies(features, clean, original_shape)
        probed = [detector.score_features(detector.model_features(whole), original_shape).score for whole in self.whole]
        for windows in self.windows:
            anomalies = [anomaly.copy() for anomaly in clean]
            for scale, window in enumerate(windows):
                if window is None:
                    continue
                rows, cols, values = window
                native, model = self.features[scale].grid, features[scale].grid
                if model is not native:
                    # Read on the model's grid: the patches there that read the changed ones.
                    touched = touched_window(native, model, rows, cols)
                    if touched is None:
                        continue
                    rows, cols = touched
                    values = resample_values(values, native, model)
                anomalies[scale][rows, cols] = detector.window_anomalies(scale, values, rows, cols)
            probed.append(detector.score_anomalies(features, anomalies, original_shape)[0])
        return clean_score, probed


def self_test_scores(
    detectors: Sequence[Detector], pixels: np.ndarray, image_index: int, n_images: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Scores of one calibration image under each candidate detector, clean
    and with probe defects drawn on it (the per-image stage of the mode
    self-test).

    The :data:`SELF_TEST_PROBES` probes are dealt over ``n_images`` images:
    this one, number ``image_index``, gets probes ``image_index``,
    ``image_index + n_images``...; each is seeded by ``[seed, probe]``, and
    the kinds take turns.

    Returns
    -------
    clean : ndarray, shape (2, n_detectors)
        The clean image's score and map maximum (as :meth:`Detector.score`).
    probed : ndarray, shape (n_probes, n_detectors)
        The probed images' scores (only the patches near the probe scored
        again, see the module's notes).

    Detectors that see the image at the same size share its features (they
    share atoms and settings).
    """
    scale = detectors[0].settings.downscale or 1
    original_shape = tuple(np.shape(pixels)[:2])
    probed_images = [
        draw_probe_defect(
            pixels, PROBE_KINDS[(image_index + turn) % len(PROBE_KINDS)], np.random.default_rng([seed, probe]), scale
        )
        for turn, probe in enumerate(range(image_index, SELF_TEST_PROBES, n_images))
    ]
    views: dict[tuple[int, int] | None, _ProbedViews] = {}
    clean, probed = [], []
    for detector in detectors:
        # An aligned detector resizes an image far off its size (and reads
        # one of nearly its size on its own grid: _ProbedViews.scores).
        key = resize_for_alignment(original_shape, tuple(detector.image_shape)) if detector.mode == "aligned" else None
        if key not in views:
            views[key] = _ProbedViews(detector, pixels, probed_images, key)
        clean_score, probed_scores = views[key].scores(detector, original_shape)  # type: ignore[arg-type]
        clean.append(clean_score)
        probed.append(probed_scores)
    return np.array(clean, dtype=np.float64).T, np.array(probed, dtype=np.float64).T.reshape(-1, len(detectors))


def probe_margin(clean: np.ndarray, probed: np.ndarray, quantile: float) -> float:
    """Mean log ratio of the probed images' scores to the threshold the clean
    images' scores would calibrate (:func:`calibrated_threshold`): how far above
    its own threshold a mode puts the probe defects. Unlike an AUROC it does
    not saturate when both modes find every probe."""
    # Scores of exactly 0 (images the bank holds) are floored so the log is finite.
    floor = 1e-12
    threshold = max(calibrated_threshold(clean, quantile)[0], floor)
    return float(np.mean(np.log(np.maximum(probed, floor))) - np.log(threshold))


def lead_and_standard_error(
    probed: np.ndarray, margins: Sequence[float], first: int, second: int
) -> tuple[float, float]:
    """How far candidate ``second`` leads candidate ``first`` (the difference
    of their :func:`probe_margin`, in log units) and the standard error of
    that lead from the probes: the spread of the paired differences of the
    log probe scores over the square root of their number (the thresholds'
    own noise is not counted)."""
    floor = 1e-12
    differences = np.log(np.maximum(probed[:, second], floor)) - np.log(np.maximum(probed[:, first], floor))
    error = float(np.std(differences, ddof=1) / np.sqrt(differences.size)) if differences.size > 1 else 0.0
    return float(margins[second] - margins[first]), error


def mode_choice(
    detectors: Sequence[Detector], tested: list[tuple[np.ndarray, np.ndarray]], quantile: float
) -> tuple[int, str, dict[str, Any], list[tuple[float, float]]]:
    """The candidate that puts probe defects furthest above its own threshold,
    from :func:`self_test_scores` of each tested image: its index, the
    reason, the self-test's record, and the clean images' (score, peak)
    under it (they are the first calibration scores).

    The first candidate (pooled: one model for every position) is the
    simpler one, and is kept unless another leads it by more than one
    standard error of the probes (:func:`lead_and_standard_error`): the
    one-standard-error rule of model selection [1]_. The per-position
    statistics of the aligned mode cost little when it is right (ELPV mono:
    0.03 AUROC) and a lot when it is wrong (gravel: 0.13), and on parts that
    turn the two modes' probe margins can tie.

    References
    ----------
    .. [1] L. Breiman, J. Friedman, R. Olshen and C. Stone, "Classification
           and Regression Trees", Wadsworth 1984, section 3.4.3; T. Hastie,
           R. Tibshirani and J. Friedman, "The Elements of Statistical
           Learning", 2nd ed., Springer 2009, section 7.10.
    """
    clean = np.stack([clean for clean, _ in tested])
    probed = np.concatenate([probed for _, probed in tested])
    margins = [probe_margin(clean[:, 0, column], probed[:, column], quantile) for column in range(len(detectors))]
    leader = int(np.argmax(margins))
    challenger = 1 + int(np.argmax(margins[1:]))
    lead, error = lead_and_standard_error(probed, margins, 0, challenger)
    chosen = challenger if lead > error else 0
    ratios = {detector.mode: float(np.exp(margin)) for detector, margin in zip(detectors, margins, strict=True)}
    best = detectors[leader].mode
    others = " against ".join(f"{ratio:.2f}x {mode}" for mode, ratio in ratios.items() if mode != best)
    reason = (
        f"{len(probed)} probe defects drawn on {len(tested)} calibration images score {ratios[best]:.2f}x "
        f"the threshold {best} against {others} (geometric mean)"
    )
    if chosen != leader:
        reason += (
            f"; {best}'s lead ({lead:.2f} in log units) is within one standard error of the probes ({error:.2f}), "
            f"so the simpler {detectors[chosen].mode} mode is kept"
        )
    record = {
        "n_images": len(tested),
        "n_probes": len(probed),
        "probe_over_threshold": {mode: round(ratio, 4) for mode, ratio in ratios.items()},
        # The challenger's lead over the simpler first mode (negative when it trails).
        "lead": {"mode": detectors[challenger].mode, "log_lead": round(lead, 4), "standard_error": round(error, 4)},
    }
    known = [(float(score), float(peak)) for score, peak in clean[:, :, chosen]]
    return chosen, reason, record, known
