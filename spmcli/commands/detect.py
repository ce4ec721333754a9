"""``spmcli detect``: score images against a detector learned from good images."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path

import click

from ..batch import BatchResult, Task
from ..inspection.database import InspectionDatabase
from ..tasks import detect as task_module
from ..tasks.labels import evaluate, find_ground_truth, match_labels, read_labels, unused_labels
from ._batch import batch_options, command_line, resolve_workers, run_batch
from ._common import (
    expand_images,
    is_quiet,
    max_pixels_option,
    prepare_output_dir,
    prepare_output_file,
    say,
    write_csv_report,
    write_json_report,
)

# Peak memory of one worker per input pixel (measured by benchmarks/bench_batch.py), for --jobs auto.
PEAK_BYTES_PER_PIXEL = 80.0
# Columns of a CSV report: one row per input (regions as a count and a JSON list).
CSV_FIELDS = (
    "input",
    "status",
    "score",
    "threshold",
    "is_anomaly",
    "n_regions",
    "regions",
    "anomaly_map",
    "overlay",
    "mask",
    "error",
    "seconds",
)

EPILOG = """\b
Examples:
  spmcli learn-dict good/ -o model.npz --detector
  spmcli detect incoming/ --dict model.npz --report report.json --heatmap-dir maps/ --masks-dir masks/
  spmcli detect "line3/*.png" --dict model.npz --report today.csv --fail-on-anomaly --jobs auto
  spmcli detect incoming/ --dict model.npz --db inspections.sqlite --new-only     # from cron
  spmcli detect test/ --dict model.npz --labels labels.csv --ground-truth-masks masks/ --report eval.json
"""


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _unique_stems(paths: list[Path]) -> list[str]:
    """Each input's file stem; inputs sharing one get a numeric suffix so no picture is overwritten."""
    stems, used = [], set()
    for path in paths:
        candidate, counter = path.stem, 1
        while candidate in used:
            counter += 1
            candidate = f"{path.stem}_{counter}"
        used.add(candidate)
        stems.append(candidate)
    return stems


def _write_report(path: str, report: dict) -> None:
    if Path(path).suffix.lower() == ".csv":
        rows = [record | {"regions": json.dumps(record.get("regions") or [])} for record in report["records"]]
        write_csv_report(path, rows, CSV_FIELDS)
    else:
        write_json_report(path, report)


def _evaluation_line(evaluation: dict) -> str:
    if "image" not in evaluation:
        return f"Evaluation: {evaluation.get('note', 'nothing to evaluate')}"
    image = evaluation["image"]
    line = (
        f"Evaluation on {evaluation['n_labelled']} labelled image(s) ({evaluation['n_defective']} defective): "
        f"AUROC {image['auroc']:.3f}, AP {image['average_precision']:.3f}; at the threshold accuracy "
        f"{image['accuracy']:.3f}, precision {image['precision']:.3f}, recall {image['recall']:.3f}, "
        f"F1 {image['f1']:.3f}"
    )
    if "pixel_auroc" in evaluation:
        line += f"; pixel AUROC {evaluation['pixel_auroc']:.3f}, AUPRO {evaluation['aupro']:.3f}"
    return line


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
    "--pixel-threshold",
    type=float,
    default=None,
    help="Anomaly-map level at which an anomalous image's regions and masks are cut [default: the calibrated "
    "one stored in the dictionary].",
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
    help="Write <name>_anomaly.tiff (float32 per-pixel anomaly, the score's unit) and <name>_overlay.png "
    "(the image with its regions outlined, beside the map) for each image.",
)
@click.option(
    "--masks-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Write <name>_mask.png for each image: white in its reported regions (where the map is above the "
    "pixel threshold), all black for an image that is not anomalous.",
)
@click.option(
    "--labels",
    "labels_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="CSV with columns path, defective (1/0) and optionally defect_type: add image AUROC, average precision, "
    "accuracy/precision/recall/F1 at the threshold and AUROC per defect type to the report.",
)
@click.option(
    "--ground-truth-masks",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="With --labels: folder of defect masks named like the images (nonzero = defect; good images need none): "
    "add pixel AUROC and AUPRO (up to 30% false positives).",
)
@click.option(
    "--quality",
    is_flag=True,
    help="Also report PSNR/SSIM of each image's sparse reconstruction (for looking, not for deciding).",
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
    pixel_threshold: float | None,
    report_path: str | None,
    heatmap_dir: str | None,
    masks_dir: str | None,
    labels_path: str | None,
    ground_truth_masks: str | None,
    quality: bool,
    fail_on_anomaly: bool,
    database_path: str | None,
    new_only: bool,
    max_pixels: int,
    jobs: int | str,
    scheduler: str | None,
    skip_existing: bool,
) -> None:
    """Score IMAGES for defects with a detector learned from good images.

    Each image gets an anomaly score (a soft maximum of its anomaly map;
    larger = less like the good images) and is anomalous when it is above the
    threshold calibrated on held-out good images at learn-dict time (or
    --threshold). Each anomalous image's regions (connected areas of its
    anomaly map above the pixel threshold, or above the image threshold when
    the deviation is spread too thinly to pass it anywhere) are listed
    with their bounding box, size, peak and mean anomaly and the feature that
    drives them, in words. Images that cannot be read are reported (exit code
    3; that takes precedence over 1) and the others are still scored. With
    --fail-on-anomaly the exit code is 1 when any image is anomalous. --jobs
    scores images in parallel (same results); --db keeps the history for cron.
    """
    for value, hint in ((threshold, "--threshold"), (pixel_threshold, "--pixel-threshold")):
        if value is not None and not math.isfinite(value):
            raise click.BadParameter("must be a finite number", param_hint=hint)
    if new_only and database_path is None:
        raise click.UsageError("--new-only needs --db (the database remembers what was scored)")
    if ground_truth_masks is not None and labels_path is None:
        raise click.UsageError("--ground-truth-masks needs --labels (which images are defective)")
    paths = expand_images(images, ctx)
    if database_path is not None:
        prepare_output_file(database_path, "--db", inputs=paths)
    if report_path is not None:
        prepare_output_file(report_path, "--report", extensions=(".json", ".csv"), inputs=paths)
    if skip_existing and heatmap_dir is None and masks_dir is None:
        raise click.UsageError("--skip-existing needs per-image outputs to look for (--heatmap-dir or --masks-dir)")
    heatmaps = prepare_output_dir(heatmap_dir, "--heatmap-dir") if heatmap_dir is not None else None
    masks = prepare_output_dir(masks_dir, "--masks-dir") if masks_dir is not None else None
    labels: list = [None] * len(paths)
    unused: list = []
    if labels_path is not None:
        rows = read_labels(labels_path)
        labels = match_labels(paths, rows)
        unused = unused_labels(rows, labels)
        if any(label is None for label in labels):
            say(ctx, f"{sum(label is None for label in labels)} input(s) have no label in {labels_path}: not evaluated")
        if unused:
            # A mistyped path or folder shows here, rather than as a smaller evaluation.
            say(ctx, f"{len(unused)} row(s) of {labels_path} name no input, e.g. {unused[0].path}: not evaluated")
    # Opened first, then the model read: a bad database or model is one error before any image is scored.
    database = InspectionDatabase.open(database_path) if database_path is not None else None
    detector = task_module.load_detector(dictionary_path)
    used_threshold = detector.threshold if threshold is None else threshold
    method = detector.threshold_method if threshold is None else "given with --threshold"
    workers, scheduler = resolve_workers(ctx, jobs, scheduler, paths, PEAK_BYTES_PER_PIXEL)
    settings = task_module.DetectSettings(
        model=dictionary_path,
        threshold=used_threshold,
        pixel_threshold=pixel_threshold,
        quality=quality,
        max_pixels=max_pixels,
    )
    tasks = []
    for index, (path, stem, label) in enumerate(zip(paths, _unique_stems(paths), labels, strict=True)):
        truth = None
        if ground_truth_masks is not None and label is not None:
            truth = find_ground_truth(ground_truth_masks, path)
            truth = truth if truth is not None else ("" if not label.defective else None)
        outputs = task_module.ImageOutputs(
            anomaly_map=None if heatmaps is None else str(heatmaps / f"{stem}_anomaly.tiff"),
            overlay=None if heatmaps is None else str(heatmaps / f"{stem}_overlay.png"),
            mask=None if masks is None else str(masks / f"{stem}_mask.png"),
            ground_truth=truth,
        )
        written = tuple(item for item in (outputs.anomaly_map, outputs.overlay, outputs.mask) if item)
        tasks.append(Task(index, str(path), outputs=written, payload=outputs))
    model = {
        "path": str(dictionary_path),
        "sha256": _sha256(dictionary_path),
        "mode": detector.mode,
        "mode_reason": detector.mode_reason,
        "training_size": detector.training_size,
        "threshold": used_threshold,
        "pixel_threshold": detector.pixel_threshold if pixel_threshold is None else pixel_threshold,
        "threshold_method": method,
        # null: the map's maximum (models of detector format 4).
        "score_power": detector.settings.to_record()["score_power"],
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
    evaluation_data: dict[str, dict] = {}

    def on_record(record: dict) -> None:
        # Reduced maps for pixel metrics stay in memory, out of the report and the database.
        if "evaluation_map" in record:
            evaluation_data[record["input"]] = {key: record.pop(key) for key in ("evaluation_map", "evaluation_mask")}
        if database is not None and record["status"] != "skipped":
            database.record_image(run_id, record)
        if record["status"] == "done" and record["is_anomaly"] and not is_quiet(ctx):
            regions = record["regions"]
            why = f"; {regions[0]['explanation']}" if regions else ""
            more = f" (+{len(regions) - 1} more region(s))" if len(regions) > 1 else ""
            click.echo(
                f"anomaly: {record['input']} (score {record['score']:.3f} > {used_threshold:.3f}){why}{more}", err=True
            )

    def count_anomalies(result: BatchResult) -> int:
        return sum(1 for record in result.records if record["status"] == "done" and record["is_anomaly"])

    header: dict = {"model": model, "database": database_path, "run_id": run_id}

    def on_finish(result: BatchResult, exit_code: int) -> None:
        if labels_path is not None:
            records = [record | evaluation_data.get(record["input"], {}) for record in result.records]
            header["evaluation"] = evaluate(records, labels, used_threshold)
            header["evaluation"]["labels"] = labels_path
            header["evaluation"]["n_inputs_without_label"] = sum(label is None for label in labels)
            header["evaluation"]["labels_without_input"] = [label.path for label in unused]
            say(ctx, _evaluation_line(header["evaluation"]))
        if database is not None:
            for record in result.records:
                if record["status"] == "not_started":
                    database.record_image(run_id, record)  # releases its claim for the next run
            database.finish_run(run_id, {**result.counts, "anomalies": count_anomalies(result)}, exit_code)
            database.close()

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
        extra_header=header,
        on_record=on_record,
        decided=decided,
        on_finish=on_finish,
        extra_counts=lambda result: {"anomalies": count_anomalies(result)},
        anomalies=count_anomalies,
        final_note=lambda result: f": {count_anomalies(result)} anomalous (threshold {used_threshold:.3f}, {method})",
    )
