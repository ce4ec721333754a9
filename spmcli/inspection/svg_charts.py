"""The geometry of the report's two charts, drawn by the template as inline SVG.

Inline SVG rather than a plotting library: a few dozen rectangles need no
dependency (matplotlib would add tens of megabytes and about a second of import
to every report), they stay sharp at any zoom and in print, their labels are
text a browser can search and a test can read from the DOM, and each bar carries
a tooltip (``<title>``) with its exact numbers. Geometry is computed here; the
template only writes it out (escaped).
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Bar", "Chart", "RatePoint", "anomaly_rate_chart", "score_histogram"]

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 52, 16, 14, 40
MAX_TIME_BARS = 60
_BUCKETS = (
    (3600, "%Y-%m-%d %H:00", "hour"),
    (6 * 3600, "%Y-%m-%d %H:00", "6 hours"),
    (86400, "%Y-%m-%d", "day"),
    (7 * 86400, "%Y-%m-%d", "week"),
    (30 * 86400, "%Y-%m", "30 days"),
)


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str
    highlighted: bool = False


@dataclass
class Chart:
    """Everything the template draws: bars, vertical markers and axis labels, in SVG units."""

    bars: list[Bar]
    x_label: str
    y_label: str
    markers: list[tuple[float, str]] = field(default_factory=list)
    x_ticks: list[tuple[float, str]] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    top: int = TOP
    bottom: int = HEIGHT - BOTTOM


@dataclass(frozen=True)
class RatePoint:
    """One run's numbers for the rate chart."""

    started: dt.datetime
    done: int
    anomalies: int
    failed: int


def _number(value: float) -> str:
    return f"{value:.4g}"


def score_histogram(scores: Sequence[float], thresholds: Sequence[float], bins: int = 40) -> Chart | None:
    """A histogram of image scores with each distinct threshold marked.

    The range ends at the 99.5th percentile (or the largest threshold, if higher),
    so that a few extreme scores do not squeeze the rest into a bar or two; scores
    beyond it are counted in a separate bar at the right, labelled "> end". Bars
    at or above the most used threshold are highlighted. A non-empty bar is at
    least 2 units tall, so a single anomaly among thousands of good images shows.

    Returns None when there is no score.
    """
    values = np.asarray([score for score in scores if score is not None and math.isfinite(score)], dtype=float)
    if values.size == 0:
        return None
    marks = sorted({round(float(value), 6) for value in thresholds if value is not None and math.isfinite(value)})
    main = Counter(round(float(value), 6) for value in thresholds if value is not None).most_common(1)
    main_threshold = main[0][0] if main else None
    low = min(float(values.min()), *(marks or [math.inf]))
    high = max(float(np.quantile(values, 0.995)), *(marks or [-math.inf]))
    if high <= low:
        high = low + 1.0
    high += 0.02 * (high - low)
    edges = np.linspace(low, high, bins + 1)
    counts, _ = np.histogram(values[values <= high], bins=edges)
    beyond = values[values > high]
    chart = Chart(bars=[], x_label="image score", y_label="images")
    plot_height = chart.bottom - chart.top
    top_count = max(int(counts.max()), beyond.size, 1)
    # With scores beyond the range: a gap, then their bar.
    bar_width = (chart.right - chart.left) / (bins + (2 if beyond.size else 0))

    def x_of(value: float) -> float:
        return chart.left + (value - low) / (high - low) * bins * bar_width

    def add_bar(slot: int, count: int, title: str, highlighted: bool) -> None:
        height = 0.0 if count == 0 else max(2.0, count / top_count * plot_height)
        chart.bars.append(
            Bar(
                chart.left + slot * bar_width + 0.5,
                chart.bottom - height,
                max(bar_width - 1.0, 0.5),
                height,
                title,
                highlighted,
            )
        )

    for index, count in enumerate(counts):
        start, stop = edges[index], edges[index + 1]
        above = main_threshold is not None and start >= main_threshold
        add_bar(index, int(count), f"{_number(start)} to {_number(stop)}: {count} image(s)", above)
    chart.x_ticks = [(x_of(value), _number(value)) for value in np.linspace(low, high, 6)]
    if beyond.size:
        title = f"above {_number(high)}: {beyond.size} image(s), up to {_number(float(beyond.max()))}"
        add_bar(bins + 1, beyond.size, title, main_threshold is not None and high >= main_threshold)
        chart.x_ticks.append((chart.left + (bins + 1.5) * bar_width, f"> {_number(high)}"))
    chart.markers = [(x_of(value), f"threshold {_number(value)}") for value in marks[:3]]
    chart.y_ticks = [(chart.bottom, "0"), (chart.top, str(top_count))]
    return chart


def _nice_ceiling(value: float) -> float:
    """The smallest round number (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8 times a power of ten) at least ``value`` (> 0).

    >>> [round(_nice_ceiling(x), 6) for x in (0.273, 0.05, 0.011, 1.0, 0.71)]
    [0.3, 0.05, 0.015, 1.0, 0.8]
    """
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0):
        if step * power >= value * (1 - 1e-12):
            return step * power
    return 10.0 * power


def _bucket(points: Sequence[RatePoint]) -> tuple[list[tuple[str, int, int, int]], str]:
    """Points grouped so that there are at most MAX_TIME_BARS groups: (label, done, anomalies, failed)."""
    if len(points) <= MAX_TIME_BARS:
        return [
            (point.started.strftime("%Y-%m-%d %H:%M"), point.done, point.anomalies, point.failed) for point in points
        ], "run"
    first = min(point.started for point in points).timestamp()
    last = max(point.started for point in points).timestamp()
    seconds, label_format, name = _BUCKETS[-1]
    for candidate in _BUCKETS:
        if (last - first) / candidate[0] < MAX_TIME_BARS:
            seconds, label_format, name = candidate
            break
    groups: dict[int, list[int]] = {}
    for point in points:
        key = int(point.started.timestamp() // seconds)
        group = groups.setdefault(key, [0, 0, 0])
        group[0] += point.done
        group[1] += point.anomalies
        group[2] += point.failed
    return [
        (dt.datetime.fromtimestamp(key * seconds, dt.timezone.utc).strftime(label_format), *numbers)
        for key, numbers in sorted(groups.items())
    ], name


def anomaly_rate_chart(points: Sequence[RatePoint]) -> Chart | None:
    """The share of anomalous images per run, or per hour/day/week when there are many runs.

    Returns None with fewer than two bars to draw (a single run's rate is in the summary).
    """
    groups, unit = _bucket([point for point in points if point.done or point.failed])
    if len(groups) < 2:
        return None
    rates = [anomalies / done if done else 0.0 for _, done, anomalies, _ in groups]
    top_rate = _nice_ceiling(max(max(rates), 0.01))
    chart = Chart(bars=[], x_label=f"start of each {unit} (UTC)", y_label="anomalous")
    plot_width = chart.right - chart.left
    plot_height = chart.bottom - chart.top
    bar_width = plot_width / len(groups)
    for index, ((label, done, anomalies, failed), rate) in enumerate(zip(groups, rates, strict=True)):
        height = 0.0 if anomalies == 0 else max(2.0, rate / top_rate * plot_height)
        title = f"{label}: {anomalies} of {done} scored image(s) anomalous ({rate:.1%})"
        if failed:
            title += f", {failed} failed"
        chart.bars.append(
            Bar(
                x=chart.left + index * bar_width + 0.5,
                y=chart.bottom - height,
                width=max(bar_width - 1.0, 0.5),
                height=height,
                title=title,
                highlighted=anomalies > 0,
            )
        )
    step = max(1, math.ceil(len(groups) / 6))
    chart.x_ticks = [
        (chart.left + (index + 0.5) * bar_width, groups[index][0]) for index in range(0, len(groups), step)
    ]
    chart.y_ticks = [(chart.bottom, "0%"), (chart.top, f"{top_rate:.0%}" if top_rate >= 0.1 else f"{top_rate:.1%}")]
    return chart
