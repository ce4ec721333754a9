"""Inspection results for the report tests: small images with drawn defects, their maps
and overlays, and detect records for them (scores known in advance)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from spmcli.inspection.database import InspectionDatabase
from spmcli.inspection.overlay import anomaly_overlay
from spmcli.io.images import write_image

MODEL = {"path": "model.npz", "sha256": "ab" * 32, "threshold": 2.5, "mode": "pooled"}
THRESHOLD = 2.5
# A file name a report must show as text, never as markup.
HOSTILE_NAME = 'part_<img src=x onerror=alert(1)>&"q".png'


def make_inspection(folder: Path, n_good: int, n_anomalous: int, n_failed: int, seed: int = 0) -> list[dict]:
    """Write images (and for scored ones an anomaly map and an overlay) under ``folder`` and
    return their detect records in input order. Anomalous images have a dark rectangle at
    x 20..44, y 12..28 and scores 4, 5, 6, ...; good ones score below the threshold."""
    rng = np.random.default_rng(seed)
    (folder / "incoming").mkdir(parents=True, exist_ok=True)
    (folder / "maps").mkdir(exist_ok=True)
    records = []
    kinds = ["anomalous"] * n_anomalous + ["good"] * n_good + ["failed"] * n_failed
    order = rng.permutation(len(kinds))
    for index, position in enumerate(order):
        kind = kinds[position]
        name = HOSTILE_NAME if index == 0 else f"part_{seed}_{index:03d}.png"
        path = folder / "incoming" / name
        if kind == "failed":
            path.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
            records.append(
                {"input": str(path), "output": None, "status": "failed", "error": "corrupt PNG file (truncated)",
                 "seconds": 0.01, "warnings": []}
            )  # fmt: skip
            continue
        y, x = np.mgrid[0:48, 0:64]
        image = 0.5 + 0.2 * np.sin(x / 3.0) * np.sin(y / 4.0) + 0.03 * rng.standard_normal((48, 64))
        anomaly_map = np.abs(rng.standard_normal((48, 64))).astype(np.float32)
        anomalous = kind == "anomalous"
        if anomalous:
            image[12:28, 20:44] *= 0.3
            anomaly_map[12:28, 20:44] += 6.0
        image = np.clip(image, 0.0, 1.0)
        write_image(path, image)
        map_path = folder / "maps" / f"{index:03d}_anomaly.tiff"
        overlay_path = folder / "maps" / f"{index:03d}_overlay.png"
        write_image(map_path, anomaly_map, dtype="float32")
        write_image(overlay_path, anomaly_overlay(image, anomaly_map, THRESHOLD))
        rank = sum(1 for record in records if record.get("is_anomaly"))
        score = 4.0 + rank if anomalous else float(rng.uniform(0.5, 2.4))
        records.append(
            {
                "input": str(path),
                "output": None,
                "status": "done",
                "error": None,
                "seconds": 0.05,
                "warnings": [],
                "score": score,
                "threshold": THRESHOLD,
                "is_anomaly": anomalous,
                "psnr": 31.5,
                "ssim": 0.91,
                "max_patch_error": 0.08,
                "pixel_threshold": 1.7,
                "peak": score + 1.25,
                "region_level": 1.7 if anomalous else None,
                "anomaly_map": str(map_path),
                "overlay": str(overlay_path),
                "mask": None,
                "regions": (
                    [
                        {
                            "bbox": [20, 12, 44, 28],
                            "area": 384,
                            "peak": 7.5,
                            "mean": 6.8,
                            "feature": "intensity",
                            "explanation": "intensity: darker than <any> good patch",
                        }
                    ]
                    if anomalous
                    else []
                ),
            }
        )
    return records


def counts_of(records: list[dict]) -> dict[str, int]:
    return {
        "inputs": len(records),
        "done": sum(record["status"] == "done" for record in records),
        "failed": sum(record["status"] == "failed" for record in records),
        "skipped": 0,
        "not_started": 0,
        "anomalies": sum(bool(record.get("is_anomaly")) for record in records),
    }


def header(records: list[dict], started: str = "2026-12-01T08:00:00.000+00:00") -> dict:
    """The run header of a detect JSON report for these records, as the batch engine writes it."""
    return {
        "report_format": 2,
        "spmcli_version": "0.2.0",
        "command": "detect",
        "command_line": ["spmcli", "detect", "incoming/", "--dict", "model.npz", "--report", "run.json"],
        "settings": {"model": MODEL["path"], "threshold": THRESHOLD, "max_pixels": 200_000_000},
        "model": {**MODEL, "threshold_method": "quantile 0.95 of 25 calibration image scores"},
        "started": started,
        "finished": started.replace("08:00:00", "08:00:05"),
        "seconds": 5.0,
        "execution": {"workers": 1, "scheduler": None},
        "counts": counts_of(records),
        "exit_code": 3 if any(record["status"] == "failed" for record in records) else 0,
    }


def write_json_report(path: Path, records: list[dict]) -> Path:
    path.write_text(json.dumps({**header(records), "records": records}, indent=2))
    return path


def fill_database(path: Path, runs: list[tuple[str, list[dict]]]) -> None:
    """One finished run per (start time, records), recorded as detect records them."""
    with InspectionDatabase.open(path) as database:
        for started, records in runs:
            run_header = header(records, started)
            run_id = database.start_run(
                command="detect",
                command_line=run_header["command_line"],
                settings=run_header["settings"],
                model=run_header["model"],
                started=started,
            )
            database.claim(run_id, [record["input"] for record in records], new_only=False)
            for record in records:
                database.record_image(run_id, record)
            database.finish_run(run_id, counts_of(records), exit_code=0, finished=started)
