"""Inspection results for the report tests: small images with drawn defects, their maps
and overlays, and detect records for them (scores known in advance)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from spmcli.inspection.database import InspectionDatabase
from spmcli.inspection.report import anomaly_overlay
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
            records.append({"input": str(path), "status": "failed", "error": "corrupt PNG file (truncated)"})
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
        write_image(overlay_path, anomaly_overlay(image, anomaly_map, THRESHOLD / 2, THRESHOLD))
        rank = sum(1 for record in records if record.get("is_anomaly"))
        score = 4.0 + rank if anomalous else float(rng.uniform(0.5, 2.4))
        records.append(
            {
                "input": str(path),
                "status": "done",
                "error": None,
                "seconds": 0.05,
                "warnings": [],
                "score": score,
                "threshold": THRESHOLD,
                "is_anomaly": anomalous,
                "pixel_threshold": 1.7,
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


def header(records: list[dict], started: str = "2026-12-01T08:00:00Z", finished: str = "2026-12-01T08:00:05Z") -> dict:
    """The run header of a detect JSON report for these records."""
    return {
        "report_format": 2,
        "spmcli_version": "0.2.0",
        "command": "detect",
        "command_line": "spmcli detect incoming/ --dict model.npz --report run.json --heatmap-dir maps",
        "settings": {"model": MODEL},
        "started": started,
        "finished": finished,
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
            settings = {"model": MODEL}
            run_id = database.start_run(command="detect", command_line="detect", settings=settings, started=started)
            database.claim(run_id, [record["input"] for record in records], new_only=False)
            for record in records:
                database.record_image(run_id, record)
            database.finish_run(run_id, counts_of(records), exit_code=0, finished=started)
