"""One image through ``spmcli detect``: score it against the detector, explain
its anomalous regions, and write its pictures when asked."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..batch import ProgressCallback, Task
from ..errors import DictionaryFormatError, SpmcliError
from ..inspection.detector import Detector, NoDetectorError
from ..inspection.overlay import anomaly_overlay
from ..inspection.regions import defect_mask
from ..io.images import OUTPUT_MARKER, read_image, write_image
from ._shared import cached_dictionary

__all__ = ["EVALUATION_SIDE", "DetectSettings", "ImageOutputs", "load_detector", "score_image"]

# With --ground-truth-masks, maps and masks are compared at most this many pixels
# a side (block means of maps, block maxima of masks): pixel metrics over hundreds of
# full-size maps would otherwise hold gigabytes in memory.
EVALUATION_SIDE = 256


@dataclass(frozen=True)
class ImageOutputs:
    """Where one image's pictures go (None: not asked for), and its ground-truth mask
    for pixel metrics (None: not evaluated; ``""``: defect-free, no mask file)."""

    anomaly_map: str | None = None
    overlay: str | None = None
    mask: str | None = None
    ground_truth: str | None = None


@dataclass(frozen=True)
class DetectSettings:
    """Everything ``detect`` needs besides the input: the model file and the thresholds in use
    (``pixel_threshold`` None: the calibrated one)."""

    model: str
    threshold: float
    pixel_threshold: float | None = None
    quality: bool = False
    max_pixels: int | None = None


@lru_cache(maxsize=2)
def _detector(path: str) -> Detector:
    try:
        return Detector.from_dictionary(cached_dictionary(path))
    except NoDetectorError as error:
        raise DictionaryFormatError(str(error), path) from None


def load_detector(path: str) -> Detector:
    """The detector stored in a model file, loaded once per process."""
    return _detector(str(path))


def reduce_for_evaluation(values: np.ndarray, reduction: str) -> np.ndarray:
    """``values`` reduced by a whole factor to at most :data:`EVALUATION_SIDE` pixels a
    side, block by block (``"mean"`` for maps, ``"max"`` for masks: a thin crack stays)."""
    factor = max(1, int(np.ceil(max(values.shape) / EVALUATION_SIDE)))
    if factor == 1:
        return values
    height, width = (values.shape[0] // factor) * factor, (values.shape[1] // factor) * factor
    blocks = values[:height, :width].reshape(height // factor, factor, width // factor, factor)
    return blocks.mean(axis=(1, 3)) if reduction == "mean" else blocks.max(axis=(1, 3))


def _ground_truth(path: str, shape: tuple[int, int], max_pixels: int | None) -> np.ndarray:
    mask = read_image(path, max_pixels=max_pixels).pixels
    if mask.shape[:2] != shape:
        raise SpmcliError(f"ground-truth mask is {mask.shape[1]} x {mask.shape[0]}, the image {shape[1]} x {shape[0]}",
                          path)  # fmt: skip
    return (mask != 0) if mask.ndim == 2 else np.any(mask != 0, axis=2)


def score_image(task: Task, settings: DetectSettings, progress: ProgressCallback | None = None) -> dict:
    """Score ``task.input`` (``task.payload``: its :class:`ImageOutputs`); return the record fields.

    With a ground-truth mask, the record also holds ``evaluation_map`` and
    ``evaluation_mask`` (reduced, for pixel metrics; the command removes them
    from the report).
    """
    detector = load_detector(settings.model)
    outputs: ImageOutputs = task.payload or ImageOutputs()
    image = read_image(task.input, max_pixels=settings.max_pixels)
    wants_map = any((outputs.anomaly_map, outputs.overlay, outputs.mask)) or outputs.ground_truth is not None
    result = detector.score(
        image.pixels,
        with_map=wants_map,
        with_quality=settings.quality,
        threshold=settings.threshold,
        pixel_threshold=settings.pixel_threshold,
    )
    if outputs.anomaly_map is not None:
        write_image(outputs.anomaly_map, result.anomaly_map, dtype="float32", marker=OUTPUT_MARKER)
    # Contours and mask follow the reported regions only: an image that is not
    # anomalous has none, even if a pixel passes the pixel threshold.
    if outputs.overlay is not None:
        picture = anomaly_overlay(
            image.pixels,
            result.anomaly_map,
            result.pixel_threshold,
            regions=result.regions,
            contour_level=result.region_level,
        )
        write_image(outputs.overlay, picture, dtype="uint8", marker=OUTPUT_MARKER)
    if outputs.mask is not None:
        if result.region_level is None:
            mask = np.zeros(result.anomaly_map.shape, dtype=bool)
        else:
            mask = defect_mask(result.anomaly_map, result.region_level, regions=result.regions)
        write_image(outputs.mask, mask.astype(np.float64), dtype="uint8", marker=OUTPUT_MARKER)
    fields = {
        "score": result.score,
        "threshold": result.threshold,
        "is_anomaly": result.is_anomaly,
        "pixel_threshold": result.pixel_threshold,
        "peak": result.peak,
        "region_level": result.region_level,
        "n_regions": len(result.regions),
        "regions": [region.to_record() for region in result.regions],
        "anomaly_map": outputs.anomaly_map,
        "overlay": outputs.overlay,
        "mask": outputs.mask,
        "max_patch_error": result.max_patch_error,
    }
    if settings.quality:
        fields.update(psnr=result.psnr, ssim=result.ssim)
    if outputs.ground_truth is not None:
        shape = image.pixels.shape[:2]
        # "" stands for a defect-free image, which has no mask file.
        truth = (
            np.zeros(shape, bool)
            if outputs.ground_truth == ""
            else _ground_truth(outputs.ground_truth, shape, settings.max_pixels)
        )
        fields["evaluation_map"] = reduce_for_evaluation(result.anomaly_map, "mean").astype(np.float32)
        fields["evaluation_mask"] = reduce_for_evaluation(truth, "max")
    return fields
