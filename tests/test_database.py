"""The inspection database: incremental runs, the content-hash cache, schema versions,
bad files, read-only files, concurrent runs in real processes, and SIGKILL."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from spmcli.inspection import database as database_module
from spmcli.inspection.database import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    DatabaseError,
    InspectionDatabase,
    file_identity,
)

WORKER = Path(__file__).with_name("database_worker.py")
MODEL = {"path": "model.npz", "sha256": "0" * 64, "threshold": 2.5, "mode": "pooled"}
COUNTS = {"inputs": 0, "done": 0, "failed": 0, "skipped": 0, "not_started": 0, "anomalies": 0}
AN_HOUR_AGO = time.time() - 3600


def write_image_file(path: Path, seed: int) -> Path:
    """Bytes standing in for an image (the database never decodes them), dated an hour ago
    so that their cached hashes are trusted (see RACY_SECONDS)."""
    path.write_bytes(hashlib.sha256(str(seed).encode()).digest() * 64)
    os.utime(path, (AN_HOUR_AGO, AN_HOUR_AGO))
    return path


def make_folder(folder: Path, count: int, first: int = 0) -> list[Path]:
    folder.mkdir(exist_ok=True)
    return [write_image_file(folder / f"image_{index:03d}.png", index) for index in range(first, first + count)]


def done(name: str | Path, score: float = 1.0, **fields) -> dict:
    return {"input": str(name), "status": "done", "score": score, "threshold": 2.5, "is_anomaly": score > 2.5, **fields}


def run_once(database: InspectionDatabase, paths, *, new_only: bool = True, model: dict = MODEL) -> list[str]:
    """A whole run as detect makes it: start, claim, record the claimed, finish. Returns what it scored."""
    run_id = database.start_run(command="detect", command_line="spmcli detect", settings={"model": model})
    claims = database.claim(run_id, paths, new_only=new_only)
    scored = [claim.input for claim in claims if claim.decision == "score"]
    for name in scored:
        database.record_image(run_id, done(name))
    counts = {**COUNTS, "inputs": len(claims), "done": len(scored), "skipped": len(claims) - len(scored)}
    database.finish_run(run_id, counts, exit_code=0)
    return scored


@pytest.fixture
def database(tmp_path):
    with InspectionDatabase.open(tmp_path / "inspections.sqlite") as opened:
        yield opened


def names(paths) -> list[str]:
    return [str(path) for path in paths]


def test_a_new_database_is_versioned_and_in_wal_mode(tmp_path):
    path = tmp_path / "inspections.sqlite"
    InspectionDatabase.open(path).close()
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert connection.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"models", "runs", "images", "claims", "file_hashes"} <= tables


def test_new_only_scores_only_new_content(tmp_path, database):
    folder = tmp_path / "incoming"
    first = make_folder(folder, 20)
    assert run_once(database, first) == names(first)
    assert database.totals()["images"] == 20

    added = make_folder(folder, 5, first=20)
    everything = sorted(folder.iterdir())
    assert run_once(database, everything) == names(added)

    # Touching a file (new modification time, same bytes) scores nothing.
    os.utime(first[3])
    assert run_once(database, sorted(folder.iterdir())) == []

    # Rewriting one in place scores it again; renaming and copying score nothing.
    write_image_file(first[7], seed=1000)
    first[8].rename(folder / "renamed.png")
    (folder / "copy.png").write_bytes(first[9].read_bytes())
    assert run_once(database, sorted(folder.iterdir())) == [str(first[7])]
    assert database.totals()["images"] == 26


def test_skip_reasons_name_the_earlier_run_and_duplicates(tmp_path, database):
    paths = make_folder(tmp_path / "incoming", 2)
    run_once(database, paths)
    duplicate = tmp_path / "incoming" / "duplicate_a.png"
    duplicate.write_bytes(b"same bytes")
    twin = tmp_path / "incoming" / "duplicate_b.png"
    twin.write_bytes(b"same bytes")
    run_id = database.start_run(command="detect", command_line="x", settings={"model": MODEL})
    claims = database.claim(run_id, [*paths, duplicate, twin], new_only=True)
    assert [claim.decision for claim in claims] == ["skip", "skip", "score", "skip"]
    assert claims[0].reason == f"already scored with this model by run 1 (as {paths[0]})"
    assert claims[3].reason == f"same content as {duplicate}"
    assert claims[2].identity == file_identity(duplicate)


def test_without_new_only_everything_is_scored_and_a_new_model_rescores(tmp_path, database):
    paths = make_folder(tmp_path / "incoming", 4)
    run_once(database, paths)
    assert run_once(database, paths, new_only=False) == names(paths)
    assert run_once(database, paths, model={**MODEL, "sha256": "1" * 64}) == names(paths)
    assert run_once(database, paths) == []


def test_failed_and_not_started_images_are_tried_again(tmp_path, database):
    paths = make_folder(tmp_path / "incoming", 3)
    run_id = database.start_run(command="detect", command_line="x", settings={"model": MODEL})
    database.claim(run_id, paths, new_only=True)
    database.record_image(run_id, done(paths[0]))
    database.record_image(run_id, {"input": str(paths[1]), "status": "failed", "error": "out of memory"})
    database.record_image(run_id, {"input": str(paths[2]), "status": "not_started"})
    database.finish_run(run_id, {**COUNTS, "inputs": 3, "done": 1, "failed": 1, "not_started": 1}, exit_code=143)
    assert run_once(database, paths) == names(paths[1:])


def test_claims_left_unrecorded_are_released_at_finish(tmp_path, database):
    paths = make_folder(tmp_path / "incoming", 3)
    run_id = database.start_run(command="detect", command_line="x", settings={"model": MODEL})
    database.claim(run_id, paths, new_only=True)
    database.record_image(run_id, done(paths[0]))
    database.finish_run(run_id, {**COUNTS, "inputs": 3, "done": 1}, exit_code=130)
    assert run_once(database, paths) == names(paths[1:])


def test_a_rerun_hashes_only_new_and_changed_files(tmp_path, database, monkeypatch):
    folder = tmp_path / "incoming"
    paths = make_folder(folder, 30)
    run_once(database, paths)
    hashed: list[str] = []
    real_hash = database_module.hash_file

    def counting_hash(path):
        hashed.append(str(path))
        return real_hash(path)

    monkeypatch.setattr(database_module, "hash_file", counting_hash)
    new = make_folder(folder, 3, first=30)
    assert run_once(database, sorted(folder.iterdir())) == names(new)
    assert sorted(hashed) == sorted(os.path.abspath(path) for path in new)

    # Same size, same modification time, new bytes (as `cp -p` leaves it): the change
    # time gives it away, so it is hashed and scored again.
    hashed.clear()
    target = paths[5]
    status = target.stat()
    target.write_bytes(bytes(reversed(target.read_bytes())))
    os.utime(target, ns=(status.st_atime_ns, status.st_mtime_ns))
    assert target.stat().st_size == status.st_size and target.stat().st_mtime_ns == status.st_mtime_ns
    assert run_once(database, sorted(folder.iterdir())) == [str(target)]
    assert hashed == [os.path.abspath(target)]


def test_a_file_hashed_right_after_it_was_written_is_hashed_again(tmp_path, database, monkeypatch):
    path = tmp_path / "fresh.png"
    path.write_bytes(b"just written")  # modified "now": within RACY_SECONDS of being hashed
    database.identify([path])
    hashed = []
    real_hash = database_module.hash_file
    monkeypatch.setattr(database_module, "hash_file", lambda name: hashed.append(name) or real_hash(name))
    database.identify([path])
    assert hashed == [os.path.abspath(path)]


def test_an_unreadable_input_is_scored_so_that_reading_it_reports_the_problem(tmp_path, database):
    run_id = database.start_run(command="detect", command_line="x", settings={"model": MODEL})
    [claim] = database.claim(run_id, [tmp_path / "missing.png"], new_only=True)
    assert claim.decision == "score" and claim.identity is None
    assert "No such file" in claim.reason


def test_a_transaction_cut_short_by_a_signal_does_not_block_the_next(tmp_path, database):
    paths = make_folder(tmp_path / "incoming", 2)
    run_id = database.start_run(command="detect", command_line="x", settings={"model": MODEL})
    database.claim(run_id, paths, new_only=True)
    # As if SIGTERM had struck after a BEGIN and again before its rollback ran.
    database._connection.execute("BEGIN IMMEDIATE")
    database.record_image(run_id, done(paths[0]))
    assert [record["input"] for record in database.records([run_id])] == [str(paths[0])]


def test_records_round_trip_in_input_order(tmp_path, database):
    paths = make_folder(tmp_path / "incoming", 3)
    run_id = database.start_run(command="detect", command_line="spmcli detect x", settings={"model": MODEL})
    database.claim(run_id, paths, new_only=False)
    regions = [
        {
            "bbox": [1, 2, 30, 40],
            "area": 120,
            "peak": 5.2,
            "mean": 3.3,
            "feature": "structure",
            "explanation": "structure: residual 6.1x the good patches'",
        }
    ]
    full = done(
        paths[2],
        score=3.1,
        seconds=0.12,
        warnings=["low contrast"],
        pixel_threshold=1.7,
        anomaly_map="maps/a_anomaly.tiff",
        overlay="maps/a_overlay.png",
        mask="masks/a_mask.png",
        regions=regions,
        error=None,
        label="defective",  # a field the schema has no column for
    )
    # Recorded out of order (as a process pool finishes them): read back in input order.
    database.record_image(run_id, full)
    database.record_image(run_id, {"input": str(paths[0]), "status": "failed", "error": "corrupt PNG file"})
    database.record_image(run_id, done(paths[1]))
    database.finish_run(run_id, {**COUNTS, "inputs": 3, "done": 2, "failed": 1, "anomalies": 1}, exit_code=3)

    records = database.records([run_id])
    assert [record["input"] for record in records] == names(paths)
    stored = records[2]
    for key, value in full.items():
        assert stored[key] == value, key
    assert stored["sha256"] == file_identity(paths[2]).sha256
    assert stored["absolute_paths"]["overlay"] == os.path.abspath("maps/a_overlay.png")
    assert records[0]["status"] == "failed" and records[0]["score"] is None
    assert [record["input"] for record in database.records([run_id], anomalies_only=True)] == [str(paths[2])]

    [run] = database.runs()
    assert run["state"] == "finished" and run["exit_code"] == 3
    assert run["counts"] == {**COUNTS, "inputs": 3, "done": 2, "failed": 1, "anomalies": 1}
    assert run["settings"]["model"] == MODEL
    assert database.run_report(run_id)["records"] == records


def test_a_run_header_in_the_batch_engines_shape_round_trips(tmp_path, database):
    # The model beside the settings (not in them) and the command line as a list.
    command_line = ["spmcli", "detect", "in coming/", "--db", "x.sqlite"]
    model = {**MODEL, "threshold_method": "given with --threshold"}
    settings = {"model": "model.npz", "threshold": 2.5, "max_pixels": None}
    started = "2026-12-01T08:00:00.123+00:00"
    run_id = database.start_run(
        command="detect", command_line=command_line, settings=settings, model=model, started=started
    )
    [run] = database.runs()
    assert (run["command_line"], run["settings"], run["model"]) == (command_line, settings, model)
    assert run["started"] == started
    with pytest.raises(ValueError, match="sha256"):
        database.start_run(command="detect", command_line="x", settings=settings)
    assert run_id == 1


def test_skipped_records_are_counted_not_stored(tmp_path, database):
    run_id = database.start_run(command="detect", command_line="x", settings={"model": MODEL})
    database.record_image(run_id, {"input": "a.png", "status": "skipped", "warnings": ["already scored"]})
    assert database.records([run_id]) == []
    with pytest.raises(ValueError, match="status must be one of"):
        database.record_image(run_id, {"input": "a.png", "status": "great"})


def test_runs_are_selected_by_start_time_and_id(tmp_path, database):
    for started in ("2026-11-30T23:59:59Z", "2026-12-01T00:00:00Z", "2026-12-02T08:00:00+00:00"):
        run_id = database.start_run(command="detect", command_line="x", settings={"model": MODEL}, started=started)
        database.finish_run(run_id, COUNTS, exit_code=0)
    assert [run["run_id"] for run in database.runs()] == [1, 2, 3]
    assert [run["run_id"] for run in database.runs(since="2026-12-01")] == [2, 3]
    assert [run["run_id"] for run in database.runs(since="2026-12-02T07:00:00")] == [3]
    assert [run["run_id"] for run in database.runs(run_ids=[1, 3])] == [1, 3]


def test_a_run_started_but_never_finished_reads_running_then_abandoned(tmp_path):
    path = tmp_path / "inspections.sqlite"
    first = InspectionDatabase.open(path)
    run_id = first.start_run(command="detect", command_line="x", settings={"model": MODEL})
    with InspectionDatabase.open(path) as second:
        assert second.runs()[0]["state"] == "running"
        first.close()  # the process ends without finish_run: its lock goes with it
        assert second.runs()[0]["state"] == "abandoned"
    assert run_id == 1


def test_a_live_runs_claims_are_left_alone(tmp_path):
    paths = make_folder(tmp_path / "incoming", 4)
    path = tmp_path / "inspections.sqlite"
    with InspectionDatabase.open(path) as first, InspectionDatabase.open(path) as second:
        run_a = first.start_run(command="detect", command_line="a", settings={"model": MODEL})
        assert all(claim.decision == "score" for claim in first.claim(run_a, paths, new_only=True))
        run_b = second.start_run(command="detect", command_line="b", settings={"model": MODEL})
        claims = second.claim(run_b, paths, new_only=True)
        assert [claim.decision for claim in claims] == ["skip"] * 4
        assert claims[0].reason == f"being scored by run {run_a} (as {paths[0]})"


def test_a_writer_waits_for_another_instead_of_failing(tmp_path, database):
    other = sqlite3.connect(database.path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    threading.Timer(0.5, lambda: other.execute("COMMIT")).start()
    started = time.monotonic()
    run_id = database.start_run(command="detect", command_line="x", settings={"model": MODEL})
    assert run_id == 1 and time.monotonic() - started >= 0.4
    other.close()


# --- schema versions and bad files ------------------------------------------------------------


def test_a_newer_schema_is_refused_untouched(tmp_path):
    path = tmp_path / "inspections.sqlite"
    InspectionDatabase.open(path).close()
    connection = sqlite3.connect(path)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()
    before = path.read_bytes()
    with pytest.raises(DatabaseError, match=rf"{path}: written by a newer spmcli \(schema {SCHEMA_VERSION + 1}"):
        InspectionDatabase.open(path)
    assert path.read_bytes() == before


def test_an_older_schema_is_migrated_keeping_its_data(tmp_path, monkeypatch):
    paths = make_folder(tmp_path / "incoming", 2)
    path = tmp_path / "inspections.sqlite"
    with InspectionDatabase.open(path) as database:
        run_once(database, paths)
    # A future schema version 2 adds a column; this database is at version 1.
    migrations = {**database_module.MIGRATIONS, 2: ("ALTER TABLE images ADD COLUMN reviewed_by TEXT",)}
    monkeypatch.setattr(database_module, "MIGRATIONS", migrations)
    monkeypatch.setattr(database_module, "SCHEMA_VERSION", 2)
    with InspectionDatabase.open(path) as database:
        assert run_once(database, paths) == []  # what version 1 knew is still known
        assert [record["input"] for record in database.records([1])] == names(paths)
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA user_version").fetchone()[0] == 2
    assert "reviewed_by" in [row[1] for row in connection.execute("PRAGMA table_info(images)")]


def test_a_report_reader_does_not_migrate(tmp_path, monkeypatch):
    path = tmp_path / "inspections.sqlite"
    InspectionDatabase.open(path).close()
    monkeypatch.setattr(database_module, "MIGRATIONS", {**database_module.MIGRATIONS, 2: ("SELECT 1",)})
    monkeypatch.setattr(database_module, "SCHEMA_VERSION", 2)
    with pytest.raises(DatabaseError, match="older spmcli"):
        InspectionDatabase.open(path, readonly=True)


def _valid_database_bytes(tmp_path: Path) -> bytes:
    source = tmp_path / "source" / "valid.sqlite"
    source.parent.mkdir()
    with InspectionDatabase.open(source) as database:
        run_id = database.start_run(command="detect", command_line="x", settings={"model": MODEL})
        for index in range(200):
            database.record_image(run_id, done(f"image_{index}.png", regions=[{"explanation": "x" * 200}]))
    return source.read_bytes()


@pytest.mark.parametrize("kind", ["text", "jpeg", "sqlite header then garbage", "truncated", "another program's"])
def test_a_bad_file_is_refused_and_never_written(tmp_path, kind):
    path = tmp_path / "inspections.sqlite"
    if kind == "text":
        path.write_text("these are my notes, not a database\n")
    elif kind == "jpeg":
        path.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8)
    elif kind == "sqlite header then garbage":
        path.write_bytes(b"SQLite format 3\x00" + hashlib.sha256(b"x").digest() * 300)
    elif kind == "truncated":
        path.write_bytes(_valid_database_bytes(tmp_path)[: 3 * 4096])
    else:
        connection = sqlite3.connect(path)
        connection.execute("CREATE TABLE contacts (name TEXT)")
        connection.commit()
        connection.close()
    before = path.read_bytes()
    listing = sorted(os.listdir(tmp_path))
    with pytest.raises(DatabaseError) as raised:
        InspectionDatabase.open(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: ") and "refusing to touch it" in message
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == listing  # no -wal, -shm or lock folder either


def test_a_missing_file_is_refused_when_not_creating(tmp_path):
    with pytest.raises(DatabaseError, match="no such database file"):
        InspectionDatabase.open(tmp_path / "none.sqlite", create=False)
    with pytest.raises(DatabaseError, match="does not exist"):
        InspectionDatabase.open(tmp_path / "no_folder" / "x.sqlite")
    assert not (tmp_path / "none.sqlite").exists()


def _without_root_powers() -> list[str]:
    """A prefix that runs a command without root's power to write any file (CAP_DAC_OVERRIDE):
    as root, a read-only file would otherwise be writable. setpriv is in util-linux."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]


def _open_in_subprocess(path: Path, *arguments: str) -> subprocess.CompletedProcess:
    code = (
        "import sys\nfrom spmcli.inspection.database import InspectionDatabase, DatabaseError\n"
        "try:\n"
        f"    InspectionDatabase.open(sys.argv[1], {', '.join(arguments)}).close()\n"
        "except DatabaseError as error:\n"
        "    sys.exit(str(error))\n"
    )
    return subprocess.run(
        [*_without_root_powers(), sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60
    )


def test_a_read_only_database_is_refused_at_open(tmp_path):
    path = tmp_path / "inspections.sqlite"
    with InspectionDatabase.open(path) as database:
        run_once(database, make_folder(tmp_path / "incoming", 2))
    path.chmod(0o444)
    before = path.read_bytes()
    result = _open_in_subprocess(path)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == (
        f"{path}: the database is read-only: spmcli needs write access to the file and to its folder"
    )
    assert path.read_bytes() == before
    # A report may still read it.
    result = _open_in_subprocess(path, "readonly=True")
    assert result.returncode == 0, result.stderr


# --- real processes ----------------------------------------------------------------------------


def _start_worker(*arguments: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(WORKER), *arguments], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _first_line(process: subprocess.Popen) -> dict:
    line = process.stdout.readline()
    assert line, process.stderr.read()
    return json.loads(line)


@pytest.mark.parametrize("fresh_database", [True, False], ids=["fresh database", "existing database"])
def test_two_runs_started_together_score_each_image_once(tmp_path, fresh_database):
    folder = tmp_path / "incoming"
    make_folder(folder, 20)
    path = tmp_path / "inspections.sqlite"
    if not fresh_database:
        with InspectionDatabase.open(path) as database:
            run_once(database, sorted(folder.iterdir())[:10])
    expected = {str(p) for p in sorted(folder.iterdir())[0 if fresh_database else 10 :]}
    start_signal = str(tmp_path / "go")
    workers = [_start_worker("claim", str(path), str(folder), start_signal) for _ in range(2)]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("go.ready.*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    Path(start_signal).touch()
    results = []
    for worker in workers:
        output, errors = worker.communicate(timeout=120)
        assert worker.returncode == 0, errors
        results.append(json.loads(output))
    first, second = (set(result["scored"]) for result in results)
    assert not first & second
    assert first | second == expected
    with InspectionDatabase.open(path) as database:
        records = database.records([run["run_id"] for run in database.runs()])
        assert len(records) == len({record["input"] for record in records}) == 20


def test_sigkill_leaves_a_readable_database_and_the_next_run_takes_over(tmp_path):
    folder = tmp_path / "incoming"
    paths = make_folder(folder, 10)
    path = tmp_path / "inspections.sqlite"
    worker = _start_worker("hang", str(path), str(folder), "4")
    killed_run = _first_line(worker)["run_id"]
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)

    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    connection.close()
    with InspectionDatabase.open(path) as database:
        [run] = database.runs()
        assert run["state"] == "abandoned" and run["finished"] is None
        assert [record["input"] for record in database.records([killed_run])] == names(paths[:4])
        assert run_once(database, paths) == names(paths[4:])
        assert database.runs(run_ids=[killed_run])[0]["state"] == "abandoned"


def test_sigkill_in_the_middle_of_writes_leaves_only_whole_records(tmp_path):
    path = tmp_path / "inspections.sqlite"
    for delay in (0.15, 0.35):
        worker = _start_worker("record-forever", str(path), "folder")
        _first_line(worker)
        time.sleep(delay)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    connection.close()
    with InspectionDatabase.open(path) as database:
        records = database.records([run["run_id"] for run in database.runs()])
    assert len(records) > 2
    for record in records:
        assert record["status"] == "done" and record["score"] == 3.0 and record["regions"][0]["area"] == 16


def test_a_forked_child_does_not_keep_a_killed_run_alive(tmp_path):
    path = tmp_path / "inspections.sqlite"
    worker = _start_worker("fork-then-die", str(path), "folder")
    line = _first_line(worker)
    worker.wait(timeout=30)
    child = line["child"]
    try:
        os.kill(child, 0)  # the child (a --jobs worker, say) still lives...
        with InspectionDatabase.open(path) as database:
            assert database.runs()[0]["state"] == "abandoned"  # ...yet the run reads as killed
    finally:
        os.kill(child, signal.SIGKILL)


def _open_at_once(barrier, path: str, results) -> None:
    barrier.wait()
    try:
        with InspectionDatabase.open(Path(path), create=True) as database:
            run_id = database.start_run(command="detect", command_line="detect", settings={}, model={"sha256": "m"})
            database.finish_run(run_id, dict.fromkeys(database_module.COUNT_KEYS, 0), 0)
        results.put("ok")
    except Exception as error:  # reported to the parent, which asserts on it
        results.put(f"{type(error).__name__}: {error}")


def test_processes_creating_the_same_database_at_once_all_succeed(tmp_path):
    # Switching a new file to WAL needs an exclusive lock that SQLite refuses at once
    # (no busy handler), and the header read must not see another process's half-made
    # schema: both failed one process in five before they were handled.
    import multiprocessing

    context = multiprocessing.get_context("fork")
    failures = []
    for trial in range(12):
        barrier, results = context.Barrier(4), context.Queue()
        processes = [
            context.Process(target=_open_at_once, args=(barrier, str(tmp_path / f"{trial}.sqlite"), results))
            for _ in range(4)
        ]
        for process in processes:
            process.start()
        failures += [outcome for outcome in (results.get(timeout=60) for _ in processes) if outcome != "ok"]
        for process in processes:
            process.join()
    assert failures == []
