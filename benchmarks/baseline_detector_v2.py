"""Frozen copy of the detector of the previous release (detector format 2), kept as a
baseline for benchmarks/bench_detect.py. Not part of the package; do not edit.

Defect detection learned from good images only: patch features, anomaly
scores and maps, calibration of the decision threshold.

The detector looks at each image through a small pyramid of grey, blurred
working images (``downscale`` first, then halved ``n_scales - 1`` times) and,
at every scale, at overlapping patches on a strided grid. Each patch gives two
features (three in aligned mode):

structure
    The RMS residual of the mean-removed patch after sparse coding (OMP) over
    a dictionary learned with K-SVD from the good images: cracks, scratches and
    spots that the good texture's atoms cannot express. Taken as a logarithm.
intensity
    The patch mean: broad changes of brightness (dark areas, stains) that
    mean-removed patches cannot see.
lines (aligned mode only)
    The patch mean of a morphological top-hat (closing minus image for dark
    structures, image minus opening for bright ones, both summed for
    ``polarity="both"``) with a 13 x 13 square: thin lines and spots such as
    cracks, which stand out against the fixed layout of aligned images.
    Taken as a logarithm. (On unaligned textures lines are part of the texture
    anywhere, so pooled mode leaves this feature out: it lowered AUROC there.)

Pooled mode (``mode="pooled"``, the default, for unaligned images of any
texture) standardises each feature against all good training patches (median
and MAD); a patch's anomaly is the sum of the positive parts of its z-scores
(intensity on the dark side, the bright side or both, see ``polarity``).
Aligned mode (``mode="aligned"``, for images that are all framed the same way,
such as solar cells or printed labels) keeps, at each grid position, the mean
and the covariance of the feature vector of the good patches there (shrunk
half-way towards the covariance averaged over positions, since a few dozen
images give noisy per-position estimates); a patch's anomaly is the
Mahalanobis distance of its feature vector from that mean, counting only
deviations in the anomalous direction of each feature (more residual, more
line response, intensity per ``polarity``). The image score is, summed over
scales, the mean of the ``top_k`` most anomalous patches. The score is
compared with a threshold chosen from the scores of held-out good images, see
:func:`calibrated_threshold`.

Per-image mean/std normalisation and PSNR/SSIM of the reconstruction are *not*
used for the decision: defective cells have more contrast, and normalising by
it hides them (measured AUROC 0.2-0.3 on ELPV, see BENCHMARKS.md). PSNR and SSIM
are still computed for the report.

The detector's state lives in the dictionary file as ``extra_detector_*``
arrays (numbers and text only), see :meth:`Detector.to_extras`.

References
----------
.. [1] M. Aharon, M. Elad and A. Bruckstein, "K-SVD: An Algorithm for Designing
       Overcomplete Dictionaries for Sparse Representation", IEEE Trans. Signal
       Processing 54(11), 2006.
.. [2] D. Carrera, G. Boracchi, A. Foi and B. Wohlberg, "Detecting anomalous
       structures by convolutional sparse models", IJCNN 2015 (sparse-coding
       residuals and patch statistics standardised against normal data).
.. [3] P. Soille, "Morphological Image Analysis", 2nd ed., Springer 2003,
       section 4.4 (top-hat transforms for thin dark and bright structures).
.. [4] O. Ledoit and M. Wolf, "A well-conditioned estimator for large-dimensional
       covariance matrices", J. Multivariate Analysis 88(2), 2004 (shrinkage).
.. [5] S. Deitsch et al., "Automatic classification of defective photovoltaic
       module cells in electroluminescence images", Solar Energy 185, 2019
       (the ELPV data set).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage, stats
from skimage.transform import downscale_local_mean, resize

from spmcli.io.images import to_grey
from spmcli.metrics import psnr, ssim
from spmcli.sparse.dictionary import Dictionary
from spmcli.sparse.learning import learn_dictionary
from spmcli.sparse.omp import batch_omp
from spmcli.sparse.patches import PatchGrid

__all__ = [
    "DETECTOR_VERSION",
    "MODES",
    "POLARITIES",
    "Detector",
    "DetectorSettings",
    "ImageScore",
    "NoDetectorError",
    "calibrated_threshold",
    "fit_detector",
    "split_calibration",
    "working_pyramid",
]

DETECTOR_VERSION = 2
MODES = ("pooled", "aligned")
POLARITIES = ("both", "dark", "bright")
# Square closing/opening size (working pixels) of the line feature: catches
# dark or bright structures narrower than this (cracks, spots, fingers).
_LINE_SIZE = 13
# Keeps log(top-hat) finite where the top-hat is zero; well below a grey level.
_LINE_FLOOR = 1e-3
# Aligned mode: weight of the position-averaged covariance in each position's
# covariance (shrinkage, [4]); a relative ridge keeps every matrix invertible.
_COVARIANCE_SHRINK = 0.5
_COVARIANCE_RIDGE = 1e-6
# Fewer calibration scores than this: the threshold is the quantile of a
# normal distribution fitted to them (an empirical 0.95 quantile of a handful
# of scores is just their maximum, or below it).
MIN_EMPIRICAL_CALIBRATION = 20
# Keeps log(residual) finite on perfectly coded (flat) patches; 1e-4 is far
# below one grey level (1/255), so it changes nothing on real images.
_RESIDUAL_FLOOR = 1e-4
# Spreads never reach zero (flat training images), so z-scores stay finite.
_SPREAD_FLOOR = 1e-6


class NoDetectorError(ValueError):
    """A dictionary file without detector statistics and calibration."""


@dataclass
class DetectorSettings:
    """How images are turned into patch features and scores.

    Attributes
    ----------
    mode : {"pooled", "aligned"}
        Feature statistics pooled over positions (any texture, any image size)
        or kept per grid position (aligned images; other sizes are resized to
        the training size).
    downscale : int
        Integer factor by which images are first reduced (area average).
    blur_sigma : float
        Gaussian blur of each working image, in working pixels: suppresses
        sensor noise and fine grain the decision should not depend on.
    n_scales : int
        Working scales (each half the previous).
    stride : int
        Step of the patch grid, in working pixels.
    sparsity : int
        Atoms per patch when coding.
    top_k : int
        The image score averages this many most anomalous patches per scale.
    polarity : {"both", "dark", "bright"}
        Which side of the intensity distribution counts as anomalous.
    threshold_quantile : float
        The threshold is this quantile of the calibration scores (see
        :func:`calibrated_threshold`): 0.95 means about 5% of good images
        are flagged, by design.
    """

    mode: str = "pooled"
    downscale: int = 2
    blur_sigma: float = 1.0
    n_scales: int = 2
    stride: int = 4
    sparsity: int = 2
    top_k: int = 10
    polarity: str = "both"
    threshold_quantile: float = 0.95

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.polarity not in POLARITIES:
            raise ValueError(f"polarity must be one of {', '.join(POLARITIES)}, got {self.polarity!r}")
        if self.downscale < 1 or self.n_scales < 1 or self.stride < 1 or self.sparsity < 1 or self.top_k < 1:
            raise ValueError("downscale, n_scales, stride, sparsity and top_k must be positive")
        if not 0 < self.threshold_quantile <= 1:
            raise ValueError(f"threshold_quantile must be in (0, 1], got {self.threshold_quantile}")
        if not self.blur_sigma >= 0:
            raise ValueError(f"blur_sigma must be >= 0, got {self.blur_sigma}")


@dataclass
class ImageScore:
    """The detector's verdict material for one image.

    Attributes
    ----------
    score : float
        Anomaly score (finite; larger is more anomalous).
    max_patch_error : float
        Largest RMS reconstruction error of a patch (0..1 grey scale, working scale).
    psnr, ssim : float
        Of the sparse reconstruction against the first working image (blurred,
        downscaled grey); PSNR is capped at 100 dB so it stays finite.
    anomaly_map : ndarray or None
        Per-pixel anomaly, shaped like the input image's first two axes
        (``with_map=True`` only).
    """

    score: float
    max_patch_error: float
    psnr: float
    ssim: float
    anomaly_map: np.ndarray | None = None


def _reduce(image: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return image
    # Crop to a multiple of the factor: downscale_local_mean pads with zeros,
    # which would paint a dark border the detector then flags.
    height, width = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    return downscale_local_mean(image[:height, :width], (factor, factor))


def minimum_side(settings: DetectorSettings, patch_size: int) -> int:
    """Smallest image side (pixels) the detector can score."""
    return patch_size * settings.downscale * 2 ** (settings.n_scales - 1)


def working_pyramid(pixels: np.ndarray, settings: DetectorSettings, patch_size: int) -> list[np.ndarray]:
    """Grey, downscaled, blurred working images, finest first.

    Raises
    ------
    ValueError
        When the image is too small for the coarsest scale's patches.
    """
    grey = to_grey(pixels)
    needed = minimum_side(settings, patch_size)
    if min(grey.shape) < needed:
        raise ValueError(
            f"image is {grey.shape[1]} x {grey.shape[0]} pixels; the detector needs at least {needed} a side"
        )
    levels = []
    current = _reduce(grey, settings.downscale)
    for scale in range(settings.n_scales):
        if scale:
            current = _reduce(current, 2)
        levels.append(ndimage.gaussian_filter(current, settings.blur_sigma) if settings.blur_sigma > 0 else current)
    return levels


def n_features(settings: DetectorSettings) -> int:
    """Features per patch: structure and intensity, plus lines in aligned mode."""
    return 3 if settings.mode == "aligned" else 2


def _line_response(level: np.ndarray, polarity: str) -> np.ndarray:
    """Top-hat of the working image [3]_: dark (closing - image), bright
    (image - opening) or both, for structures narrower than ``_LINE_SIZE``."""
    size = (_LINE_SIZE, _LINE_SIZE)
    response = np.zeros_like(level)
    if polarity in ("dark", "both"):
        response += ndimage.grey_closing(level, size=size, mode="nearest") - level
    if polarity in ("bright", "both"):
        response += level - ndimage.grey_opening(level, size=size, mode="nearest")
    return response


def _patch_means(image: np.ndarray, grid: PatchGrid) -> np.ndarray:
    """Mean of ``image`` over each grid patch, ``(n_rows, n_cols)``."""
    # A box filter of even size p centred at i covers i - p/2 .. i + p/2 - 1,
    # so the patch with top-left corner r is read at r + p // 2.
    box = ndimage.uniform_filter(image, grid.patch_size, mode="nearest")
    half = grid.patch_size // 2
    return box[np.ix_(grid.rows + half, grid.cols + half)]


@dataclass
class _ScaleFeatures:
    grid: PatchGrid
    features: np.ndarray  # (n_features, n_rows, n_cols): log residual, mean[, log line response]
    residual_rms: np.ndarray  # (n_patches,)
    reconstruction: np.ndarray | None  # (n_patches, n_features) with means added back


def _scale_features(
    level: np.ndarray, atoms: np.ndarray, patch_size: int, settings: DetectorSettings, keep_reconstruction: bool
) -> _ScaleFeatures:
    grid = PatchGrid(level.shape, patch_size, settings.stride)
    patches = grid.extract(level)
    means = patches.mean(axis=1)
    centred = patches - means[:, None]
    codes = batch_omp(centred, atoms, sparsity=settings.sparsity, dtype=np.float32)
    residual_rms = np.sqrt(np.maximum(codes.residual_sq.astype(np.float64), 0.0) / patches.shape[1])
    shape = (grid.rows.size, grid.cols.size)
    features = np.stack([np.log(residual_rms + _RESIDUAL_FLOOR), means]).reshape(2, *shape)
    if settings.mode == "aligned":
        lines = _patch_means(_line_response(level, settings.polarity), grid)
        features = np.concatenate([features, np.log(lines + _LINE_FLOOR)[None]])
    reconstruction = None
    if keep_reconstruction:
        reconstruction = np.asarray(codes.reconstruct(atoms), dtype=np.float64) + means[:, None]
    return _ScaleFeatures(grid, features, residual_rms, reconstruction)


def _pooled_statistics(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and MAD-based spread of each feature over images and positions.
    ``stack``: (n_images, 2, n_rows, n_cols) or a list flattened per feature."""
    values = stack.reshape(stack.shape[0], stack.shape[1], -1).transpose(1, 0, 2).reshape(stack.shape[1], -1)
    location = np.median(values, axis=1)
    spread = 1.4826 * np.median(np.abs(values - location[:, None]), axis=1)
    return location, np.maximum(spread, _SPREAD_FLOOR)


@dataclass
class Detector:
    """A fitted detector: dictionary atoms, feature statistics of good patches
    and the calibrated threshold.

    ``location[s]`` and ``spread[s]`` hold, for scale ``s``, the statistics of
    the features: in pooled mode the median and MAD-based spread, shape
    ``(2,)``; in aligned mode the mean ``(3, n_rows, n_cols)`` and the inverse
    of the shrunk covariance at each position, ``(n_rows, n_cols, 3, 3)``.
    ``image_shape`` is the training image size (aligned mode resizes other
    sizes to it; ``(0, 0)`` in pooled mode).
    """

    atoms: np.ndarray
    patch_size: int
    settings: DetectorSettings
    location: list[np.ndarray]
    spread: list[np.ndarray]
    image_shape: tuple[int, int] = (0, 0)
    threshold: float = float("inf")
    threshold_method: str = ""
    calibration_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))

    # -- scoring -------------------------------------------------------------------
    def _prepare(self, pixels: np.ndarray) -> np.ndarray:
        grey = to_grey(pixels)
        if self.settings.mode == "aligned" and grey.shape != tuple(self.image_shape):
            grey = resize(grey, self.image_shape, order=1, anti_aliasing=True, mode="edge")
        return grey

    def _anomalous_deviation(self, deviation: np.ndarray) -> np.ndarray:
        """Keep only deviations in the anomalous direction: more residual, more
        line response, intensity on the ``polarity`` side (both: unchanged)."""
        kept = np.maximum(deviation, 0.0)
        polarity = self.settings.polarity
        if polarity == "dark":
            kept[1] = np.minimum(deviation[1], 0.0)
        elif polarity == "both":
            kept[1] = deviation[1]
        return kept

    def _patch_anomaly(self, scale: int, features: np.ndarray) -> np.ndarray:
        deviation = self._anomalous_deviation(features - _expand(self.location[scale]))
        if self.settings.mode == "pooled":
            return np.abs(deviation / _expand(self.spread[scale])).sum(axis=0)
        # Mahalanobis distance with each position's precision matrix.
        squared = np.einsum("irc,rcij,jrc->rc", deviation, self.spread[scale], deviation)
        return np.sqrt(np.maximum(squared, 0.0))

    def features(self, pixels: np.ndarray) -> list[np.ndarray]:
        """Raw patch features of each scale, ``(n_features, n_rows, n_cols)``: log residual RMS,
        patch mean and, in aligned mode, log line response."""
        levels = working_pyramid(self._prepare(pixels), self.settings, self.patch_size)
        return [_scale_features(level, self.atoms, self.patch_size, self.settings, False).features for level in levels]

    def score(self, pixels: np.ndarray, *, with_map: bool = False, with_quality: bool = True) -> ImageScore:
        """Score one image.

        Parameters
        ----------
        pixels : ndarray, shape (H, W) or (H, W, C)
            On the 0..1 scale; colour is converted to grey.
        with_map : bool
            Also compute the per-pixel anomaly map at the input's size.
        with_quality : bool
            Compute PSNR/SSIM of the reconstruction (NaN otherwise).

        Returns
        -------
        ImageScore
        """
        original_shape = np.asarray(pixels).shape[:2]
        levels = working_pyramid(self._prepare(pixels), self.settings, self.patch_size)
        total = 0.0
        max_error = 0.0
        quality = (float("nan"), float("nan"))
        anomaly_map = np.zeros(original_shape) if with_map else None
        for scale, level in enumerate(levels):
            keep = with_quality and scale == 0
            result = _scale_features(level, self.atoms, self.patch_size, self.settings, keep)
            if self.settings.mode == "aligned" and result.features.shape != self.location[scale].shape:
                raise ValueError("image grid does not match the aligned detector's (a bug: sizes are normalised)")
            anomaly = self._patch_anomaly(scale, result.features)
            flat = np.sort(anomaly.ravel())
            total += float(flat[-min(self.settings.top_k, flat.size) :].mean())
            max_error = max(max_error, float(result.residual_rms.max()))
            if keep:
                rebuilt = _average_patches(result.grid, result.reconstruction)
                quality = (min(psnr(level, rebuilt), 100.0), ssim(level, rebuilt))
            if anomaly_map is not None:
                anomaly_map += _pixel_map(result.grid, anomaly, original_shape)
        score = float(np.nan_to_num(total, nan=0.0, posinf=1e300))
        return ImageScore(score, max_error, quality[0], quality[1], anomaly_map)

    def is_anomaly(self, score: float, threshold: float | None = None) -> bool:
        return bool(score > (self.threshold if threshold is None else threshold))

    # -- persistence -----------------------------------------------------------------
    def to_extras(self) -> dict[str, np.ndarray]:
        """The detector's state as ``Dictionary.extras`` arrays (numbers and text only)."""
        s = self.settings
        extras = {
            "detector_version": np.array(DETECTOR_VERSION, dtype=np.int64),
            "detector_mode": np.array(s.mode),
            "detector_polarity": np.array(s.polarity),
            "detector_ints": np.array([s.downscale, s.n_scales, s.stride, s.sparsity, s.top_k], dtype=np.int64),
            "detector_blur_sigma": np.array(s.blur_sigma, dtype=np.float64),
            "detector_threshold_quantile": np.array(s.threshold_quantile, dtype=np.float64),
            "detector_image_shape": np.array(self.image_shape, dtype=np.int64),
            "detector_threshold": np.array(self.threshold, dtype=np.float64),
            "detector_threshold_method": np.array(self.threshold_method),
            "detector_calibration_scores": np.asarray(self.calibration_scores, dtype=np.float64),
        }
        for scale in range(s.n_scales):
            extras[f"detector_location_{scale}"] = np.asarray(self.location[scale], dtype=np.float64)
            extras[f"detector_spread_{scale}"] = np.asarray(self.spread[scale], dtype=np.float64)
        return extras

    @classmethod
    def from_dictionary(cls, dictionary: Dictionary) -> Detector:
        """Rebuild the detector stored in a dictionary's extras.

        Raises
        ------
        NoDetectorError
            When the dictionary has no (or an inconsistent) detector state.
        """
        extras = dictionary.extras
        if "detector_version" not in extras:
            raise NoDetectorError(
                "this dictionary has no detector calibration; re-run learn-dict with --detector "
                "(or --calibration-images DIR) on good images"
            )
        try:
            version = int(extras["detector_version"])
            if version > DETECTOR_VERSION:
                raise NoDetectorError(f"detector format {version} is newer than this spmcli reads; upgrade spmcli")
            if version < DETECTOR_VERSION:
                raise NoDetectorError(
                    f"detector format {version} is from an older spmcli (features changed); re-run learn-dict"
                )
            downscale, n_scales, stride, sparsity, top_k = (int(v) for v in extras["detector_ints"])
            settings = DetectorSettings(
                mode=str(extras["detector_mode"]),
                downscale=downscale,
                blur_sigma=float(extras["detector_blur_sigma"]),
                n_scales=n_scales,
                stride=stride,
                sparsity=sparsity,
                top_k=top_k,
                polarity=str(extras["detector_polarity"]),
                threshold_quantile=float(extras["detector_threshold_quantile"]),
            )
            location = [np.asarray(extras[f"detector_location_{s}"], dtype=np.float64) for s in range(n_scales)]
            spread = [np.asarray(extras[f"detector_spread_{s}"], dtype=np.float64) for s in range(n_scales)]
            image_shape = tuple(int(v) for v in extras["detector_image_shape"])
            threshold = float(extras["detector_threshold"])
            scores = np.asarray(extras["detector_calibration_scores"], dtype=np.float64)
        except (KeyError, ValueError, TypeError) as error:
            if isinstance(error, NoDetectorError):
                raise
            raise NoDetectorError(
                f"the detector data in this dictionary is incomplete or invalid ({error}); re-run learn-dict"
            ) from None
        count = n_features(settings)
        for loc, spr in zip(location, spread, strict=True):
            if settings.mode == "pooled":
                bad_shape = loc.shape != (count,) or spr.shape != (count,)
            else:
                bad_shape = loc.ndim != 3 or loc.shape[0] != count or spr.shape != (*loc.shape[1:], count, count)
            if bad_shape or not (np.all(np.isfinite(loc)) and np.all(np.isfinite(spr))):
                raise NoDetectorError("the detector statistics in this dictionary are invalid; re-run learn-dict")
        if not np.isfinite(threshold) or len(image_shape) != 2:
            raise NoDetectorError("the detector threshold in this dictionary is invalid; re-run learn-dict")
        return cls(
            atoms=dictionary.atoms,
            patch_size=dictionary.patch_size,
            settings=settings,
            location=location,
            spread=spread,
            image_shape=image_shape,  # type: ignore[arg-type]
            threshold=threshold,
            threshold_method=str(extras.get("detector_threshold_method", "")),
            calibration_scores=scores,
        )


def _expand(statistic: np.ndarray) -> np.ndarray:
    """Broadcast pooled (n_features,) statistics against (n_features, rows, cols) features."""
    return statistic[:, None, None] if statistic.ndim == 1 else statistic


def _average_patches(grid: PatchGrid, patches: np.ndarray) -> np.ndarray:
    """Overlap-average the grey patches of a whole grid into an image.

    Same result as :class:`spmcli.sparse.patches.PatchAverager` for one grey band, as a
    single ``np.bincount`` (a third of the per-image time went to its 64
    fancy-indexed additions).
    """
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


def _pixel_map(grid: PatchGrid, anomaly: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Spread each patch's anomaly over its footprint (averaging overlaps) and
    bring the working-scale map to the input's size."""
    working = _average_patches(grid, np.repeat(anomaly.reshape(-1, 1), grid.n_features, axis=1))
    return resize(working, shape, order=1, mode="edge", anti_aliasing=False)


def _aligned_statistics(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-position mean ``(F, rows, cols)`` and precision ``(rows, cols, F, F)``
    of the features of good images ``stack`` ``(n_images, F, rows, cols)``.

    Each position's covariance is shrunk half-way towards the covariance
    averaged over positions [4]_ and given a small relative ridge, so the
    inverse exists even from a handful of images (or flat ones).
    """
    n_images = stack.shape[0]
    mean = stack.mean(axis=0)
    centred = stack - mean
    covariance = np.einsum("nirc,njrc->rcij", centred, centred) / max(n_images - 1, 1)
    average = covariance.mean(axis=(0, 1))
    shrunk = (1 - _COVARIANCE_SHRINK) * covariance + _COVARIANCE_SHRINK * average
    ridge = _COVARIANCE_RIDGE * max(float(np.trace(average)), _SPREAD_FLOOR) + _SPREAD_FLOOR**2
    shrunk = shrunk + ridge * np.eye(stack.shape[1])
    return mean, np.linalg.inv(shrunk)


def calibrated_threshold(scores: np.ndarray, quantile: float) -> tuple[float, str]:
    """The decision threshold from good images' scores, and how it was chosen.

    With ``MIN_EMPIRICAL_CALIBRATION`` (20) scores or more: their empirical
    ``quantile``. With fewer, an empirical high quantile is just about their
    maximum, so a normal distribution is fitted (mean, standard deviation) and
    its ``quantile`` point taken. A quantile of 1 is always the maximum.

    Returns
    -------
    threshold : float
    method : str
        For the report, e.g. ``"quantile 0.95 of 100 calibration image scores"``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        raise ValueError("no calibration scores")
    if scores.size >= MIN_EMPIRICAL_CALIBRATION or quantile >= 1:
        threshold = float(np.quantile(scores, quantile))
        return threshold, f"quantile {quantile:g} of {scores.size} calibration image scores"
    spread = float(scores.std(ddof=1)) if scores.size > 1 else 0.0
    threshold = float(scores.mean() + stats.norm.ppf(quantile) * spread)
    return threshold, (
        f"quantile {quantile:g} of a normal fit to {scores.size} calibration image scores "
        f"(fewer than {MIN_EMPIRICAL_CALIBRATION})"
    )


def split_calibration(n_images: int, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of ``n_images`` good images into training and calibration indices.

    At least one image goes to each side; needs two images or more.
    """
    if n_images < 2:
        raise ValueError("holding out calibration images needs at least 2 good images (or give calibration images)")
    if not 0 < share < 1:
        raise ValueError(f"calibration share must be between 0 and 1, got {share}")
    n_calibration = min(n_images - 1, max(1, round(share * n_images)))
    order = np.random.default_rng(seed).permutation(n_images)
    return np.sort(order[n_calibration:]), np.sort(order[:n_calibration])


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
) -> tuple[Dictionary, Detector]:
    """Learn a detector from good images and calibrate its threshold.

    The dictionary is learned with K-SVD [1]_ from mean-removed patches of the
    working images (all scales); the feature statistics come from every patch
    of the good images; the calibration images (other good images, never used
    for learning) are scored and the threshold set to the
    ``settings.threshold_quantile`` quantile of their scores.

    Parameters
    ----------
    good_images : sequence of ndarray
        Defect-free images to learn from (0..1, grey or colour).
    calibration_images : sequence of ndarray
        Other defect-free images, for the threshold.
    settings : DetectorSettings, optional
    patch_size, n_atoms, n_iterations, method, init, max_patches, seed
        Dictionary learning, as in :func:`spmcli.sparse.learning.learn_dictionary`
        (sparsity is ``settings.sparsity``).
    callback : callable, optional
        ``callback(stage, done, total)`` with stage ``"learn"`` (K-SVD
        iterations), ``"statistics"`` or ``"calibrate"`` (images).

    Returns
    -------
    dictionary : Dictionary
        With the detector's state in ``extras`` and a ``detector`` record in
        ``metadata``.
    detector : Detector
    """
    settings = settings or DetectorSettings()
    if not good_images:
        raise ValueError("no good images to learn from")
    if not calibration_images:
        raise ValueError("no calibration images")
    image_shape: tuple[int, int] = (0, 0)
    if settings.mode == "aligned":
        image_shape = to_grey(good_images[0]).shape  # type: ignore[assignment]
    report = callback or (lambda stage, done, total: None)

    def prepared(pixels: np.ndarray) -> np.ndarray:
        grey = to_grey(pixels)
        if settings.mode == "aligned" and grey.shape != image_shape:
            grey = resize(grey, image_shape, order=1, anti_aliasing=True, mode="edge")
        return grey

    pyramids = [working_pyramid(prepared(image), settings, patch_size) for image in good_images]
    dictionary = learn_dictionary(
        [level for pyramid in pyramids for level in pyramid],
        patch_size=patch_size,
        n_atoms=n_atoms,
        sparsity=settings.sparsity,
        n_iterations=n_iterations,
        method=method,
        init=init,
        max_patches=max_patches,
        remove_mean=True,
        seed=seed,
        callback=lambda iteration, total, rmse: report("learn", iteration, total),
    )
    per_scale: list[list[np.ndarray]] = [[] for _ in range(settings.n_scales)]
    for index, pyramid in enumerate(pyramids):
        for scale, level in enumerate(pyramid):
            per_scale[scale].append(_scale_features(level, dictionary.atoms, patch_size, settings, False).features)
        report("statistics", index + 1, len(pyramids))
    location, spread = [], []
    for scale_features in per_scale:
        if settings.mode == "pooled":
            # Benchmark patch (the only change to the release): pool images of
            # different sizes by flattening each, instead of np.stack, which
            # crashed on them (issue 12).
            stack = np.concatenate([f.reshape(f.shape[0], -1) for f in scale_features], axis=1)[None]
            loc, spr = _pooled_statistics(stack)
            spr = np.maximum(spr, _SPREAD_FLOOR)
        else:
            loc, spr = _aligned_statistics(np.stack(scale_features))
        location.append(loc)
        spread.append(spr)
    detector = Detector(dictionary.atoms, patch_size, settings, location, spread, image_shape)
    scores = []
    for index, image in enumerate(calibration_images):
        scores.append(detector.score(image, with_quality=False).score)
        report("calibrate", index + 1, len(calibration_images))
    detector.calibration_scores = np.asarray(scores)
    detector.threshold, detector.threshold_method = calibrated_threshold(
        detector.calibration_scores, settings.threshold_quantile
    )
    dictionary.extras.update(detector.to_extras())
    dictionary.metadata["detector"] = {
        "mode": settings.mode,
        "n_good_images": len(good_images),
        "n_calibration_images": len(calibration_images),
        "threshold": detector.threshold,
        "threshold_method": detector.threshold_method,
    }
    return dictionary, detector
