"""``spmcli report``: an HTML page of inspection results, from a database or a JSON report."""

from __future__ import annotations

from pathlib import Path

import click

from ..inspection.database import parse_timestamp
from ..inspection.history import load_history
from ..inspection.html_report import DEFAULT_MAX_THUMBNAILS, write_html_report
from ._common import prepare_output_file, progress_bar, say

EPILOG = """\b
Examples:
  spmcli report inspections.sqlite -o report.html
  spmcli report inspections.sqlite -o today.html --since 2026-12-01 --anomalies-only
  spmcli report inspections.sqlite -o run.html --run 42
  spmcli report run.json -o report.html
"""


def _since(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parse_timestamp(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 date or time (e.g. 2026-12-01 or 2026-12-01T08:00:00Z)"
        ) from None
    return value


@click.command(name="report", epilog=EPILOG)
@click.argument("source", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "-o", "--output", required=True, type=click.Path(dir_okay=False), help="The HTML page to write (atomically)."
)
@click.option(
    "--since",
    callback=_since,
    default=None,
    metavar="DATE",
    help="Only runs started at or after DATE (ISO 8601; UTC unless it gives a zone).",
)
@click.option(
    "--run", "run_ids", type=click.IntRange(min=1), multiple=True, metavar="ID", help="Only this run (repeatable)."
)
@click.option("--anomalies-only", is_flag=True, help="List only anomalous images (summary and charts count all).")
@click.option(
    "--max-thumbnails",
    type=click.IntRange(min=0),
    metavar="N",
    default=DEFAULT_MAX_THUMBNAILS,
    show_default=True,
    help="Previews for at most this many anomalous images (worst first); the rest are listed in a table.",
)
@click.pass_context
def command(
    ctx: click.Context,
    source: str,
    output: str,
    since: str | None,
    run_ids: tuple[int, ...],
    anomalies_only: bool,
    max_thumbnails: int,
) -> None:
    """Write one self-contained HTML page from SOURCE: an inspection database
    (detect --db) or one detect JSON report (detect --report).

    The page sums up the selected runs (images, anomalies, failures, anomaly rate
    over time), shows the distribution of scores with the threshold, lists the
    anomalous images first (worst first, with previews, overlays, scores, regions
    and explanations), then failures and the other images, with links to the
    image, overlay, anomaly map and mask files. Previews are embedded; the page
    needs no network or server. Without --since or --run, every run is included.
    """
    target = prepare_output_file(output, "-o", extensions=(".html", ".htm"), inputs=[Path(source)])
    history = load_history(source, since=since, run_ids=list(run_ids) or None)
    selection = ", ".join(
        part
        for part in (
            f"runs started since {since}" if since else "",
            f"run(s) {', '.join(map(str, run_ids))}" if run_ids else "",
            "anomalies only" if anomalies_only else "",
        )
        if part
    )
    with progress_bar(ctx, None, "previews", unit="img") as bar:

        def advance(stage: str, done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        summary = write_html_report(
            history,
            target,
            anomalies_only=anomalies_only,
            max_thumbnails=max_thumbnails,
            selection=selection,
            callback=advance,
        )
    say(
        ctx,
        f"Report of {summary.runs} run(s): {summary.scored} image(s) scored, {summary.anomalies} anomalous, "
        f"{summary.failed} failed -> {output}",
    )
