"""One image through ``spmcli detect``: score it against the detector, and write
its heatmaps when asked."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ..batch import ProgressCallback, Task
from ..errors import DictionaryFormatError
from ..inspection.detector import Detector, NoDetectorError
from ..inspection.report import anomaly_overlay
from ..io.images import OUTPUT_MARKER, read_image, to_grey, write_image
from ._shared import cached_dictionary

__all__ = ["DetectSettings", "HeatmapPaths", "load_detector", "score_image"]


@dataclass(frozen=True)
class HeatmapPaths:
    """Where one image's pictures go (None: not asked for)."""

    anomaly_map: str | None = None
    overlay: str | None = None


@dataclass(frozen=True)
class DetectSettings:
    """Everything ``detect`` needs besides the input: the model file and the threshold in use."""

    model: str
    threshold: float
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


def score_image(task: Task, settings: DetectSettings, progress: ProgressCallback | None = None) -> dict:
    """Score ``task.input`` (``task.payload``: its :class:`HeatmapPaths`); return the record fields."""
    detector = load_detector(settings.model)
    paths: HeatmapPaths = task.payload or HeatmapPaths()
    image = read_image(task.input, max_pixels=settings.max_pixels)
    result = detector.score(image.pixels, with_map=paths.anomaly_map is not None)
    if paths.anomaly_map is not None:
        write_image(paths.anomaly_map, result.anomaly_map.astype("float32"), dtype="float32", marker=OUTPUT_MARKER)
        # Colour from half the threshold (typical of good texture) to the threshold.
        overlay = anomaly_overlay(to_grey(image.pixels), result.anomaly_map, settings.threshold / 2, settings.threshold)
        write_image(paths.overlay, overlay, dtype="uint8", marker=OUTPUT_MARKER)
    return {
        "score": result.score,
        "threshold": settings.threshold,
        "is_anomaly": detector.is_anomaly(result.score, settings.threshold),
        "psnr": result.psnr,
        "ssim": result.ssim,
        "max_patch_error": result.max_patch_error,
        "anomaly_map": paths.anomaly_map,
        "overlay": paths.overlay,
    }
