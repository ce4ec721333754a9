"""Defect detection learned from good images only: the fitted detector, its
scores, maps and regions, and learning it.

How it works, in order:

1. Each image becomes a small pyramid of grey, blurred working images,
   divided by the image's own level so exposure changes do not matter
   (:mod:`spmcli.inspection.features`); colour images keep their channels
   beside the grey.
2. A dictionary is learned with K-SVD [1]_ from mean-removed patches of the
   good images' working images (all scales).
3. Every patch of a strided grid, at every scale, is described by the
   sparse model (coding residual and code l1 norm [2]_) and by local features
   (contrast, level, structure-tensor orientation, oriented line filters,
   dark and bright top-hats; chromaticity for colour images).
4. The density model (:mod:`spmcli.inspection.density`) standardises each
   feature by the good patches' median and spread; each *expert* (by default
   the joint model of all features, a one-sided model of the line features
   a model of the sparse model's residual and code [2]_, and for colour
   images one of the colour features) keeps a seeded,
   thinned bank of good descriptors per scale and measures a patch's distance
   to the nearest one, divided by a high quantile of held-out good patches'
   distances; a patch's anomaly is the largest.
   For aligned images (``mode="aligned"``, or chosen by ``"auto"``) features
   are first compared with the good images at the same position.
5. The anomaly map spreads each patch's anomaly over its pixels (averaging
   overlaps), averages the scales and is brought to the input's size. Its
   unit: an expert's distance to the nearest good descriptor over that of
   the rarest held-out good patches (good images stay mostly below 1).
6. The image score is a soft maximum of the map (its power mean, exponent
   ``settings.score_power``, 8 by default). The image threshold is a high
   quantile of the scores of held-out good images, the *pixel* threshold the
   same quantile of their maps' maxima (:mod:`spmcli.inspection.calibration`).
7. An anomalous image's regions are the connected components of its map
   above the pixel threshold, each explained by the feature that sets its
   worst patch apart (:mod:`spmcli.inspection.regions`). When a deviation is
   spread too thinly for any pixel to pass the pixel threshold, the regions
   are cut at the image threshold instead and say so ("spread out"). An image
   that is not anomalous has no regions.

Per-image work in :func:`fit_detector` (working images of each good image,
their features, the scores of the calibration images) goes through a
``map_function`` with the signature of the builtin :func:`map`, so a process
pool or a cluster can run it; the result is the same whichever runs it.

References
----------
.. [1] M. Aharon, M. Elad and A. Bruckstein, "K-SVD: An Algorithm for Designing
       Overcomplete Dictionaries for Sparse Representation", IEEE Trans. Signal
       Processing 54(11), 2006.
.. [2] D. Carrera, F. Manganini, G. Boracchi and E. Lanzarone, "Defect
       detection in SEM images of nanofibrous materials", IEEE Trans.
       Industrial Informatics 13(2), 2017.
.. [3] K. Roth et al., "Towards Total Recall in Industrial Anomaly Detection",
       CVPR 2022 (nearest-neighbour scoring against a memory bank).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from itertools import repeat
from typing import Any

import numpy as np

from ..metrics import psnr, ssim
from ..sparse.dictionary import Dictionary
from ..sparse.learning import learn_dictionary
from ..sparse.patches import PatchGrid
from .calibration import calibrated_threshold, check_calibration_count, image_score, split_calibration
from .density import (
    Expert,
    PositionModel,
    ScaleModel,
    fit_expert,
    group_folds,
    leave_one_out_share,
    position_model,
    robust_location_spread,
)
from .features import (
    ScaleFeatures,
    detector_planes,
    feature_names,
    grey_plane,
    has_colour,
    minimum_side,
    scale_features,
    uses_colour,
    working_pyramid,
)
from .regions import Region, describe_deviation, describe_orientation, label_regions
from .settings import MODES, POLARITIES, DetectorSettings, expert_groups

__all__ = [
    "DETECTOR_VERSION",
    "MODES",
    "POLARITIES",
    "Detector",
    "DetectorSettings",
    "ImageScore",
    "NoDetectorError",
    "Region",
    "calibrated_threshold",
    "fit_detector",
    "minimum_side",
    "split_calibration",
]

DETECTOR_VERSION = 6
# Format 6 added the colour features (format-5 models have none and score
# as before). Format 4 (the image score was the map's maximum) is still read: its
# thresholds are those of the maximum, so it is scored with score_power inf.
OLDEST_READABLE_VERSION = 4
# Prefix of the explanation of a region cut at the image threshold.
SPREAD_OUT = "spread out (no pixel above the pixel threshold): "

MapFunction = Callable[..., Iterable[Any]]


class NoDetectorError(ValueError):
    """A dictionary file without (usable) detector statistics and calibration."""


@dataclass
class ImageScore:
    """The detector's verdict material for one image.

    Attributes
    ----------
    score : float
        Anomaly score: the power mean of the anomaly map with exponent
        ``settings.score_power`` (finite; larger is more anomalous; same unit
        as the map, at most ``peak``).
    threshold : float
        The image threshold it is compared with (calibrated, or given).
    is_anomaly : bool
        ``score > threshold``.
    pixel_threshold : float
        Map value above which a pixel of an anomalous image counts as
        defective (calibrated on the good images' map maxima, or given).
    regions : list of Region
        Anomalous images only: connected components of the map above
        ``region_level``, strongest first (at most
        :data:`spmcli.inspection.regions.MAX_REGIONS`); at least one.
    peak : float
        The map's maximum.
    region_level : float or None
        The map level the regions (and the defect mask) are cut at:
        ``pixel_threshold``, or ``threshold`` when the map of an anomalous
        image is nowhere above the pixel threshold (a deviation spread out);
        None for an image that is not anomalous (no regions, empty mask).
    anomaly_map : ndarray of float32 or None
        ``(H, W)`` like the input (``with_map=True`` only). Unit: the
        anomaly of the patches covering a pixel, each its largest expert
        distance to the nearest good descriptors over the
        ``held_out_quantile`` of held-out good patches' (mostly below 1 for
        good images).
    max_patch_error : float
        Largest RMS coding residual of a patch (finest scale, in units of the
        image's level).
    psnr, ssim : float
        Of the sparse reconstruction of the finest working image (blurred,
        downscaled, grey); NaN unless ``with_quality=True``. Not used for the
        decision.
    """

    score: float
    threshold: float
    is_anomaly: bool
    pixel_threshold: float
    regions: list[Region] = field(default_factory=list)
    peak: float = 0.0
    region_level: float | None = None
    anomaly_map: np.ndarray | None = None
    max_patch_error: float = 0.0
    psnr: float = float("nan")
    ssim: float = float("nan")


@dataclass
class _ScaleResult:
    grid: PatchGrid
    values: np.ndarray  # raw features (F, rows, cols)
    descriptors: np.ndarray  # (rows * cols, F)
    anomaly: np.ndarray  # (rows, cols)
    expert: np.ndarray  # (rows * cols,) index of the expert that gave the anomaly
    nearest: np.ndarray  # (rows * cols,) that expert's nearest bank row


def _average_patches(grid: PatchGrid, patch_values: np.ndarray) -> np.ndarray:
    """Spread one value per patch over its footprint, averaging overlaps."""
    size = grid.patch_size
    height, width = grid.image_shape[:2]
    # Integral image of the per-patch values placed at their corners: every
    # pixel sums the patches whose top-left corner lies in the size x size
    # block above-left of it. The table starts with size zero rows and
    # columns, so that block's sum is four slices for every pixel at once.
    table = np.zeros((height + size, width + size))
    rows, cols = np.meshgrid(grid.rows + size, grid.cols + size, indexing="ij")
    table[rows, cols] = patch_values.reshape(rows.shape)  # grid corners are distinct
    table = table.cumsum(0).cumsum(1)
    inner = (slice(size, size + height), slice(size, size + width))
    top, left = slice(0, height), slice(0, width)
    sums = table[inner] - table[top, inner[1]] - table[inner[0], left] + table[top, left]

    # The number of patches over a pixel is the product of those over its row and its column.
    def coverage(starts: np.ndarray, length: int) -> np.ndarray:
        marks = np.zeros(length + size)
        marks[starts + size] = 1.0
        running = marks.cumsum()
        return running[size : size + length] - running[:length]

    counts = np.outer(coverage(grid.rows, height), coverage(grid.cols, width))
    return sums / np.maximum(counts, 1.0)


def _resize_linear(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``skimage.transform.resize(image, shape, order=1, mode="edge",
    anti_aliasing=False)`` (to rounding), as two 1-D interpolations: 3x faster
    on anomaly maps, which every image needs twice."""

    def weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # Output pixel centres on input pixel centres (scipy.ndimage's grid mode); edges clamped.
        coords = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
        low = np.floor(coords).astype(np.intp)
        return low, np.minimum(low + 1, n_in - 1), coords - low

    top, bottom, down = weights(image.shape[0], shape[0])
    left, right, across = weights(image.shape[1], shape[1])
    rows = image[top] * (1 - down)[:, None] + image[bottom] * down[:, None]
    return rows[:, left] * (1 - across) + rows[:, right] * across


# What each polarity ignores: feature -> +1 (values above the good level do
# not count) or -1 (values below it do not).
_IGNORED_BY_POLARITY = {
    "both": {},
    "dark": {"intensity": 1.0, "bright_lines": 1.0, "bright_spots": 1.0},
    "bright": {"intensity": -1.0, "dark_lines": 1.0, "dark_spots": 1.0},
}


def _polarity_clip(names: Sequence[str], polarity: str) -> np.ndarray:
    """Per feature: -1 ignores deviations below the good level, +1 above, 0 none."""
    ignored = _IGNORED_BY_POLARITY[polarity]
    return np.array([ignored.get(name, 0.0) for name in names])


@dataclass
class Detector:
    """A fitted detector: atoms, the model of good patches at every scale,
    and the calibrated thresholds.

    Attributes
    ----------
    atoms : ndarray, shape (n_atoms, patch_size**2)
    patch_size : int
    settings : DetectorSettings
        As used: ``downscale`` resolved; ``mode`` as requested (may be ``"auto"``, see ``mode``).
    mode : {"pooled", "aligned"}
        The mode in use.
    mode_reason : str
        Why that mode (for the report).
    scales : list of ScaleModel
        One per working scale.
    image_shape : tuple of int
        Aligned mode: the training size other sizes are resized to;
        ``(0, 0)`` in pooled mode.
    threshold : float
        Image threshold (scores above it are anomalous).
    pixel_threshold : float
        Map threshold for the regions and masks of anomalous images.
    threshold_method : str
        How the threshold was chosen (for reports).
    calibration_scores : ndarray
        Scores of the calibration images.
    calibration_peaks : ndarray
        Their maps' maxima (the pixel threshold's sample).
    """

    atoms: np.ndarray
    patch_size: int
    settings: DetectorSettings
    mode: str
    mode_reason: str
    scales: list[ScaleModel]
    image_shape: tuple[int, int] = (0, 0)
    threshold: float = float("inf")
    pixel_threshold: float = float("inf")
    threshold_method: str = ""
    calibration_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    calibration_peaks: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def feature_names(self) -> tuple[str, ...]:
        return feature_names(self.settings.features)

    # -- scoring -------------------------------------------------------------------
    def _levels(self, pixels: np.ndarray) -> list[np.ndarray]:
        shape = tuple(self.image_shape) if self.mode == "aligned" else None
        planes = detector_planes(pixels, shape, uses_colour(self.settings))  # type: ignore[arg-type]
        return working_pyramid(planes, self.settings, self.patch_size)

    def image_features(self, pixels: np.ndarray) -> list[ScaleFeatures]:
        """The patch features of every working scale of an image (the first half of :meth:`score`)."""
        return self._features(self._levels(pixels), with_quality=False)

    def _features(self, levels: list[np.ndarray], with_quality: bool) -> list[ScaleFeatures]:
        return [
            scale_features(
                level, self.atoms, self.patch_size, self.settings, keep_reconstruction=with_quality and not i
            )
            for i, level in enumerate(levels)
        ]

    def _scale_result(self, scale: int, features: ScaleFeatures) -> _ScaleResult:
        model = self.scales[scale]
        if model.positions is not None and features.values.shape != model.positions.mean.shape:
            raise ValueError("image grid does not match the aligned detector's (a bug: sizes are normalised)")
        descriptors = model.descriptors(features.values, _polarity_clip(self.feature_names, self.settings.polarity))
        anomaly, expert, nearest = model.anomaly(descriptors, self.settings.n_neighbours)
        anomaly = anomaly.reshape(features.values.shape[1:])
        return _ScaleResult(features.grid, features.values, descriptors, anomaly, expert, nearest)

    def score(
        self,
        pixels: np.ndarray,
        *,
        with_map: bool = False,
        with_quality: bool = False,
        threshold: float | None = None,
        pixel_threshold: float | None = None,
    ) -> ImageScore:
        """Score one image.

        Parameters
        ----------
        pixels : ndarray, shape (H, W) or (H, W, C)
            On the 0..1 scale; colour is converted to grey.
        with_map : bool
            Return the anomaly map (the regions are found either way).
        with_quality : bool
            Compute PSNR/SSIM of the reconstruction (NaN otherwise).
        threshold : float, optional
            Use this image threshold instead of the calibrated one.
        pixel_threshold : float, optional
            Cut the regions (and masks) of an anomalous image at this map
            level instead of the calibrated pixel threshold.

        Returns
        -------
        ImageScore
        """
        original_shape = np.asarray(pixels).shape[:2]
        levels = self._levels(pixels)
        features = self._features(levels, with_quality)
        quality = (float("nan"), float("nan"))
        if with_quality:
            rebuilt = _rebuild(features[0].grid, features[0].reconstruction)
            grey = grey_plane(levels[0])
            quality = (min(psnr(grey, rebuilt), 100.0), ssim(grey, rebuilt))
        result = self.score_features(
            features, original_shape, with_map=with_map, threshold=threshold, pixel_threshold=pixel_threshold
        )
        result.psnr, result.ssim = quality
        return result

    def score_features(
        self,
        features: list[ScaleFeatures],
        original_shape: tuple[int, int],
        *,
        with_map: bool = False,
        threshold: float | None = None,
        pixel_threshold: float | None = None,
    ) -> ImageScore:
        """Score an image from its :meth:`image_features` (the second half of :meth:`score`)."""
        used_threshold = self.threshold if threshold is None else float(threshold)
        used_pixel_threshold = self.pixel_threshold if pixel_threshold is None else float(pixel_threshold)
        results: list[_ScaleResult] = []
        working_map = np.zeros(features[0].grid.image_shape[:2])
        for scale, scale_features_ in enumerate(features):
            result = self._scale_result(scale, scale_features_)
            results.append(result)
            scale_map = _average_patches(result.grid, result.anomaly)
            if scale_map.shape != working_map.shape:
                scale_map = _resize_linear(scale_map, working_map.shape)
            working_map += scale_map / len(features)
        max_error = float(features[0].residual_rms.max())
        anomaly_map = _resize_linear(working_map, original_shape).astype(np.float32)
        peak = image_score(anomaly_map, math.inf)
        score = image_score(anomaly_map, self.settings.score_power)
        is_anomaly = score > used_threshold
        regions: list[Region] = []
        region_level = None
        if is_anomaly:
            # Spread out when no pixel passes the pixel threshold; some pass the
            # image threshold, since peak >= score > used_threshold.
            spread_out = peak <= used_pixel_threshold
            region_level = used_threshold if spread_out else used_pixel_threshold
            regions = self._regions(anomaly_map, region_level, results, original_shape)
            if spread_out:
                regions = [replace(region, explanation=SPREAD_OUT + region.explanation) for region in regions]
        return ImageScore(
            score=score,
            threshold=used_threshold,
            is_anomaly=is_anomaly,
            pixel_threshold=used_pixel_threshold,
            regions=regions,
            peak=peak,
            region_level=region_level,
            anomaly_map=anomaly_map if with_map else None,
            max_patch_error=max_error,
        )

    def is_anomaly(self, score: float, threshold: float | None = None) -> bool:
        """Whether ``score`` is above the (calibrated or given) threshold."""
        return bool(score > (self.threshold if threshold is None else threshold))

    # -- explanations ------------------------------------------------------------------
    def _regions(
        self,
        anomaly_map: np.ndarray,
        pixel_threshold: float,
        results: list[_ScaleResult],
        original_shape: tuple[int, int],
    ) -> list[Region]:
        regions = []
        for mask, bbox in label_regions(anomaly_map, pixel_threshold):
            x0, y0, x1, y1 = bbox
            values = anomaly_map[y0:y1, x0:x1][mask]
            feature, explanation = self._explain(mask, bbox, results, original_shape)
            regions.append(
                Region(
                    bbox=(int(x0), int(y0), int(x1), int(y1)),
                    area=int(mask.sum()),
                    peak=float(values.max()),
                    mean=float(values.mean()),
                    feature=feature,
                    explanation=explanation,
                )
            )
        return regions

    def _worst_patch(
        self, mask: np.ndarray, bbox: tuple[int, ...], results: list[_ScaleResult], original_shape: tuple[int, int]
    ) -> tuple[int, int]:
        """(scale, flat patch index) of the most anomalous patch centred in the region."""
        x0, y0 = bbox[0], bbox[1]
        best = (-1.0, 0, 0)
        fallback = (np.inf, 0, 0)
        peak_y, peak_x = np.unravel_index(np.argmax(mask), mask.shape)
        for scale, result in enumerate(results):
            factor_y = original_shape[0] / result.grid.image_shape[0]
            factor_x = original_shape[1] / result.grid.image_shape[1]
            half = self.patch_size / 2
            centre_y = ((result.grid.rows + half) * factor_y).astype(int) - y0
            centre_x = ((result.grid.cols + half) * factor_x).astype(int) - x0
            inside_y = (centre_y >= 0) & (centre_y < mask.shape[0])
            inside_x = (centre_x >= 0) & (centre_x < mask.shape[1])
            grid_y, grid_x = np.meshgrid(np.where(inside_y)[0], np.where(inside_x)[0], indexing="ij")
            if grid_y.size:
                inside = mask[centre_y[grid_y], centre_x[grid_x]]
                if inside.any():
                    values = result.anomaly[grid_y[inside], grid_x[inside]]
                    pick = int(np.argmax(values))
                    if values[pick] > best[0]:
                        flat = grid_y[inside][pick] * result.grid.cols.size + grid_x[inside][pick]
                        best = (float(values[pick]), scale, int(flat))
            if scale == 0:
                distance_y = np.abs(centre_y - peak_y)
                distance_x = np.abs(centre_x - peak_x)
                row, col = int(np.argmin(distance_y)), int(np.argmin(distance_x))
                fallback = (0.0, 0, row * result.grid.cols.size + col)
        return (best[1], best[2]) if best[0] >= 0 else (fallback[1], fallback[2])

    def _explain(
        self, mask: np.ndarray, bbox: tuple[int, ...], results: list[_ScaleResult], original_shape: tuple[int, int]
    ) -> tuple[str, str]:
        scale, flat = self._worst_patch(mask, bbox, results, original_shape)
        result, model = results[scale], self.scales[scale]
        names = self.feature_names
        # The expert that fired, and the feature it watches that sets the
        # patch furthest apart from that expert's nearest good patch.
        expert = model.experts[int(result.expert[flat])]
        neighbour = result.descriptors[flat].copy()
        neighbour[expert.columns] = expert.bank[result.nearest[flat]]
        delta = np.zeros(len(names))
        delta[expert.columns] = result.descriptors[flat][expert.columns] - neighbour[expert.columns]
        index = int(np.argmax(np.abs(delta)))
        name = names[index]
        row, col = divmod(flat, result.grid.cols.size)
        query_values = result.values[:, row, col]
        aligned = model.positions is not None
        if aligned:
            # The reference is the good images' mean at this position.
            reference_values = model.positions.mean[:, row, col] * model.spread + model.location
        else:
            reference_values = neighbour * model.spread + model.location
        if name.startswith("orientation_"):
            first = names.index("orientation_x")
            pair = slice(first, first + 2)
            return describe_orientation(query_values[pair], reference_values[pair], aligned)
        return describe_deviation(name, float(query_values[index]), float(reference_values[index]), aligned)

    # -- persistence -----------------------------------------------------------------
    def to_extras(self) -> dict[str, np.ndarray]:
        """The detector's state as ``Dictionary.extras`` arrays (numbers and text only)."""
        import json

        extras = {
            "detector_version": np.array(DETECTOR_VERSION, dtype=np.int64),
            "detector_settings": np.array(json.dumps(self.settings.to_record(), sort_keys=True)),
            "detector_mode": np.array(self.mode),
            "detector_mode_reason": np.array(self.mode_reason),
            "detector_image_shape": np.array(self.image_shape, dtype=np.int64),
            "detector_threshold": np.array(self.threshold, dtype=np.float64),
            "detector_pixel_threshold": np.array(self.pixel_threshold, dtype=np.float64),
            "detector_threshold_method": np.array(self.threshold_method),
            "detector_calibration_scores": np.asarray(self.calibration_scores, dtype=np.float64),
            "detector_calibration_peaks": np.asarray(self.calibration_peaks, dtype=np.float64),
        }
        for scale, model in enumerate(self.scales):
            extras[f"detector_location_{scale}"] = np.asarray(model.location, dtype=np.float64)
            extras[f"detector_spread_{scale}"] = np.asarray(model.spread, dtype=np.float64)
            extras[f"detector_normalisers_{scale}"] = np.array([e.normaliser for e in model.experts], dtype=np.float64)
            for expert in model.experts:
                extras[f"detector_bank_{scale}_{expert.name}"] = np.asarray(expert.bank, dtype=np.float64)
            if model.positions is not None:
                extras[f"detector_position_mean_{scale}"] = np.asarray(model.positions.mean, dtype=np.float64)
                extras[f"detector_position_spread_{scale}"] = np.asarray(model.positions.spread, dtype=np.float64)
        return extras

    @classmethod
    def from_dictionary(cls, dictionary: Dictionary) -> Detector:
        """Rebuild the detector stored in a dictionary's extras.

        Raises
        ------
        NoDetectorError
            When the dictionary has no detector state, one from another
            detector format, or an inconsistent one.
        """
        return _detector_from_extras(dictionary)


def _rebuild(grid: PatchGrid, patches: np.ndarray) -> np.ndarray:
    """Overlap-average coded grey patches into an image (for PSNR/SSIM)."""
    size = grid.patch_size
    height, width = grid.image_shape[:2]
    offsets = np.arange(size)
    rows = (grid.rows[:, None] + offsets)[:, None, :, None]
    cols = (grid.cols[:, None] + offsets)[None, :, None, :]
    targets = (rows * width + cols).ravel()
    block = np.asarray(patches, dtype=np.float64).reshape(grid.rows.size, grid.cols.size, size, size)
    total = np.bincount(targets, weights=block.ravel(), minlength=height * width)
    weight = np.bincount(targets, minlength=height * width)
    return (total / np.maximum(weight, 1)).reshape(height, width)


def _detector_from_extras(dictionary: Dictionary) -> Detector:
    import json

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
        experts = _expert_columns(settings)
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
    return Detector(
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


# -- learning (the mapped functions are top-level so that process pools can pickle them) --


def _expert_columns(settings: DetectorSettings) -> list[tuple[str, np.ndarray]]:
    """Each expert's name and the descriptor columns (features) it watches."""
    names = feature_names(settings.features)
    found = []
    for name, groups in expert_groups(settings.experts, settings.features):
        watched = set(feature_names(groups))
        found.append((name, np.array([i for i, feature in enumerate(names) if feature in watched], dtype=np.int64)))
    return found


def image_levels(
    pixels: np.ndarray, settings: DetectorSettings, patch_size: int, image_shape: tuple[int, int] | None
) -> list[np.ndarray]:
    """Working images of one good image (the first per-image stage of learning)."""
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


def _choose_mode(
    settings: DetectorSettings, shapes: list[tuple[int, ...]], features: list[list[np.ndarray]] | None
) -> tuple[str, str]:
    if settings.mode != "auto":
        return settings.mode, f"{settings.mode} mode requested"
    if len(set(shapes)) > 1:
        return "pooled", "the good images differ in size, so positions do not correspond"
    if len(shapes) < 3:
        return "pooled", "too few good images to compare positions (fewer than 3)"
    assert features is not None
    shares = []
    for scale in range(len(features[0])):
        stack = np.stack([per_image[scale] for per_image in features])
        flat = stack.transpose(1, 0, 2, 3).reshape(stack.shape[1], -1).T
        location, spread = robust_location_spread(flat)
        shares.append(leave_one_out_share((stack - location[None, :, None, None]) / spread[None, :, None, None]))
    share = float(np.mean(shares))
    verdict = ">=" if share >= settings.aligned_min_share else "<"
    mode = "aligned" if share >= settings.aligned_min_share else "pooled"
    return mode, (
        f"the position explains {100 * share:.0f}% of the feature variance of held-out good images "
        f"({verdict} {100 * settings.aligned_min_share:.0f}%)"
    )


def fit_scale_models(
    per_scale: list[list[np.ndarray]], mode: str, settings: DetectorSettings, seed: int
) -> list[ScaleModel]:
    """The model of good patches at each scale from the good images' raw
    features ``per_scale[scale][image]`` ``(F, rows, cols)``."""
    names = feature_names(settings.features)
    clip = _polarity_clip(names, settings.polarity)
    experts = _expert_columns(settings)
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
        Defaults: ``DetectorSettings()`` (mode ``"auto"``).
    patch_size, n_atoms, n_iterations, method, init, max_patches
        Dictionary learning, as in :func:`spmcli.sparse.learning.learn_dictionary`
        (sparsity is ``settings.sparsity``).
    seed : int
        Seeds patch sampling, K-SVD and the thinning of the memory bank.
    callback : callable, optional
        ``callback(stage, done, total)`` with stage ``"prepare"`` and
        ``"features"`` (good images), ``"learn"`` (K-SVD iterations) and
        ``"calibrate"`` (calibration images).
    map_function : callable
        Runs the per-image stages; the builtin :func:`map` (default) or any
        function of the same signature, such as
        ``concurrent.futures.ProcessPoolExecutor(...).map``. It is called with
        top-level functions and picklable arguments; the model is the same
        whichever runs them.

    Returns
    -------
    dictionary : Dictionary
        With the detector's state in ``extras`` and a ``detector`` record in
        ``metadata`` (mode, why, settings, counts, thresholds).
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
    forced_aligned = settings.mode == "aligned"
    image_shape = shapes[0] if forced_aligned else None
    levels = list(
        _reporting(
            map_function(image_levels, good_images, repeat(settings), repeat(patch_size), repeat(image_shape)),
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
    features = list(
        _reporting(
            map_function(image_features, levels, repeat(dictionary.atoms), repeat(patch_size), repeat(settings)),
            "features",
            len(levels),
            callback,
        )
    )
    del levels
    mode, reason = _choose_mode(settings, shapes, features)
    if mode == "aligned" and image_shape is None:
        image_shape = shapes[0]
    names = feature_names(settings.features)
    scales = fit_scale_models(
        [[image[scale] for image in features] for scale in range(settings.n_scales)], mode, settings, seed
    )
    del features
    detector = Detector(
        atoms=dictionary.atoms,
        patch_size=patch_size,
        settings=settings,
        mode=mode,
        mode_reason=reason,
        scales=scales,
        image_shape=tuple(image_shape) if image_shape is not None else (0, 0),  # type: ignore[arg-type]
    )
    scores_and_peaks = list(
        _reporting(
            map_function(calibration_score, repeat(detector), calibration_images),
            "calibrate",
            len(calibration_images),
            callback,
        )
    )
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
        "settings": settings.to_record(),
        "requested_settings": requested.to_record(),
        "features": list(names),
        "n_good_images": len(good_images),
        "n_calibration_images": len(calibration_images),
        "experts": [expert.name for expert in scales[0].experts],
        "bank_sizes": [[int(expert.bank.shape[0]) for expert in model.experts] for model in scales],
        "expert_normalisers": [[round(expert.normaliser, 4) for expert in model.experts] for model in scales],
        "threshold": detector.threshold,
        "pixel_threshold": detector.pixel_threshold,
        "threshold_method": detector.threshold_method,
    }
    return dictionary, detector
