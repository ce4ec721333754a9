"""The HTML inspection report: one self-contained page a person opens in a browser.

The page holds the summary of the selected runs (images, anomalies, failures,
the anomaly rate over time), the distribution of scores with the threshold
marked, the anomalous images first (worst score first; each with a preview, its
overlay, score, regions and their explanations), then the failures and the
other images, with links to the input, overlay, raw anomaly map and mask files.

Built with Jinja2 (``templates/report.html.j2``) with autoescaping on: file
names, error messages and explanations are untrusted text. Previews are JPEG
``data:`` URIs and the charts inline SVG, so the page needs no network and no
server; a Content-Security-Policy forbids it any other resource. Links to the
raw files are relative to the page's folder.

Quick for 10,000 images: only the ``max_thumbnails`` worst anomalies get
previews (decoding images is the cost: about 10 ms each), and each table lists
at most :data:`MAX_TABLE_ROWS` rows (anomalies beyond the previews, failures,
other images by decreasing score) and says how many it leaves out; summary and
charts always count every selected image.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import os
import shlex
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from .._version import __version__
from ..io.atomic import atomic_write_text
from .database import parse_timestamp
from .history import InspectionHistory
from .svg_charts import RatePoint, anomaly_rate_chart, score_histogram
from .thumbnails import Thumbnail, thumbnail

__all__ = ["DEFAULT_MAX_THUMBNAILS", "MAX_TABLE_ROWS", "ReportSummary", "render_html_report", "write_html_report"]

DEFAULT_MAX_THUMBNAILS = 100
MAX_TABLE_ROWS = 1000
MAX_REGIONS_SHOWN = 8
MAX_RUNS_SHOWN = 200
THUMBNAIL_SIDE = 192

Callback = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ReportSummary:
    """What a report covers."""

    runs: int
    images: int
    scored: int
    anomalies: int
    failed: int
    not_started: int
    skipped: int
    previews: int


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("spmcli.inspection", "templates"),
        autoescape=True,  # always, whatever the template's name: every text in the page is untrusted
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _href(absolute: str | None, folder: Path) -> str | None:
    """A link from the page's folder to a file (relative, so the pair can move together)."""
    if not absolute:
        return None
    try:
        relative = os.path.relpath(absolute, folder)
    except ValueError:  # another drive (Windows): only an absolute URI reaches it
        return Path(absolute).as_uri()
    # Quoting ':' too keeps a file named "javascript:..." a relative path.
    return urllib.parse.quote(relative.replace(os.sep, "/"), safe="/")


def _score_text(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.3f}"


def _links(record: dict[str, Any], folder: Path) -> list[tuple[str, str]]:
    absolute = record.get("absolute_paths") or {}
    names = (("image", "input"), ("overlay", "overlay"), ("anomaly map", "anomaly_map"), ("mask", "mask"))
    return [(label, _href(absolute[key], folder)) for label, key in names if absolute.get(key)]


def _row(record: dict[str, Any], run_started: dict[int, str], folder: Path) -> dict[str, Any]:
    return {
        "input": record["input"],
        "run_id": record.get("run_id"),
        "started": run_started.get(record.get("run_id"), ""),
        "score": record.get("score"),
        "score_text": _score_text(record.get("score")),
        "threshold_text": _score_text(record.get("threshold")),
        "error": record.get("error") or "",
        "warnings": list(record.get("warnings") or []),
        "links": _links(record, folder),
    }


def _display_size(preview: Thumbnail | None) -> tuple[int, int]:
    """Previews are shown THUMBNAIL_SIDE pixels on their long side (small images enlarged)."""
    if preview is None:
        return (0, 0)
    scale = THUMBNAIL_SIDE / max(preview.source_width, preview.source_height)
    return (max(1, round(preview.source_width * scale)), max(1, round(preview.source_height * scale)))


def _region_rows(regions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for region in [region for region in regions if isinstance(region, dict)][:MAX_REGIONS_SHOWN]:
        bbox = region.get("bbox")
        valid_box = isinstance(bbox, list | tuple) and len(bbox) == 4
        rows.append(
            {
                "bbox": list(bbox) if valid_box else None,
                "bbox_text": f"{bbox[0]},{bbox[1]} – {bbox[2]},{bbox[3]}" if valid_box else "–",
                "area": region.get("area", "–"),
                "peak": _score_text(region.get("peak")),
                "mean": _score_text(region.get("mean")),
                "feature": region.get("feature") or "",
                "explanation": region.get("explanation") or "",
            }
        )
    return rows


def _rate_points(history: InspectionHistory) -> list[RatePoint]:
    per_run: dict[int, list[int]] = {run["run_id"]: [0, 0, 0] for run in history.runs}
    for record in history.records:
        numbers = per_run.setdefault(record.get("run_id"), [0, 0, 0])
        if record.get("status") == "done":
            numbers[0] += 1
            numbers[1] += bool(record.get("is_anomaly"))
        elif record.get("status") == "failed":
            numbers[2] += 1
    points = []
    for run in history.runs:
        if run.get("started"):
            points.append(RatePoint(parse_timestamp(run["started"]), *per_run[run["run_id"]]))
    return points


def _run_rows(history: InspectionHistory) -> list[dict[str, Any]]:
    rows = []
    for run in reversed(history.runs[-MAX_RUNS_SHOWN:]):
        given = run.get("model") or {}
        model = {key: given.get(key) for key in ("path", "sha256", "threshold", "mode")}
        command_line = run.get("command_line") or ""
        if not isinstance(command_line, str):  # a list of arguments, as the shell passed them
            command_line = shlex.join(str(argument) for argument in command_line)
        counts = {key: "" for key in ("done", "anomalies", "failed", "skipped")}
        counts.update({key: value for key, value in (run.get("counts") or {}).items() if value is not None})
        rows.append(
            {
                "run_id": run["run_id"],
                "started": run.get("started") or "",
                "finished": run.get("finished") or "",
                "state": run.get("state") or "",
                "exit_code": "" if run.get("exit_code") is None else run["exit_code"],
                "counts": counts,
                "model": model,
                "model_sha": (model.get("sha256") or "")[:12],
                "threshold_text": _score_text(model.get("threshold")),
                "command_line": command_line,
            }
        )
    return rows


def render_html_report(
    history: InspectionHistory,
    page_folder: str | Path,
    *,
    anomalies_only: bool = False,
    max_thumbnails: int = DEFAULT_MAX_THUMBNAILS,
    generated: str | None = None,
    selection: str = "",
    callback: Callback | None = None,
) -> tuple[str, ReportSummary]:
    """The report page as HTML text.

    Parameters
    ----------
    history : InspectionHistory
        The runs and records to show.
    page_folder : str or Path
        Where the page will be written (links to files are relative to it).
    anomalies_only : bool
        List only anomalous images (the summary and charts still count all).
    max_thumbnails : int
        Previews for at most this many anomalous images, worst first; the rest are
        listed in a table.
    generated : str, optional
        The time shown as the page's creation time (ISO 8601); now when omitted.
    selection : str
        How the runs were selected, shown under the title (e.g. "--since 2026-12-01").
    callback : callable, optional
        ``callback(stage, done, total)`` while previews are made.

    Returns
    -------
    html : str
    summary : ReportSummary
    """
    if max_thumbnails < 0:
        raise ValueError(f"max_thumbnails must be >= 0, got {max_thumbnails}")
    folder = Path(page_folder).resolve()
    run_started = {run["run_id"]: run.get("started") or "" for run in history.runs}
    done = [record for record in history.records if record.get("status") == "done"]
    anomalies = sorted(
        (record for record in done if record.get("is_anomaly")),
        key=lambda record: -(record.get("score") if record.get("score") is not None else -math.inf),
    )
    failed = [record for record in history.records if record.get("status") == "failed"]
    not_started = [record for record in history.records if record.get("status") == "not_started"]
    good = sorted(
        (record for record in done if not record.get("is_anomaly")),
        key=lambda record: -(record.get("score") if record.get("score") is not None else -math.inf),
    )
    skipped = sum((run.get("counts") or {}).get("skipped", 0) or 0 for run in history.runs)

    with_previews = anomalies[:max_thumbnails]
    findings = []
    for index, record in enumerate(with_previews):
        absolute = record.get("absolute_paths") or {}
        preview = thumbnail(absolute["input"], THUMBNAIL_SIDE) if absolute.get("input") else None
        overlay = thumbnail(absolute["overlay"], THUMBNAIL_SIDE) if absolute.get("overlay") else None
        regions = list(record.get("regions") or [])
        findings.append(
            {
                **_row(record, run_started, folder),
                "preview": preview,
                "preview_size": _display_size(preview),
                "overlay": overlay,
                "overlay_size": _display_size(overlay),
                "overlay_given": bool(absolute.get("overlay")),
                "pixel_threshold_text": _score_text(record.get("pixel_threshold")),
                "peak_text": _score_text(record.get("peak")),
                "regions": _region_rows(regions),
                "more_regions": max(0, len(regions) - MAX_REGIONS_SHOWN),
            }
        )
        if callback is not None:
            callback("previews", index + 1, len(with_previews))

    scores = [record.get("score") for record in done]
    thresholds = [record.get("threshold") for record in done]
    summary = ReportSummary(
        runs=len(history.runs),
        images=len(history.records),
        scored=len(done),
        anomalies=len(anomalies),
        failed=len(failed),
        not_started=len(not_started),
        skipped=skipped,
        previews=sum(finding["preview"] is not None for finding in findings),
    )
    started = [run["started"] for run in history.runs if run.get("started")]
    finished = [run["finished"] for run in history.runs if run.get("finished")]

    def rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [_row(record, run_started, folder) for record in records[:MAX_TABLE_ROWS]]

    context = {
        "version": __version__,
        "source": history.source,
        "selection": selection,
        "generated": generated or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "summary": summary,
        "anomaly_rate": f"{len(anomalies) / len(done):.1%}" if done else "–",
        "period": (min(started) if started else "", max(finished or started) if (finished or started) else ""),
        "unfinished_runs": [run for run in history.runs if run.get("state") in ("running", "abandoned")],
        "histogram": score_histogram(scores, thresholds),
        "rate_chart": anomaly_rate_chart(_rate_points(history)),
        "findings": findings,
        "more_anomalies": rows(anomalies[len(with_previews) :]),
        "more_anomalies_left_out": max(0, len(anomalies) - len(with_previews) - MAX_TABLE_ROWS),
        "anomalies_only": anomalies_only,
        "failures": rows(failed),
        "failures_left_out": max(0, len(failed) - MAX_TABLE_ROWS),
        "not_started": rows(not_started),
        "not_started_left_out": max(0, len(not_started) - MAX_TABLE_ROWS),
        "good": rows(good),
        "good_left_out": max(0, len(good) - MAX_TABLE_ROWS),
        "runs": _run_rows(history),
        "runs_left_out": max(0, len(history.runs) - MAX_RUNS_SHOWN),
        "max_table_rows": MAX_TABLE_ROWS,
    }
    html = _environment().get_template("report.html.j2").render(context)
    return html, summary


def write_html_report(
    history: InspectionHistory,
    path: str | Path,
    *,
    anomalies_only: bool = False,
    max_thumbnails: int = DEFAULT_MAX_THUMBNAILS,
    selection: str = "",
    callback: Callback | None = None,
) -> ReportSummary:
    """Render the report (see :func:`render_html_report`) and write it to ``path`` atomically."""
    path = Path(path)
    html, summary = render_html_report(
        history,
        path.parent if str(path.parent) else Path("."),
        anomalies_only=anomalies_only,
        max_thumbnails=max_thumbnails,
        selection=selection,
        callback=callback,
    )
    atomic_write_text(path, html)
    return summary
