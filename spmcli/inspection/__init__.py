"""Defect inspection: a detector learned from good images only (features,
density model of good patches, calibration), its anomaly scores, maps and
explained regions, pictures (overlay, mask), evaluation on labelled images,
the inspection database (the history of runs, for incremental cron runs) and
the HTML report.

Built on the sparse core; knows nothing of the command line.
"""

from .._lazy import lazy_attributes

_EXPORTS = {
    "Detector": "detector",
    "DetectorSettings": "settings",
    "ImageScore": "detector",
    "NoDetectorError": "detector",
    "Region": "regions",
    "fit_detector": "fitting",
    "defect_mask": "regions",
    "image_score": "calibration",
    "anomaly_overlay": "overlay",
    "image_metrics": "evaluation",
    "pixel_auroc": "evaluation",
    "aupro": "evaluation",
    "auroc_per_type": "evaluation",
    "InspectionDatabase": "database",
    "DatabaseError": "database",
    "file_identity": "file_identity",
    "InspectionHistory": "history",
    "load_history": "history",
    "write_html_report": "html_report",
}
__getattr__, __dir__ = lazy_attributes(
    __name__,
    globals(),
    _EXPORTS,
    (
        "calibration",
        "database",
        "density",
        "detector",
        "detector_file",
        "evaluation",
        "features",
        "fitting",
        "history",
        "html_report",
        "overlay",
        "regions",
        "settings",
    ),
)
__all__ = sorted(_EXPORTS)
