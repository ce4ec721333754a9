"""The HTML report without a browser: what it lists and in which order, escaping, caps,
links, the charts' numbers, the JSON and database sources, and the report command."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from html import unescape
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))  # the tests' own helper modules

from report_fixtures import HOSTILE_NAME, fill_database, make_inspection, write_json_report

from spmcli.cli import cli
from spmcli.errors import SpmcliError
from spmcli.inspection import html_report
from spmcli.inspection.history import history_from_json, load_history
from spmcli.inspection.html_report import render_html_report, write_html_report
from spmcli.inspection.svg_charts import RatePoint, anomaly_rate_chart, score_histogram


def listed(html: str) -> list[tuple[str, float | None]]:
    """(verdict, score) of every listed image, in page order."""
    found = re.findall(r'<(?:article|tr)[^>]*? data-verdict="([a-z_]+)"(?: data-score="([^"]+)")?', html)
    return [(verdict, float(score) if score else None) for verdict, score in found]


@pytest.fixture(scope="module")
def inspection(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inspection")
    records = make_inspection(folder, n_good=6, n_anomalous=4, n_failed=2)
    return folder, records


def test_anomalies_come_first_worst_first_then_failures_then_the_rest(inspection):
    folder, records = inspection
    history = history_from_json(write_json_report(folder / "run.json", records))
    html, summary = render_html_report(history, folder)
    order = listed(html)
    anomalies = sorted((record["score"] for record in records if record.get("is_anomaly")), reverse=True)
    good = sorted(record["score"] for record in records if record["status"] == "done" and not record["is_anomaly"])
    assert order == (
        [("anomaly", score) for score in anomalies]
        + [("failed", None)] * 2
        + [("good", score) for score in reversed(good)]
    )
    assert (summary.scored, summary.anomalies, summary.failed, summary.previews) == (10, 4, 2, 4)
    assert html.count("<img ") == 8  # each anomaly: its preview and its overlay
    assert "corrupt PNG file (truncated)" in html
    # Each finding says its score, threshold, map peak and pixel threshold.
    for score in anomalies:
        assert f'score <span class="score">{score:.3f}</span> &gt; threshold' in html
        assert f"peak {score + 1.25:.3f} · pixel threshold 1.700" in html
    assert "spmcli detect incoming/ --dict model.npz --report run.json" in html  # the argument list, joined


def test_untrusted_text_is_escaped_and_the_page_loads_nothing(inspection):
    folder, records = inspection
    html, _ = render_html_report(history_from_json(write_json_report(folder / "run.json", records)), folder)
    assert "<img src=x" not in html and "<any>" not in html
    assert unescape("part_&lt;img src=x onerror=alert(1)&gt;&amp;&#34;q&#34;.png") == HOSTILE_NAME
    assert "part_&lt;img src=x onerror=alert(1)&gt;&amp;" in html
    assert "intensity: darker than &lt;any&gt; good patch" in html
    assert "<script" not in html
    assert "default-src 'none'; img-src data:" in html
    sources = re.findall(r'<img src="([^"]*)"', html)
    assert sources and all(source.startswith("data:image/jpeg;base64,") for source in sources)


def test_links_are_relative_to_the_page_and_quoted(inspection, tmp_path):
    folder, records = inspection
    history = history_from_json(write_json_report(folder / "run.json", records))
    page_folder = tmp_path / "reports"
    page_folder.mkdir()
    html, _ = render_html_report(history, page_folder)
    overlay = next(record["overlay"] for record in records if record.get("is_anomaly"))
    assert f'href="{os.path.relpath(overlay, page_folder)}"' in html
    hostile_link = "part_%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E%26%22q%22.png"
    assert hostile_link in html


def test_previews_and_tables_are_capped(inspection, monkeypatch):
    folder, records = inspection
    history = history_from_json(write_json_report(folder / "run.json", records))
    monkeypatch.setattr(html_report, "MAX_TABLE_ROWS", 3)
    html, summary = render_html_report(history, folder, max_thumbnails=1)
    assert summary.previews == 1 and html.count("<article") == 1
    assert [verdict for verdict, _ in listed(html)] == ["anomaly"] * 4 + ["failed"] * 2 + ["good"] * 3
    assert "and 3 more below these scores, not listed" in html


def test_anomalies_only_lists_only_anomalies(inspection):
    folder, records = inspection
    html, summary = render_html_report(
        history_from_json(write_json_report(folder / "run.json", records)), folder, anomalies_only=True
    )
    assert {verdict for verdict, _ in listed(html)} == {"anomaly"}
    assert summary.scored == 10  # the summary still counts every image


def test_a_missing_image_gets_a_placeholder_not_a_broken_image(inspection, tmp_path):
    _, records = inspection
    moved = [dict(record) for record in records]
    for record in moved:
        if record.get("is_anomaly"):
            record["input"] = str(tmp_path / "gone.png")
    html, summary = render_html_report(history_from_json(write_json_report(tmp_path / "run.json", moved)), tmp_path)
    assert summary.previews == 0
    assert html.count("image not found or unreadable") == 4
    assert html.count("<img ") == 4  # the overlays only


def test_the_histogram_counts_every_score_and_marks_the_threshold():
    scores = [1.0] * 500 + [1.5] * 300 + [9.0]  # one anomaly among 800 good images
    chart = score_histogram(scores, [2.5] * 801, bins=20)
    filled = [bar for bar in chart.bars if bar.height]
    assert len(chart.bars) == 21 and len(filled) == 3
    assert [bar.title.split(": ")[1] for bar in filled] == ["500 image(s)", "300 image(s)", "1 image(s), up to 9"]
    assert filled[-1].height == 2.0  # the lone anomaly, beyond the range (up to 2.53), still shows
    assert [bar.highlighted for bar in filled] == [False, False, True]
    assert chart.x_ticks[-1][1] == "> 2.53"
    [(x, label)] = chart.markers
    low, high = 1.0, 2.5 + 0.02 * 1.5
    bar_width = (chart.right - chart.left) / 22
    assert label == "threshold 2.5"
    assert x == pytest.approx(chart.left + (2.5 - low) / (high - low) * 20 * bar_width)
    # Without outliers every score is in range and no extra bar is drawn.
    assert len(score_histogram([1.0, 2.0, 3.0], [2.5], bins=20).bars) == 20
    assert score_histogram([], [2.5]) is None


def test_the_rate_chart_groups_many_runs_by_time_and_keeps_the_totals():
    start = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)
    points = [RatePoint(start + dt.timedelta(minutes=5 * index), 10, index % 3, 0) for index in range(600)]
    chart = anomaly_rate_chart(points)  # 600 runs over 50 hours: hourly bars
    assert len(chart.bars) == 50
    first = chart.bars[0].title
    assert first == "2026-12-01 00:00: 12 of 120 scored image(s) anomalous (10.0%)"
    assert anomaly_rate_chart(points[:1]) is None


def test_a_minimal_report_is_rendered(tmp_path):
    # Only what is required: the model's hash, an input and a status per record.
    report = tmp_path / "minimal.json"
    minimal = {"settings": {"model": {"sha256": "ab"}}, "records": [{"input": "a.png", "status": "done"}]}
    report.write_text(json.dumps(minimal))
    html, summary = render_html_report(load_history(report), tmp_path)
    assert summary.scored == 1 and listed(html) == [("good", None)]


def test_a_legacy_json_report_is_read(inspection, tmp_path):
    _, records = inspection
    legacy = {
        "report_format": 1,
        "spmcli_version": "0.1.0",
        "dictionary": {"path": "model.npz", "sha256": "ab" * 32},
        "threshold": 2.5,
        "detector_mode": "pooled",
        "counts": {"images": 12, "anomalies": 4, "failures": 2},
        "images": [
            {"path": record["input"], "score": record.get("score"), "is_anomaly": record.get("is_anomaly"),
             "threshold": 2.5, "overlay": record.get("overlay"), "anomaly_map": record.get("anomaly_map"),
             "error": record.get("error")}
            for record in records
        ],
    }  # fmt: skip
    path = tmp_path / "old.json"
    path.write_text(json.dumps(legacy))
    _, summary = render_html_report(load_history(path), tmp_path)
    assert (summary.scored, summary.anomalies, summary.failed) == (10, 4, 2)


def test_relative_paths_of_a_json_report_are_found_beside_it(inspection, tmp_path, monkeypatch):
    folder, records = inspection
    relative = [
        {**record, **{key: os.path.relpath(record[key], folder) for key in ("input", "overlay") if record.get(key)}}
        for record in records
    ]
    report = write_json_report(folder / "relative.json", relative)
    monkeypatch.chdir(tmp_path)  # elsewhere: the paths are relative to the report's folder
    history = history_from_json(report)
    anomaly = next(record for record in history.records if record.get("is_anomaly"))
    assert Path(anomaly["absolute_paths"]["overlay"]).is_file()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json at all", "neither an inspection database nor a JSON report"),
        ('{"command": "reconstruct", "records": []}', "a report of `reconstruct`, not of detect"),
        ('{"records": [{"score": 1}]}', "record 0 has no input path"),
        ("[1, 2]", "not a detect report"),
    ],
)
def test_bad_report_files_are_refused_with_the_cause(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(SpmcliError, match=re.escape(message)):
        load_history(path)


def test_a_database_source_selects_runs(inspection, tmp_path):
    _, records = inspection
    database = tmp_path / "inspections.sqlite"
    runs = [("2026-11-30T10:00:00Z", records[:4]), ("2026-12-01T10:00:00Z", records[4:8])]
    fill_database(database, [*runs, ("2026-12-02T10:00:00Z", records[8:])])
    assert len(load_history(database).runs) == 3
    assert [run["run_id"] for run in load_history(database, since="2026-12-01").runs] == [2, 3]
    assert [record["input"] for record in load_history(database, run_ids=[2]).records] == [
        record["input"] for record in records[4:8]
    ]
    with pytest.raises(SpmcliError, match=r"no run 7 in the database \(its runs are 1 to 3\)"):
        load_history(database, run_ids=[7])
    with pytest.raises(SpmcliError, match="no selected run started on or after 2027-01-01"):
        load_history(database, since="2027-01-01")


# --- the command --------------------------------------------------------------------------------


def test_report_command_writes_the_page_and_sums_up(inspection, tmp_path):
    _, records = inspection
    database = tmp_path / "inspections.sqlite"
    fill_database(database, [("2026-12-01T10:00:00Z", records)])
    output = tmp_path / "report.html"
    result = CliRunner().invoke(cli, ["report", str(database), "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"Report of 1 run(s): 10 image(s) scored, 4 anomalous, 2 failed -> {output}"
    assert [verdict for verdict, _ in listed(output.read_text())][:4] == ["anomaly"] * 4
    assert not [name for name in os.listdir(tmp_path) if ".part" in name]


def test_report_of_an_empty_database_is_one_error_line(tmp_path):
    database = tmp_path / "inspections.sqlite"
    from spmcli.inspection.database import InspectionDatabase

    InspectionDatabase.open(database).close()
    result = subprocess.run(
        [sys.executable, "-m", "spmcli", "report", str(database), "-o", str(tmp_path / "r.html")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3
    assert result.stderr.splitlines() == [
        f"Error: {database}: the database holds no runs yet (spmcli detect ... --db FILE records them)"
    ]
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize(
    ("arguments", "code", "message"),
    [
        (["--since", "yesterday"], 2, "is not an ISO 8601 date or time"),
        (["--run", "0"], 2, "0 is not in the range x>=1"),
        (["--run", "3"], 3, "--run selects runs of a database"),
        (["--max-thumbnails", "-1"], 2, "-1 is not in the range x>=0"),
    ],
)
def test_report_command_usage_errors(inspection, tmp_path, arguments, code, message):
    _, records = inspection
    report = write_json_report(tmp_path / "run.json", records)
    result = CliRunner().invoke(cli, ["report", str(report), "-o", str(tmp_path / "r.html"), *arguments])
    assert result.exit_code == code
    assert message in result.output


def test_report_command_follows_the_output_rule(inspection, tmp_path):
    _, records = inspection
    report = write_json_report(tmp_path / "run.json", records)
    # A missing folder is created, as for every output option ...
    result = CliRunner().invoke(cli, ["report", str(report), "-o", str(tmp_path / "new" / "r.html")])
    assert result.exit_code == 0 and (tmp_path / "new" / "r.html").is_file()
    # ... a file in the way of a folder is a usage error.
    (tmp_path / "blocker").write_text("x")
    result = CliRunner().invoke(cli, ["report", str(report), "-o", str(tmp_path / "blocker" / "r.html")])
    assert result.exit_code == 2 and "is not a folder" in result.output


def test_a_failed_report_leaves_the_previous_page_untouched(inspection, tmp_path, monkeypatch):
    _, records = inspection
    history = history_from_json(write_json_report(tmp_path / "run.json", records))
    output = tmp_path / "report.html"
    output.write_text("previous report")

    def broken(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(html_report, "thumbnail", broken)
    with pytest.raises(KeyboardInterrupt):
        write_html_report(history, output)
    assert output.read_text() == "previous report"
    assert not [name for name in os.listdir(tmp_path) if ".part" in name]


def test_a_read_only_database_can_still_be_reported(inspection, tmp_path):
    _, records = inspection
    database = tmp_path / "inspections.sqlite"
    fill_database(database, [("2026-12-01T10:00:00Z", records)])
    database.chmod(0o444)
    # As root, drop the power to write any file (CAP_DAC_OVERRIDE); setpriv is in util-linux.
    prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"] if os.geteuid() == 0 else []
    output = tmp_path / "report.html"
    result = subprocess.run(
        [*prefix, sys.executable, "-m", "spmcli", "report", str(database), "-o", str(output)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "4 anomalous" in result.stdout and output.is_file()
