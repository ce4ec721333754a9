"""The detector's state inside a dictionary file: what ``learn-dict
--detector`` writes beside the atoms and ``detect`` reads back, numbers and
text only (the file is read with ``allow_pickle=False``), and which format
versions are still read.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..sparse.dictionary import Dictionary
from .density import Expert, PositionModel, ScaleModel
from .features import expert_columns, feature_names
from .settings import DetectorSettings

__all__ = ["DETECTOR_VERSION", "OLDEST_READABLE_VERSION", "NoDetectorError", "detector_extras", "detector_fields"]

DETECTOR_VERSION = 6
# Format 6 added the colour features (format-5 models have none and score
# as before). Format 4 (the image score was the map's maximum) is still read: its
# thresholds are those of the maximum, so it is scored with score_power inf.
OLDEST_READABLE_VERSION = 4


class NoDetectorError(ValueError):
    """A dictionary file without (usable) detector statistics and calibration."""


def detector_extras(detector: Any) -> dict[str, np.ndarray]:
    """The state of a :class:`~spmcli.inspection.detector.Detector` as
    ``Dictionary.extras`` arrays (typed ``Any``: that module imports this one)."""
    extras = {
        "detector_version": np.array(DETECTOR_VERSION, dtype=np.int64),
        "detector_settings": np.array(json.dumps(detector.settings.to_record(), sort_keys=True)),
        "detector_mode": np.array(detector.mode),
        "detector_mode_reason": np.array(detector.mode_reason),
        "detector_image_shape": np.array(detector.image_shape, dtype=np.int64),
        "detector_threshold": np.array(detector.threshold, dtype=np.float64),
        "detector_pixel_threshold": np.array(detector.pixel_threshold, dtype=np.float64),
        "detector_threshold_method": np.array(detector.threshold_method),
        "detector_calibration_scores": np.asarray(detector.calibration_scores, dtype=np.float64),
        "detector_calibration_peaks": np.asarray(detector.calibration_peaks, dtype=np.float64),
    }
    for scale, model in enumerate(detector.scales):
        extras[f"detector_location_{scale}"] = np.asarray(model.location, dtype=np.float64)
        extras[f"detector_spread_{scale}"] = np.asarray(model.spread, dtype=np.float64)
        extras[f"detector_normalisers_{scale}"] = np.array([e.normaliser for e in model.experts], dtype=np.float64)
        for expert in model.experts:
            extras[f"detector_bank_{scale}_{expert.name}"] = np.asarray(expert.bank, dtype=np.float64)
        if model.positions is not None:
            extras[f"detector_position_mean_{scale}"] = np.asarray(model.positions.mean, dtype=np.float64)
            extras[f"detector_position_spread_{scale}"] = np.asarray(model.positions.spread, dtype=np.float64)
    return extras


def detector_fields(dictionary: Dictionary) -> dict[str, Any]:
    """The keyword arguments of :class:`~spmcli.inspection.detector.Detector`
    stored in a dictionary's extras.

    Raises
    ------
    NoDetectorError
        When the dictionary has no detector state, one from another
        detector format, or an inconsistent one.
    """
    extras = dictionary.extras
    if "detector_version" not in extras:
        raise NoDetectorError(
            "this dictionary has no detector calibration; re-run learn-dict with --detector "
            "(or --calibration-images DIR) on good images"
        )
    try:
        version = int(extras["detector_version"])
    except (TypeError, ValueError):
        raise NoDetectorError("the detector version in this dictionary is invalid; re-run learn-dict") from None
    if version > DETECTOR_VERSION:
        raise NoDetectorError(f"detector format {version} is newer than this spmcli reads; upgrade spmcli")
    if version < OLDEST_READABLE_VERSION:
        raise NoDetectorError(
            f"detector format {version} is from an older spmcli (the features changed); "
            "re-run learn-dict --detector on the good images"
        )
    try:
        record = json.loads(str(extras["detector_settings"]))
        if version == 4:
            record["score_power"] = None  # the maximum, which its thresholds were calibrated on
        settings = DetectorSettings.from_record(record)
        mode = str(extras["detector_mode"])
        if mode not in ("pooled", "aligned"):
            raise ValueError(f"unknown mode {mode!r}")
        n_features = len(feature_names(settings.features))
        experts = expert_columns(settings)
        scales = []
        for scale in range(settings.n_scales):
            location = np.asarray(extras[f"detector_location_{scale}"], dtype=np.float64)
            spread = np.asarray(extras[f"detector_spread_{scale}"], dtype=np.float64)
            normalisers = np.asarray(extras[f"detector_normalisers_{scale}"], dtype=np.float64)
            if normalisers.shape != (len(experts),) or not np.all(normalisers > 0):
                raise ValueError("expert normalisers of the wrong shape")
            models = []
            for (name, columns), normaliser in zip(experts, normalisers, strict=True):
                bank = np.asarray(extras[f"detector_bank_{scale}_{name}"], dtype=np.float64)
                if bank.ndim != 2 or bank.shape[1] != columns.size or bank.shape[0] < 1:
                    raise ValueError("memory bank of the wrong shape")
                if not np.all(np.isfinite(bank)):
                    raise ValueError("non-finite memory bank")
                models.append(Expert(name, columns, bank, float(normaliser), name in settings.one_sided_experts))
            positions = None
            if mode == "aligned":
                positions = PositionModel(
                    np.asarray(extras[f"detector_position_mean_{scale}"], dtype=np.float64),
                    np.asarray(extras[f"detector_position_spread_{scale}"], dtype=np.float64),
                )
                if positions.mean.ndim != 3 or positions.mean.shape[0] != n_features:
                    raise ValueError("position statistics of the wrong shape")
                if positions.spread.shape != positions.mean.shape or not np.all(positions.spread > 0):
                    raise ValueError("invalid position spreads")
            if location.shape != (n_features,) or spread.shape != (n_features,) or not np.all(spread > 0):
                raise ValueError("feature statistics of the wrong shape")
            arrays = [location, spread] + ([positions.mean, positions.spread] if positions else [])
            if not all(np.all(np.isfinite(array)) for array in arrays):
                raise ValueError("non-finite statistics")
            scales.append(ScaleModel(location, spread, models, positions))
        image_shape = tuple(int(v) for v in extras["detector_image_shape"])
        threshold = float(extras["detector_threshold"])
        pixel_threshold = float(extras["detector_pixel_threshold"])
        scores = np.asarray(extras["detector_calibration_scores"], dtype=np.float64)
        # Format 4's scores were the maps' maxima.
        peaks = np.asarray(extras["detector_calibration_peaks"] if version > 4 else scores, dtype=np.float64)
        if len(image_shape) != 2 or not (np.isfinite(threshold) and np.isfinite(pixel_threshold)):
            raise ValueError("invalid threshold or image shape")
    except (KeyError, ValueError, TypeError) as error:
        raise NoDetectorError(
            f"the detector data in this dictionary is incomplete or invalid ({error}); re-run learn-dict"
        ) from None
    return dict(
        atoms=dictionary.atoms,
        patch_size=dictionary.patch_size,
        settings=settings,
        mode=mode,
        mode_reason=str(extras.get("detector_mode_reason", "")),
        scales=scales,
        image_shape=image_shape,  # type: ignore[arg-type]
        threshold=threshold,
        pixel_threshold=pixel_threshold,
        threshold_method=str(extras.get("detector_threshold_method", "")),
        calibration_scores=scores,
        calibration_peaks=peaks,
    )
