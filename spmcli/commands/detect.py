"""``spmcli detect``: score images against a detector learned from good images."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from pathlib import Path

import click

from ..batch import BatchResult, Task
from ..inspection.database import InspectionDatabase
from ..tasks import detect as task_module
from ._batch import batch_options, command_line, resolve_workers, run_batch
from ._common import (
    expand_images,
    is_quiet,
    max_pixels_option,
    prepare_output_dir,
    prepare_output_file,
    write_csv_report,
    write_json_report,
)

# Peak memory of one worker per input pixel (measured by benchmarks/bench_batch.py), for --jobs auto.
PEAK_BYTES_PER_PIXEL = 80.0
# Columns of a CSV report: one row per input.
CSV_FIELDS = (
    "input",
    "status",
    "score",
    "threshold",
    "is_anomaly",
    "psnr",
    "ssim",
    "max_patch_error",
    "anomaly_map",
    "overlay",
    "error",
    "seconds",
)

EPILOG = """\b
Examples:
  spmcli learn-dict good/ -o model.npz --detector
  spmcli detect incoming/ --dict model.npz --report report.json --heatmap-dir maps/
  spmcli detect "line3/*.png" --dict model.npz --report today.csv --fail-on-anomaly --jobs auto
"""


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _heatmap_targets(paths: list[Path], folder: Path) -> list[task_module.HeatmapPaths]:
    """``<stem>_anomaly.tiff`` (raw float32 map) and ``<stem>_overlay.png`` per input;
    inputs sharing a file stem get a numeric suffix so nothing is overwritten."""
    targets = []
    used: set[str] = set()
    for path in paths:
        stem = path.stem
        candidate, counter = stem, 1
        while candidate in used:
            counter += 1
            candidate = f"{stem}_{counter}"
        used.add(candidate)
        targets.append(
            task_module.HeatmapPaths(
                str(folder / f"{candidate}_anomaly.tiff"), str(folder / f"{candidate}_overlay.png")
            )
        )
    return targets


def _write_report(path: str, report: dict) -> None:
    if Path(path).suffix.lower() == ".csv":
        write_csv_report(path, report["records"], CSV_FIELDS)
    else:
        write_json_report(path, report)


@click.command(name="detect", epilog=EPILOG)
@click.argument("images", nargs=-1, required=True)
@click.option(
    "--dict",
    "dictionary_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Dictionary with detector calibration (learn-dict --detector).",
)
@click.option(
    "--threshold",
    type=float,
    default=None,
    help="Score above which an image is anomalous [default: the calibrated one stored in the dictionary].",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write a report: CSV if the name ends in .csv, JSON otherwise.",
)
@click.option(
    "--heatmap-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Write <name>_anomaly.tiff (float32 per-pixel anomaly) and <name>_overlay.png for each image.",
)
@click.option("--fail-on-anomaly", is_flag=True, help="Exit with code 1 when any image is anomalous.")
@click.option(
    "--db",
    "database_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Record the run and each image's result in this SQLite inspection database (created if missing); "
    "see spmcli report.",
)
@click.option(
    "--new-only",
    is_flag=True,
    help="With --db: score only images whose content was not already scored with this model, under any name "
    "(a file rewritten in place is scored again); skip the others.",
)
@batch_options()
@max_pixels_option
@click.pass_context
def command(
    ctx: click.Context,
    images: tuple[str, ...],
    dictionary_path: str,
    threshold: float | None,
    report_path: str | None,
    heatmap_dir: str | None,
    fail_on_anomaly: bool,
    database_path: str | None,
    new_only: bool,
    max_pixels: int,
    jobs: int | str,
    scheduler: str | None,
    skip_existing: bool,
) -> None:
    """Score IMAGES for defects with a detector learned from good images.

    Each image gets an anomaly score (larger = less like the good images) and
    is anomalous when the score is above the threshold calibrated on held-out
    good images at learn-dict time (or --threshold). Images that cannot be read
    are reported (exit code 3; that takes precedence over 1) and the others
    are still scored. With --fail-on-anomaly the exit code is 1 when any image
    is anomalous. --jobs scores images in parallel (same results).
    """
    if threshold is not None and not math.isfinite(threshold):
        raise click.BadParameter("must be a finite number", param_hint="--threshold")
    if new_only and database_path is None:
        raise click.UsageError("--new-only needs --db (the database remembers what was scored)")
    paths = expand_images(images, ctx)
    if database_path is not None:
        prepare_output_file(database_path, "--db", inputs=paths)
    if report_path is not None:
        prepare_output_file(report_path, "--report", extensions=(".json", ".csv"), inputs=paths)
    heatmaps = [None] * len(paths)
    if heatmap_dir is not None:
        heatmaps = _heatmap_targets(paths, prepare_output_dir(heatmap_dir, "--heatmap-dir"))
    elif skip_existing:
        raise click.UsageError("--skip-existing needs per-image outputs to look for (--heatmap-dir)")
    # Opened first, then the model read: a bad database or model is one error before any image is scored.
    database = InspectionDatabase.open(database_path) if database_path is not None else None
    detector = task_module.load_detector(dictionary_path)
    used_threshold = detector.threshold if threshold is None else threshold
    method = detector.threshold_method if threshold is None else "given with --threshold"
    workers, scheduler = resolve_workers(ctx, jobs, scheduler, paths, PEAK_BYTES_PER_PIXEL)
    settings = task_module.DetectSettings(model=dictionary_path, threshold=used_threshold, max_pixels=max_pixels)
    tasks = [
        Task(
            index,
            str(path),
            outputs=() if target is None else (target.anomaly_map, target.overlay),
            payload=target,
        )
        for index, (path, target) in enumerate(zip(paths, heatmaps, strict=True))
    ]

    model = {
        "path": str(dictionary_path),
        "sha256": _sha256(dictionary_path),
        "mode": detector.settings.mode,
        "threshold": used_threshold,
        "threshold_method": method,
    }
    decided: dict[int, dict] = {}
    run_id = None
    if database is not None:
        run_id = database.start_run(
            command="detect", command_line=command_line(ctx), settings=dataclasses.asdict(settings), model=model
        )
        for claim in database.claim(run_id, [str(path) for path in paths], new_only=new_only):
            if claim.decision != "score":
                decided[claim.position] = {
                    "input": claim.input, "output": None, "status": "skipped", "error": None, "seconds": 0.0,
                    "warnings": [], "note": claim.reason,
                }  # fmt: skip

    def on_record(record: dict) -> None:
        if database is not None and record["status"] != "skipped":
            database.record_image(run_id, record)
        if record["status"] == "done" and record["is_anomaly"] and not is_quiet(ctx):
            click.echo(f"anomaly: {record['input']} (score {record['score']:.3f} > {used_threshold:.3f})", err=True)

    def on_finish(result: BatchResult, exit_code: int) -> None:
        if database is None:
            return
        for record in result.records:
            if record["status"] == "not_started":
                database.record_image(run_id, record)  # releases its claim for the next run
        database.finish_run(run_id, {**result.counts, "anomalies": count_anomalies(result)}, exit_code)
        database.close()

    def count_anomalies(result: BatchResult) -> int:
        return sum(1 for record in result.records if record["status"] == "done" and record["is_anomaly"])

    run_batch(
        ctx,
        command="detect",
        function=task_module.score_image,
        tasks=tasks,
        settings=settings,
        jobs=workers,
        scheduler=scheduler,
        skip_existing=skip_existing,
        verb="Scored",
        report_path=report_path,
        write_report=_write_report,
        extra_header={"model": model, "database": database_path, "run_id": run_id},
        on_record=on_record,
        decided=decided,
        on_finish=on_finish,
        extra_counts=lambda result: {"anomalies": count_anomalies(result)},
        anomalies=count_anomalies,
        final_note=lambda result: f": {count_anomalies(result)} anomalous (threshold {used_threshold:.3f}, {method})",
    )
