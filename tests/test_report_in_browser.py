"""The report page in a real browser (headless Chromium): anomalous images first with
their scores, every image loaded, untrusted names shown as text, and a screenshot that
is not blank.

Chromium is required, not optional: CI installs Debian's ``chromium`` (``.ci/run``),
and without it these tests fail rather than skip. Set ``SPMCLI_CHROMIUM`` to use
another Chromium or Chrome executable.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))  # the tests' own helper modules

from headless_chromium import Browser, find_chromium
from report_fixtures import HOSTILE_NAME, fill_database, make_inspection, write_json_report

from spmcli.cli import cli

# Each listed image's verdict, score attribute and score as shown, in page order; and
# whether the anomalies' section is laid out above the others.
LISTING = """
(() => {
  const items = [...document.querySelectorAll("article[data-verdict], tr[data-verdict]")];
  const top = (selector) => document.querySelector(selector).getBoundingClientRect().top;
  return {
    items: items.map(e => [e.dataset.verdict, e.dataset.score ?? null, e.querySelector(".score")?.textContent ?? null]),
    anomaliesTop: top("#anomalies"), failuresTop: top("#failures"), goodTop: top("#good"),
    images: [...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight]),
    injected: document.querySelectorAll("img[onerror], script").length,
    text: document.body.innerText,
  };
})()
"""


@pytest.fixture(scope="module")
def browser():
    executable = find_chromium()
    if executable is None:
        pytest.fail(
            "Chromium not found: install Debian's chromium (apt-get install chromium; .ci/run does) "
            "or set SPMCLI_CHROMIUM to a Chromium or Chrome executable",
            pytrace=False,
        )
    with Browser(executable) as opened:
        yield opened


def render(source: Path, output: Path) -> None:
    result = CliRunner().invoke(cli, ["report", str(source), "-o", str(output)])
    assert result.exit_code == 0, result.output


def check_page(browser: Browser, page: Path, records: list[dict], screenshot: Path) -> dict:
    browser.open(page.resolve().as_uri())
    seen = browser.evaluate(LISTING)
    anomalies = sorted((record for record in records if record.get("is_anomaly")), key=lambda r: -r["score"])
    assert anomalies, "the fixture must hold anomalies"

    # The anomalous images come first, worst first, each showing its score.
    head = seen["items"][: len(anomalies)]
    assert [verdict for verdict, _, _ in head] == ["anomaly"] * len(anomalies)
    assert [float(score) for _, score, _ in head] == [record["score"] for record in anomalies]
    assert [shown for _, _, shown in head] == [f"{record['score']:.3f}" for record in anomalies]
    assert all(verdict != "anomaly" for verdict, _, _ in seen["items"][len(anomalies) :])
    assert seen["anomaliesTop"] < seen["failuresTop"] < seen["goodTop"]

    # Every image element loaded: a preview and an overlay per anomaly.
    assert len(seen["images"]) == 2 * len(anomalies)
    assert all(complete and width > 0 and height > 0 for complete, width, height in seen["images"])

    # A hostile file name is text, not markup.
    assert HOSTILE_NAME in seen["text"] and seen["injected"] == 0

    # The screenshot is not blank: varied pixels, and the red of anomalies on it.
    png = browser.screenshot()
    screenshot.write_bytes(png)
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    assert pixels.shape[0] > 900 and pixels.shape[1] >= 1200
    background = np.array([246, 247, 249])
    assert np.mean(np.abs(pixels - background).sum(axis=2) > 30) > 0.05
    red = (pixels[:, :, 0] > 170) & (pixels[:, :, 1] < 80) & (pixels[:, :, 2] < 80)
    assert red.sum() > 500
    return seen


def test_the_page_of_a_json_report_in_chromium(browser, tmp_path):
    records = make_inspection(tmp_path, n_good=6, n_anomalous=4, n_failed=2, seed=1)
    page = tmp_path / "report.html"
    render(write_json_report(tmp_path / "run.json", records), page)
    seen = check_page(browser, page, records, tmp_path / "screenshot.png")
    assert "Anomalous images (4), worst first" in seen["text"]


def test_the_page_of_a_database_in_chromium(browser, tmp_path):
    first = make_inspection(tmp_path / "monday", n_good=5, n_anomalous=3, n_failed=1, seed=2)
    second = make_inspection(tmp_path / "tuesday", n_good=7, n_anomalous=2, n_failed=0, seed=3)
    database = tmp_path / "inspections.sqlite"
    fill_database(database, [("2026-12-01T08:00:00Z", first), ("2026-12-02T08:00:00Z", second)])
    page = tmp_path / "reports" / "report.html"
    page.parent.mkdir()
    render(database, page)
    seen = check_page(browser, page, first + second, tmp_path / "screenshot.png")
    assert "Anomaly rate over time" in seen["text"]
