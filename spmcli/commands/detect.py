"""``spmcli detect``: score images against a detector learned from good images."""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path

import click

from .._version import __version__
from ..cli import EXIT_ANOMALY
from ..errors import DictionaryFormatError
from ..inspection.detector import Detector, NoDetectorError
from ..inspection.report import anomaly_overlay, image_record, write_report
from ..io.images import read_image, to_grey, write_image
from ..sparse.dictionary import load_dictionary
from ._common import Batch, expand_images, max_pixels_option, progress_bar, say

EPILOG = """\b
Examples:
  spmcli learn-dict good/ -o model.npz --detector
  spmcli detect incoming/ --dict model.npz --report report.json --heatmap-dir maps/
  spmcli detect "line3/*.png" --dict model.npz --report today.csv --fail-on-anomaly
"""


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _heatmap_targets(paths: list[Path], folder: Path) -> dict[Path, tuple[Path, Path]]:
    """``<stem>_anomaly.tiff`` (raw float32 map) and ``<stem>_overlay.png`` per input;
    inputs sharing a file stem get a numeric suffix so nothing is overwritten."""
    targets: dict[Path, tuple[Path, Path]] = {}
    used: set[str] = set()
    for path in paths:
        stem = path.stem
        candidate, counter = stem, 1
        while candidate in used:
            counter += 1
            candidate = f"{stem}_{counter}"
        used.add(candidate)
        targets[path] = (folder / f"{candidate}_anomaly.tiff", folder / f"{candidate}_overlay.png")
    return targets


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
    max_pixels: int,
) -> None:
    """Score IMAGES for defects with a detector learned from good images.

    Each image gets an anomaly score (larger = less like the good images) and
    is anomalous when the score is above the threshold calibrated on held-out
    good images at learn-dict time (or --threshold). Images that cannot be read
    are reported (exit code 3; that takes precedence over 1) and the others
    are still scored. With --fail-on-anomaly the exit code is 1 when any image
    is anomalous.
    """
    if threshold is not None and not math.isfinite(threshold):
        raise click.BadParameter("must be a finite number", param_hint="--threshold")
    paths = expand_images(images)
    started = time.perf_counter()
    dictionary = load_dictionary(dictionary_path)
    try:
        detector = Detector.from_dictionary(dictionary)
    except NoDetectorError as error:
        raise DictionaryFormatError(str(error), dictionary_path) from None
    used_threshold = detector.threshold if threshold is None else threshold
    method = detector.threshold_method if threshold is None else "given with --threshold"
    heatmaps: dict[Path, tuple[Path, Path]] = {}
    if heatmap_dir is not None:
        folder = Path(heatmap_dir)
        if folder.exists() and not folder.is_dir():
            raise click.BadParameter(f"{folder}: exists and is not a folder", param_hint="--heatmap-dir")
        folder.mkdir(parents=True, exist_ok=True)
        heatmaps = _heatmap_targets(paths, folder)

    batch = Batch(ctx, len(paths))
    records = []
    n_anomalies = 0
    with progress_bar(ctx, len(paths), "detect", unit="img") as bar:
        for path in paths:
            before = len(batch.failures)

            def score_one(path: Path = path):
                image = read_image(path, max_pixels=max_pixels)
                return image, detector.score(image.pixels, with_map=path in heatmaps)

            outcome = batch.run(path, score_one)
            bar.update(1)
            if outcome is None:
                records.append(image_record(path, threshold=used_threshold, error=batch.failures[before][1]))
                continue
            image, result = outcome
            anomalous = detector.is_anomaly(result.score, used_threshold)
            n_anomalies += anomalous
            map_path = overlay_path = None
            if path in heatmaps:
                map_path, overlay_path = heatmaps[path]
                write_image(map_path, result.anomaly_map.astype("float32"), dtype="float32")
                # Colour from half the threshold (typical of good texture) to the threshold.
                overlay = anomaly_overlay(to_grey(image.pixels), result.anomaly_map, used_threshold / 2, used_threshold)
                write_image(overlay_path, overlay, dtype="uint8")
            records.append(
                image_record(
                    path,
                    score=result.score,
                    threshold=used_threshold,
                    is_anomaly=anomalous,
                    psnr=result.psnr,
                    ssim=result.ssim,
                    max_patch_error=result.max_patch_error,
                    anomaly_map=map_path,
                    overlay=overlay_path,
                )
            )
            if anomalous:
                click.echo(f"anomaly: {path} (score {result.score:.3f} > {used_threshold:.3f})", err=True)

    if report_path is not None:
        header = {
            "spmcli_version": __version__,
            "dictionary": {"path": str(dictionary_path), "sha256": _sha256(dictionary_path)},
            "patch_size": dictionary.patch_size,
            "detector_mode": detector.settings.mode,
            "threshold": used_threshold,
            "threshold_method": method,
            "counts": {"images": len(paths), "anomalies": n_anomalies, "failures": len(batch.failures)},
            "seconds": round(time.perf_counter() - started, 3),
        }
        write_report(report_path, header, records)
    say(
        ctx,
        f"Scored {len(paths) - len(batch.failures)} of {len(paths)} image(s): {n_anomalies} anomalous "
        f"(threshold {used_threshold:.3f}, {method})" + (f" -> {report_path}" if report_path else ""),
    )
    batch.finish()
    if fail_on_anomaly and n_anomalies:
        ctx.exit(EXIT_ANOMALY)
