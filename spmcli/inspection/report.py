"""Anomaly reports (JSON or CSV) and heatmap overlays.

JSON report layout (``REPORT_FORMAT_VERSION`` 1)::

    {
      "report_format": 1,
      "spmcli_version": "...",
      "dictionary": {"path": "...", "sha256": "..."},
      "patch_size": 8,
      "detector_mode": "pooled" | "aligned",
      "threshold": 3.2, "threshold_method": "quantile 0.99 of 25 calibration image scores"
                                             | "given with --threshold",
      "counts": {"images": 6, "anomalies": 3, "failures": 0},
      "seconds": 0.41,
      "images": [ {<one record per input, the IMAGE_FIELDS below>}, ... ]
    }

A CSV report (chosen by the ``.csv`` extension) holds the same per-image
records, one row each, with the ``IMAGE_FIELDS`` as columns (empty cells for
null values).
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..io.atomic import atomic_write_text

__all__ = [
    "IMAGE_FIELDS",
    "REPORT_FORMAT_VERSION",
    "anomaly_overlay",
    "heat_colours",
    "image_record",
    "write_report",
]

REPORT_FORMAT_VERSION = 1
# Per-image fields, in column order. ``score``/``psnr``/``ssim``/``max_patch_error``
# are null and ``error`` names the cause when the image could not be scored.
IMAGE_FIELDS = (
    "path",
    "score",
    "threshold",
    "is_anomaly",
    "psnr",
    "ssim",
    "max_patch_error",
    "anomaly_map",
    "overlay",
    "error",
)

# Anchor colours of a black-red-yellow-white heat scale (like "hot"/"inferno").
_HEAT_ANCHORS = np.array([[0.0, 0.0, 0.0], [0.5, 0.0, 0.1], [0.9, 0.2, 0.0], [1.0, 0.8, 0.0], [1.0, 1.0, 0.9]])


def _finite_or_none(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def image_record(
    path: str | Path,
    *,
    score: float | None = None,
    threshold: float | None = None,
    is_anomaly: bool | None = None,
    psnr: float | None = None,
    ssim: float | None = None,
    max_patch_error: float | None = None,
    anomaly_map: str | Path | None = None,
    overlay: str | Path | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """One per-image record with every field of :data:`IMAGE_FIELDS` (non-finite numbers become null)."""
    return {
        "path": str(path),
        "score": _finite_or_none(score),
        "threshold": _finite_or_none(threshold),
        "is_anomaly": None if is_anomaly is None else bool(is_anomaly),
        "psnr": _finite_or_none(psnr),
        "ssim": _finite_or_none(ssim),
        "max_patch_error": _finite_or_none(max_patch_error),
        "anomaly_map": None if anomaly_map is None else str(anomaly_map),
        "overlay": None if overlay is None else str(overlay),
        "error": error,
    }


def write_report(path: str | Path, header: dict[str, Any], records: list[dict[str, Any]]) -> None:
    """Write the report atomically: CSV when ``path`` ends in ``.csv``, JSON otherwise."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=IMAGE_FIELDS, lineterminator="\n")
        writer.writeheader()
        for record in records:
            writer.writerow({key: "" if record.get(key) is None else record[key] for key in IMAGE_FIELDS})
        atomic_write_text(path, buffer.getvalue())
        return
    payload = {"report_format": REPORT_FORMAT_VERSION, **header, "images": records}
    atomic_write_text(path, json.dumps(payload, indent=2, allow_nan=False) + "\n")


def heat_colours(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] to RGB on a black-red-yellow-white scale, shape (..., 3)."""
    values = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64)), 0.0, 1.0)
    position = values * (len(_HEAT_ANCHORS) - 1)
    lower = np.minimum(position.astype(int), len(_HEAT_ANCHORS) - 2)
    fraction = (position - lower)[..., None]
    return _HEAT_ANCHORS[lower] * (1 - fraction) + _HEAT_ANCHORS[lower + 1] * fraction


def anomaly_overlay(grey: np.ndarray, anomaly_map: np.ndarray, low: float, high: float) -> np.ndarray:
    """The anomaly map colour-coded over the grey image.

    Parameters
    ----------
    grey : ndarray, shape (H, W)
        The image, 0..1.
    anomaly_map : ndarray, shape (H, W)
        Per-pixel anomaly (>= 0).
    low, high : float
        Anomaly values shown without colour (``<= low``) and at full colour
        (``>= high``). Use fixed references (``detect`` uses half the threshold
        and the threshold) so a good image stays mostly grey and a defect lights up.

    Returns
    -------
    ndarray, shape (H, W, 3), 0..1
    """
    span = max(float(high) - float(low), 1e-12)
    strength = np.clip((np.asarray(anomaly_map, dtype=np.float64) - low) / span, 0.0, 1.0)
    base = np.repeat(np.clip(grey, 0.0, 1.0)[:, :, None] * 0.8, 3, axis=2)
    alpha = (0.75 * strength)[:, :, None]
    return base * (1 - alpha) + heat_colours(strength) * alpha
