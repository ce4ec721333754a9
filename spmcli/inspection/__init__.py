"""Defect inspection: a detector learned from good images only (features,
density model of good patches, calibration), its anomaly scores, maps and
explained regions, pictures (overlay, mask), evaluation on labelled images,
and reports (JSON/CSV).

Built on the sparse core; knows nothing of the command line.
"""

from .._lazy import lazy_attributes

_EXPORTS = {
    "Detector": "detector",
    "DetectorSettings": "settings",
    "ImageScore": "detector",
    "NoDetectorError": "detector",
    "Region": "regions",
    "fit_detector": "detector",
    "defect_mask": "regions",
    "anomaly_overlay": "overlay",
    "image_metrics": "evaluation",
    "pixel_auroc": "evaluation",
    "aupro": "evaluation",
    "auroc_per_type": "evaluation",
    "write_report": "report",
}
__getattr__, __dir__ = lazy_attributes(
    __name__,
    globals(),
    _EXPORTS,
    (
        "calibration",
        "density",
        "detector",
        "evaluation",
        "features",
        "overlay",
        "regions",
        "report",
        "settings",
    ),
)
__all__ = sorted(_EXPORTS)
