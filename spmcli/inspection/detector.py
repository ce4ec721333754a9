"""Defect detection learned from good images only: the fitted detector, its
scores, maps and regions. Learning it is :mod:`spmcli.inspection.fitting`;
its state in a dictionary file, :mod:`spmcli.inspection.detector_file`.

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
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ..metrics import psnr, ssim
from ..sparse.dictionary import Dictionary
from ..sparse.patches import PatchGrid
from .calibration import calibrated_threshold, image_score, split_calibration
from .density import ScaleModel
from .detector_file import DETECTOR_VERSION, NoDetectorError, detector_extras, detector_fields
from .features import (
    ScaleFeatures,
    detector_planes,
    feature_names,
    grey_plane,
    minimum_side,
    scale_features,
    size_difference,
    uses_colour,
    working_pyramid,
)
from .grid_resampling import model_grids, resample_features, resize_for_alignment
from .regions import Region, describe_deviation, describe_orientation, label_regions
from .settings import MODES, POLARITIES, DetectorSettings

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
    "minimum_side",
    "split_calibration",
]

# Prefix of the explanation of a region cut at the image threshold.
SPREAD_OUT = "spread out (no pixel above the pixel threshold): "


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


def _anomaly_map(grids: list[PatchGrid], anomalies: list[np.ndarray], original_shape: tuple[int, int]) -> np.ndarray:
    """The anomaly map at the input's size: each scale's patch anomalies
    spread over their pixels, brought to the finest working image and averaged."""
    working_map = np.zeros(grids[0].image_shape[:2])
    for grid, anomaly in zip(grids, anomalies, strict=True):
        scale_map = _average_patches(grid, anomaly)
        if scale_map.shape != working_map.shape:
            scale_map = _resize_linear(scale_map, working_map.shape)
        working_map += scale_map / len(grids)
    return _resize_linear(working_map, original_shape).astype(np.float32)


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


def polarity_clip(names: Sequence[str], polarity: str) -> np.ndarray:
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
        Aligned mode: the training size (that of the good image closest
        to the median size, :func:`~spmcli.inspection.fitting.aligned_size`);
        other sizes are read at the positions that correspond in proportion
        (:meth:`model_features`), resized to it first when more than
        ``NEAR_SIZE`` off; ``(0, 0)`` in pooled mode.
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

    @property
    def training_size(self) -> list[int] | None:
        """An aligned detector's training size as [width, height] (for records); None in pooled mode."""
        return [int(self.image_shape[1]), int(self.image_shape[0])] if self.mode == "aligned" else None

    # -- scoring -------------------------------------------------------------------
    def _levels(self, pixels: np.ndarray) -> list[np.ndarray]:
        resize_to = None
        if self.mode == "aligned":
            height, width = np.shape(pixels)[:2]
            resize_to = resize_for_alignment((height, width), tuple(self.image_shape))
            if resize_to is not None:
                shape = tuple(self.image_shape)
                warnings.warn(
                    f"the image is {width}x{height} pixels, {100 * size_difference((height, width), shape):.0f}% "
                    f"off the aligned detector's {shape[1]}x{shape[0]}: it was resized to that, so its positions "
                    "may not match the good images'",
                    UserWarning,
                    stacklevel=3,
                )
        planes = detector_planes(pixels, resize_to, uses_colour(self.settings))
        return working_pyramid(planes, self.settings, self.patch_size)

    def image_features(self, pixels: np.ndarray) -> list[ScaleFeatures]:
        """The patch features of every working scale of an image, on the
        model's grids (the first half of :meth:`score`)."""
        return self.model_features(self._features(self._levels(pixels), with_quality=False))

    def model_features(self, features: list[ScaleFeatures]) -> list[ScaleFeatures]:
        """An image's features (:func:`scale_features` of its working images)
        on the grids the model compares positions on: an aligned detector
        reads an image of nearly its training size at the positions that
        correspond in proportion (:mod:`spmcli.inspection.grid_resampling`);
        otherwise unchanged."""
        if self.mode != "aligned":
            return features
        return [resample_features(scale, grid) for scale, grid in zip(features, self.model_grids(), strict=True)]

    def model_grids(self) -> list[PatchGrid]:
        """An aligned detector's patch grids (those of its training size)."""
        return model_grids(tuple(self.image_shape), self.patch_size, self.settings)  # type: ignore[arg-type]

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
        descriptors = model.descriptors(features.values, polarity_clip(self.feature_names, self.settings.polarity))
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
            self.model_features(features),
            original_shape,
            with_map=with_map,
            threshold=threshold,
            pixel_threshold=pixel_threshold,
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
        results = [self._scale_result(scale, scale_features_) for scale, scale_features_ in enumerate(features)]
        max_error = float(features[0].residual_rms.max())
        anomaly_map = _anomaly_map(
            [result.grid for result in results], [result.anomaly for result in results], original_shape
        )
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

    def patch_anomalies(self, features: list[ScaleFeatures]) -> list[np.ndarray]:
        """Each scale's patch anomalies ``(rows, cols)`` of an image's :meth:`image_features`."""
        return [self._scale_result(scale, scale_features_).anomaly for scale, scale_features_ in enumerate(features)]

    def window_anomalies(self, scale: int, values: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
        """The anomalies of the patches ``rows`` x ``cols`` of one scale's raw
        features ``values`` ``(F, R, C)`` (the whole grid: aligned mode
        compares each patch with its position)."""
        descriptors = self.scales[scale].descriptors(values, polarity_clip(self.feature_names, self.settings.polarity))
        grid_rows, grid_cols = np.arange(values.shape[1])[rows], np.arange(values.shape[2])[cols]
        index = (grid_rows[:, None] * values.shape[2] + grid_cols[None, :]).ravel()
        anomaly, _, _ = self.scales[scale].anomaly(descriptors[index], self.settings.n_neighbours)
        return anomaly.reshape(grid_rows.size, grid_cols.size)

    def score_anomalies(
        self, features: list[ScaleFeatures], anomalies: list[np.ndarray], original_shape: tuple[int, int]
    ) -> tuple[float, float]:
        """The image score and the map's maximum from each scale's patch
        anomalies on the grids of ``features`` (as :meth:`score_features`)."""
        anomaly_map = _anomaly_map([scale.grid for scale in features], anomalies, original_shape)
        return image_score(anomaly_map, self.settings.score_power), image_score(anomaly_map, math.inf)

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
        """The detector's state as ``Dictionary.extras`` arrays (numbers and text
        only; :mod:`spmcli.inspection.detector_file`)."""
        return detector_extras(self)

    @classmethod
    def from_dictionary(cls, dictionary: Dictionary) -> Detector:
        """Rebuild the detector stored in a dictionary's extras.

        Raises
        ------
        NoDetectorError
            When the dictionary has no detector state, one from another
            detector format, or an inconsistent one.
        """
        return cls(**detector_fields(dictionary))


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
