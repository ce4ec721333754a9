"""``detect --db [--new-only]`` through real processes: incremental runs,
overlapping runs, a run killed mid-batch, and the report built from the database."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.filterwarnings("ignore")


def texture(seed: int, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size, :size]
    image = 120 + 50 * np.sin(cols / 3.0) * np.cos(rows / 5.0) + 12 * rng.standard_normal((size, size))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def spmcli(*arguments: object, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spmcli", *map(str, arguments)], capture_output=True, text=True, timeout=timeout
    )


def scored_inputs(database: Path, run_id: int) -> list[str]:
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT input FROM images WHERE run_id = ? AND status = 'done'", (run_id,))
        return sorted(Path(row[0]).name for row in rows)


def last_report(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("db_model")
    good = root / "good"
    good.mkdir()
    for index in range(8):
        Image.fromarray(texture(100 + index)).save(good / f"good_{index}.png")
    path = root / "model.npz"
    result = spmcli("learn-dict", good, "-o", path, "--calibration-images", good, "--n-atoms", "16", "--iters", "1")
    assert result.returncode == 0, result.stderr
    return path


def test_new_only_scores_new_content_once(model, tmp_path):
    incoming, database, report = tmp_path / "incoming", tmp_path / "inspections.sqlite", tmp_path / "run.json"
    incoming.mkdir()
    for index in range(20):
        Image.fromarray(texture(index)).save(incoming / f"img_{index:02d}.png")
    arguments = ["detect", incoming, "--dict", model, "--db", database, "--new-only", "--report", report]

    first = spmcli(*arguments)
    assert first.returncode == 0, first.stderr
    payload = last_report(report)
    assert payload["counts"]["done"] == 20 and payload["run_id"] == 1
    assert len(scored_inputs(database, 1)) == 20

    for index in range(20, 25):
        Image.fromarray(texture(index)).save(incoming / f"img_{index:02d}.png")
    second = spmcli(*arguments, "--jobs", "2")
    assert second.returncode == 0, second.stderr
    assert scored_inputs(database, 2) == [f"img_{index:02d}.png" for index in range(20, 25)]
    assert last_report(report)["counts"]["skipped"] == 20

    os.utime(incoming / "img_03.png")  # touched, same bytes: nothing to score
    shutil.copy(incoming / "img_04.png", incoming / "copy_of_04.png")  # the same content under another name
    third = spmcli(*arguments)
    assert third.returncode == 0 and scored_inputs(database, 3) == []

    Image.fromarray(texture(999)).save(incoming / "img_05.png")  # rewritten in place: new content
    fourth = spmcli(*arguments)
    assert fourth.returncode == 0 and scored_inputs(database, 4) == ["img_05.png"]

    page = tmp_path / "report.html"
    result = spmcli("report", database, "-o", page, "--since", "2000-01-01")
    assert result.returncode == 0 and "Report of 4 run(s)" in result.stdout
    assert page.stat().st_size > 1000


def test_two_overlapping_runs_score_each_image_once(model, tmp_path):
    incoming, database = tmp_path / "incoming", tmp_path / "inspections.sqlite"
    incoming.mkdir()
    for index in range(24):
        Image.fromarray(texture(index)).save(incoming / f"img_{index:02d}.png")
    command = [sys.executable, "-m", "spmcli", "-v", "detect", str(incoming), "--dict", str(model),
               "--db", str(database),
               "--new-only"]  # fmt: skip
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in "ab"]
    outcomes = [process.communicate(timeout=300) for process in processes]
    for process, (_, stderr) in zip(processes, outcomes, strict=True):
        assert process.returncode == 0, stderr
        assert "locked" not in stderr
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT input, COUNT(*) FROM images WHERE status = 'done' GROUP BY input").fetchall()
        runs = connection.execute("SELECT COUNT(*) FROM runs WHERE state = 'finished'").fetchone()[0]
    assert len(rows) == 24 and all(count == 1 for _, count in rows)
    assert runs == 2


def test_a_run_killed_mid_batch_leaves_a_readable_database(model, tmp_path):
    incoming, database = tmp_path / "incoming", tmp_path / "inspections.sqlite"
    incoming.mkdir()
    for index in range(60):
        Image.fromarray(texture(index, size=160)).save(incoming / f"img_{index:02d}.png")
    command = [sys.executable, "-m", "spmcli", "-v", "detect", str(incoming), "--dict", str(model),
               "--db", str(database),
               "--new-only"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    done = 0
    while time.monotonic() < deadline and process.poll() is None:
        if database.exists():
            try:
                with sqlite3.connect(database, timeout=5) as connection:
                    done = connection.execute("SELECT COUNT(*) FROM images WHERE status = 'done'").fetchone()[0]
            except sqlite3.OperationalError:
                done = 0
            if done >= 3:
                break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finished = connection.execute("SELECT COUNT(*) FROM images WHERE status = 'done'").fetchone()[0]
    assert 3 <= finished < 60
    # The next run takes over the killed run's claims and scores the rest, once.
    result = spmcli(*command[3:])
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(database) as connection:
        counts = connection.execute(
            "SELECT COUNT(DISTINCT input), COUNT(*) FROM images WHERE status = 'done'"
        ).fetchone()
    assert counts == (60, 60)


def test_database_options_are_checked_before_scoring(model, tmp_path):
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    Image.fromarray(texture(0)).save(incoming / "a.png")
    result = spmcli("detect", incoming, "--dict", model, "--new-only")
    assert result.returncode == 2 and "--new-only needs --db" in result.stderr
    not_sqlite = tmp_path / "notes.sqlite"
    not_sqlite.write_text("my notes, not a database\n")
    result = spmcli("detect", incoming, "--dict", model, "--db", not_sqlite)
    assert result.returncode == 3 and "Traceback" not in result.stderr
    first_error = next(line for line in result.stderr.splitlines() if line.startswith("Error:"))
    assert first_error.startswith(f"Error: {not_sqlite}")
    assert not_sqlite.read_text() == "my notes, not a database\n"
