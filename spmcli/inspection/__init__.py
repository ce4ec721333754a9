"""Defect inspection: a detector learned from good images only, its anomaly
scores and maps, and reports (JSON/CSV, heatmap overlays).

Built on the sparse core; knows nothing of the command line.
"""

from .._lazy import lazy_attributes

_EXPORTS = {
    "Detector": "detector",
    "DetectorSettings": "detector",
    "ImageScore": "detector",
    "fit_detector": "detector",
    "anomaly_overlay": "report",
    "write_report": "report",
}
__getattr__, __dir__ = lazy_attributes(__name__, globals(), _EXPORTS, ("detector", "report"))
__all__ = sorted(_EXPORTS)
