"""Defect inspection: a detector learned from good images only, its anomaly
scores and maps, reports (JSON/CSV, heatmap overlays), the inspection database
(the history of runs, for incremental cron runs) and the HTML report.

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
    "InspectionDatabase": "database",
    "DatabaseError": "database",
    "file_identity": "file_identity",
    "InspectionHistory": "history",
    "load_history": "history",
    "write_html_report": "html_report",
}
__getattr__, __dir__ = lazy_attributes(
    __name__, globals(), _EXPORTS, ("detector", "report", "database", "history", "html_report")
)
__all__ = sorted(_EXPORTS)
