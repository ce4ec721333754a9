"""The batch engine through real processes: --jobs and a real Dask cluster give
the same bytes as one job, a killed worker fails one image only, SIGINT and
SIGTERM stop cleanly with a report, --skip-existing resumes."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spmcli import batch
from spmcli.commands import _batch as cli_batch
from spmcli.sparse.dictionary import load_dictionary

pytestmark = pytest.mark.filterwarnings("ignore")

TIMINGS = {"started", "finished", "seconds", "execution", "command_line", "fill_seconds"}


def texture(seed: int, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size, :size]
    image = 120 + 60 * np.sin(cols / (3.0 + seed % 3)) * np.cos(rows / 5.0) + 12 * rng.standard_normal((size, size))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def spmcli(*arguments: object, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spmcli", *map(str, arguments)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def without_timings(value):
    if isinstance(value, dict):
        return {key: without_timings(item) for key, item in value.items() if key not in TIMINGS}
    if isinstance(value, list):
        return [without_timings(item) for item in value]
    return value


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("batch")
    images = root / "images"
    images.mkdir()
    for index in range(5):
        Image.fromarray(texture(index)).save(images / f"img_{index}.png")
    good, calibration = root / "good", root / "calibration"
    good.mkdir()
    calibration.mkdir()
    for index in range(6):
        Image.fromarray(texture(10 + index)).save(good / f"good_{index}.png")
        Image.fromarray(texture(20 + index)).save(calibration / f"calib_{index}.png")
    mask = np.zeros((64, 64), np.uint8)
    mask[20:30, 10:40] = 255
    Image.fromarray(mask).save(root / "mask.png")
    model = root / "model.npz"
    result = spmcli(
        "learn-dict", good, "-o", model, "--detector", "--calibration-images", calibration,
        "--n-atoms", "16", "--iters", "2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return {"root": root, "images": images, "good": good, "mask": root / "mask.png", "model": model}


FAST_KSVD = ["--denoiser", "ksvd", "--n-atoms", "32", "--iters", "2", "--training-patches", "400"]
COMMANDS = {
    "reconstruct": lambda files, out: ["reconstruct", files["images"], "--output-dir", out, "--sigma", "20"],
    "reconstruct-ksvd": lambda files, out: [
        "reconstruct",
        files["images"],
        "--output-dir",
        out,
        "--sigma",
        "20",
        *FAST_KSVD,
    ],
    "tv-denoise": lambda files, out: ["tv-denoise", files["images"], "--output-dir", out, "--sigma", "15"],
    "inpaint": lambda files, out: [
        "inpaint",
        files["images"],
        "--mask",
        files["mask"],
        "--output-dir",
        out,
        "--passes",
        "4",
        "--learn-iters",
        "1",
        "--n-atoms",
        "32",
    ],
    "detect": lambda files, out: ["detect", files["images"], "--dict", files["model"], "--heatmap-dir", out],
}


def run_command(name: str, files: dict, out: Path, *extra: object) -> tuple[subprocess.CompletedProcess, dict]:
    report = out.parent / f"{out.name}.json"
    result = spmcli(*COMMANDS[name](files, out), "--report", report, *extra)
    assert result.returncode == 0, result.stderr
    return result, json.loads(report.read_text())


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_two_jobs_write_the_same_bytes_and_report_as_one(inputs, tmp_path, name):
    _, serial = run_command(name, inputs, tmp_path / "one")
    _, parallel = run_command(name, inputs, tmp_path / "two", "--jobs", "2")
    assert folder_bytes(tmp_path / "one") == folder_bytes(tmp_path / "two")
    assert len(folder_bytes(tmp_path / "one")) >= 5
    assert parallel["execution"]["workers"] == 2
    one = json.loads(json.dumps(without_timings(serial)).replace(str(tmp_path / "one"), "OUT"))
    two = json.loads(json.dumps(without_timings(parallel)).replace(str(tmp_path / "two"), "OUT"))
    assert one == two
    assert [Path(record["input"]).name for record in serial["records"]] == [f"img_{i}.png" for i in range(5)]


def test_learn_dict_with_jobs_learns_the_same_dictionary(inputs, tmp_path):
    outputs = []
    for jobs in ("1", "2"):
        output = tmp_path / f"d{jobs}.npz"
        result = spmcli("learn-dict", inputs["images"], "-o", output, "--n-atoms", "32", "--iters", "2",
                        "--jobs", jobs)  # fmt: skip
        assert result.returncode == 0, result.stderr
        outputs.append(output.read_bytes())
    assert outputs[0] == outputs[1]


def test_a_killed_worker_fails_one_image_and_the_rest_complete(inputs, tmp_path):
    out, report = tmp_path / "out", tmp_path / "report.json"
    result = spmcli(
        *COMMANDS["tv-denoise"](inputs, out), "--report", report, "--jobs", "2",
        env={batch.KILL_HOOK_VARIABLE: "img_2.png"},
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert "img_2.png: worker process was killed by SIGKILL" in result.stderr
    assert sorted(path.name for path in out.iterdir()) == ["img_0.png", "img_1.png", "img_3.png", "img_4.png"]
    payload = json.loads(report.read_text())
    assert payload["counts"] == {"inputs": 5, "done": 4, "failed": 1, "skipped": 0, "not_started": 0}
    assert [record["status"] for record in payload["records"]] == ["done", "done", "failed", "done", "done"]


def slow_batch(root: Path, count: int = 24) -> Path:
    folder = root / "slow"
    folder.mkdir()
    for index in range(count):
        Image.fromarray(texture(index, size=160)).save(folder / f"img_{index:02d}.png")
    return folder


def complete_outputs(out: Path) -> list[Path]:
    return [path for path in out.iterdir() if not path.name.startswith(".")] if out.is_dir() else []


@pytest.mark.parametrize(
    ("stop_signal", "jobs", "group", "code"),
    [
        (signal.SIGINT, "1", True, 130),  # Ctrl-C in a terminal: the whole process group
        (signal.SIGTERM, "1", False, 143),  # timeout(1), a cron supervisor: the main process only
        (signal.SIGINT, "2", True, 130),
        (signal.SIGTERM, "2", False, 143),
    ],
)
def test_a_signal_stops_cleanly_with_a_report_and_skip_existing_resumes(tmp_path, stop_signal, jobs, group, code):
    folder = slow_batch(tmp_path)
    out, report, log = tmp_path / "out", tmp_path / "report.json", tmp_path / "stderr.txt"
    command = [sys.executable, "-m", "spmcli", "reconstruct", str(folder), "--output-dir", str(out),
               "--sigma", "25", "--denoiser", "ksvd", "--n-atoms", "64", "--iters", "3", "--report", str(report),
               "--jobs", jobs]  # fmt: skip
    with open(log, "w") as stderr_file:  # a file, not a pipe: a full pipe could block the child
        process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=stderr_file,
            start_new_session=True,
            # A shell may start background jobs with SIGINT ignored; give the child the terminal's default.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline and process.poll() is None and not complete_outputs(out):
                time.sleep(0.02)
            assert process.poll() is None, f"the batch ended before it could be stopped: {log.read_text()}"
            sent = time.monotonic()
            if group:
                os.killpg(process.pid, stop_signal)
            else:
                process.send_signal(stop_signal)
            process.wait(timeout=60)
            stopped_after = time.monotonic() - sent
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    stderr = log.read_text()
    assert process.returncode == code, stderr
    assert stopped_after < 10, stopped_after  # the 2 s, with room for a loaded CI machine
    assert "Traceback" not in stderr and f"stopped by {signal.Signals(stop_signal).name}" in stderr
    leftovers = [path.name for path in out.iterdir() if ".part" in path.name]
    assert not leftovers, leftovers
    written = complete_outputs(out)
    assert 1 <= len(written) < 24
    for path in written:
        assert np.asarray(Image.open(path)).shape == (160, 160)
    payload = json.loads(report.read_text())
    assert payload["exit_code"] == code
    counts = payload["counts"]
    assert counts["done"] == len(written) and counts["not_started"] == 24 - len(written) and counts["failed"] == 0
    # Resume: what is done is skipped, the rest is processed.
    resumed = subprocess.run([*command, "--skip-existing"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    again = json.loads(report.read_text())["counts"]
    assert again["skipped"] == len(written) and again["done"] == 24 - len(written)
    assert len(complete_outputs(out)) == 24


def test_auto_jobs_is_bounded_by_cores_and_memory(monkeypatch, tmp_path):
    Image.fromarray(texture(0, size=100)).save(tmp_path / "a.png")
    paths = [tmp_path / "a.png"] * 8
    monkeypatch.setattr(cli_batch, "usable_cores", lambda: 4)
    monkeypatch.setattr(cli_batch, "_available_memory", lambda: 100 * 10**9)
    assert cli_batch.auto_jobs(paths, 250.0) == 4
    # 1 GB available, 120 MB + 250 bytes x 10,000 pixels per worker: 0.8 GB / 122.5 MB -> 6, capped by 4 cores.
    monkeypatch.setattr(cli_batch, "_available_memory", lambda: 10**9)
    assert cli_batch.auto_jobs(paths, 250.0) == 4
    monkeypatch.setattr(cli_batch, "_available_memory", lambda: 3 * 10**8)
    assert cli_batch.auto_jobs(paths, 250.0) == 1
    assert cli_batch.auto_jobs(paths[:1], 250.0) == 1  # never more workers than inputs


def test_jobs_auto_runs(inputs, tmp_path):
    result = spmcli(*COMMANDS["tv-denoise"](inputs, tmp_path / "out"), "--jobs", "auto")
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "out").iterdir())) == 5


def test_bad_jobs_and_scheduler_combinations_are_usage_errors(inputs, tmp_path):
    base = COMMANDS["tv-denoise"](inputs, tmp_path / "out")
    for extra, message in (
        (["--jobs", "0"], "must be at least 1"),
        (["--jobs", "many"], "neither 'auto' nor a whole number"),
        (["--jobs", "2", "--scheduler", "tcp://127.0.0.1:1"], "give --jobs or --scheduler, not both"),
    ):
        result = spmcli(*base, *extra)
        assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_scheduler_without_the_extra_is_a_usage_error(inputs, tmp_path):
    # Hide Dask's distributed package the way a user without the extra would lack it.
    hider = tmp_path / "hide"
    hider.mkdir()
    (hider / "distributed.py").write_text("raise ImportError(\"No module named 'distributed'\")\n")
    result = spmcli(
        *COMMANDS["tv-denoise"](inputs, tmp_path / "out"), "--scheduler", "tcp://127.0.0.1:8786",
        env={"PYTHONPATH": str(hider)},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "pip install 'spmcli[dask]'" in result.stderr and "Traceback" not in result.stderr


def test_unreachable_scheduler_is_one_error(inputs, tmp_path):
    result = spmcli(*COMMANDS["tv-denoise"](inputs, tmp_path / "out"), "--scheduler", "tcp://127.0.0.1:9")
    assert result.returncode == 3, result.stderr
    assert "cannot reach the Dask scheduler" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed", reason="the test extra installs distributed; CI must have it")
    local = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    )
    try:
        yield local.scheduler_address
    finally:
        local.close()


def test_the_test_environment_has_dask():
    # The cluster tests must run in CI, never be skipped for lack of the package.
    import distributed  # noqa: F401


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_dask_cluster_writes_the_same_bytes_as_one_job(inputs, tmp_path, cluster, name):
    _, serial = run_command(name, inputs, tmp_path / "one")
    result, clustered = run_command(name, inputs, tmp_path / "cluster", "--scheduler", cluster)
    assert folder_bytes(tmp_path / "one") == folder_bytes(tmp_path / "cluster")
    assert clustered["execution"]["scheduler"] == cluster
    assert "on the Dask cluster" in result.stdout
    one = json.loads(json.dumps(without_timings(serial)).replace(str(tmp_path / "one"), "OUT"))
    two = json.loads(json.dumps(without_timings(clustered)).replace(str(tmp_path / "cluster"), "OUT"))
    assert one == two


def test_learn_dict_on_a_dask_cluster(inputs, tmp_path, cluster):
    outputs = []
    for extra in ([], ["--scheduler", cluster]):
        output = tmp_path / f"d{len(extra)}.npz"
        result = spmcli("learn-dict", inputs["images"], "-o", output, "--n-atoms", "32", "--iters", "2", *extra)
        assert result.returncode == 0, result.stderr
        outputs.append(output.read_bytes())
    assert outputs[0] == outputs[1]


def test_scheduler_from_the_environment(inputs, tmp_path, cluster):
    result = spmcli(*COMMANDS["tv-denoise"](inputs, tmp_path / "out"), env={cli_batch.SCHEDULER_VARIABLE: cluster})
    assert result.returncode == 0, result.stderr
    assert f"on the Dask cluster at {cluster}" in result.stdout


# --- the engine in this process ------------------------------------------------------------------


def _square(task: batch.Task, settings: int, progress) -> dict:
    if task.input == "bad":
        raise ValueError("cannot square this")
    return {"value": int(task.payload) ** 2 + settings}


def test_engine_records_come_back_in_input_order_with_shared_fields():
    tasks = [batch.Task(index, "bad" if index == 2 else f"item{index}", payload=index) for index in range(6)]
    for jobs in (1, 3):
        result = batch.run_tasks(_square, tasks, 10, jobs=jobs)
        assert [record["input"] for record in result.records] == [task.input for task in tasks]
        assert [record.get("value") for record in result.records] == [10, 11, None, 19, 26, 35]
        assert result.records[2]["status"] == "failed" and result.records[2]["error"] == "cannot square this"
        assert result.counts == {"inputs": 6, "done": 5, "failed": 1, "skipped": 0, "not_started": 0}
        for record in result.records:
            assert list(record)[:6] == ["input", "output", "status", "error", "seconds", "warnings"]


def _finish_as_the_engine_is_stopped(task: batch.Task, settings: None, progress) -> dict:
    if task.input == "sleeper":
        time.sleep(60)  # still running when the engine stops: terminated, not started
    # The worker ignores SIGTERM from here on (a mask would not do: a signal for the process
    # may reach another thread), so its record is sent whatever the engine's timing: the
    # engine must read it although the stop arrived first.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    Path(task.output).write_text("done")
    os.kill(os.getppid(), signal.SIGTERM)
    return {"value": 1}


def test_a_task_that_finishes_as_the_engine_stops_is_counted_done(tmp_path):
    tasks = [batch.Task(0, "finisher", str(tmp_path / "finisher.txt")), batch.Task(1, "sleeper", str(tmp_path / "s"))]
    result = batch.run_tasks(_finish_as_the_engine_is_stopped, tasks, None, jobs=2)
    assert result.stopped_by == signal.SIGTERM
    assert (tmp_path / "finisher.txt").read_text() == "done"
    assert result.records[0]["status"] == "done" and result.records[0]["value"] == 1
    assert result.records[1]["status"] == "not_started"


def _terminated_once_written(task: batch.Task, settings: None, progress) -> dict:
    from spmcli.io.atomic import atomic_path

    with atomic_path(task.output) as temporary:
        temporary.write_text("done")
    # SIGTERM (as the engine's, or anyone's) once the output is in place: the task must
    # still finish and report, not be unwound into a "died" record with its output on disk.
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.1)
    return {"value": 1}


def test_a_worker_terminated_after_writing_its_outputs_reports_its_task(tmp_path):
    tasks = [batch.Task(index, f"item{index}", str(tmp_path / f"out{index}.txt")) for index in range(3)]
    result = batch.run_tasks(_terminated_once_written, tasks, None, jobs=2)
    assert result.stopped_by is None
    assert [record["status"] for record in result.records] == ["done"] * 3, result.records
    assert [record["value"] for record in result.records] == [1, 1, 1]
    assert all((tmp_path / f"out{index}.txt").read_text() == "done" for index in range(3))


def test_one_job_stopped_after_writing_its_outputs_reports_the_task_then_stops(tmp_path):
    tasks = [batch.Task(index, f"item{index}", str(tmp_path / f"out{index}.txt")) for index in range(2)]
    result = batch.run_tasks(_terminated_once_written, tasks, None, jobs=1)
    assert result.stopped_by == signal.SIGTERM
    assert [record["status"] for record in result.records] == ["done", "not_started"]
    assert (tmp_path / "out0.txt").read_text() == "done" and not (tmp_path / "out1.txt").exists()


def test_engine_map_gives_results_in_order_and_raises_the_first_failure():
    engine_map = batch.make_map(jobs=2)
    assert engine_map(pow, [2, 3, 4], [2, 2, 2]) == [4, 9, 16]
    with pytest.raises(ValueError, match="item 1"):
        engine_map(int, ["1", "x", "3"])


class CountsUnpickling:
    """An argument that counts how often this process unpickled one."""

    unpickled = 0

    def __reduce__(self):
        return (_unpickle_counter, ())


def _unpickle_counter():
    CountsUnpickling.unpickled += 1
    return CountsUnpickling()


def _unpickled_here(shared, value):
    return os.getpid(), CountsUnpickling.unpickled, value


def test_engine_map_sends_an_argument_shared_by_every_item_once_per_worker():
    # A model passed with itertools.repeat must not be unpickled (and its
    # search trees rebuilt) for every image.
    results = batch.make_map(jobs=2)(_unpickled_here, itertools.repeat(CountsUnpickling()), range(12))
    assert [value for _, _, value in results] == list(range(12))
    per_worker = {}
    for pid, count, _ in results:
        per_worker[pid] = max(per_worker.get(pid, 0), count)
    assert set(per_worker.values()) == {1}
    # Arguments that vary still reach each item.
    assert batch.make_map(jobs=2)(pow, [2, 3, 4], itertools.repeat(3)) == [8, 27, 64]


def test_detector_learned_on_a_dask_cluster_is_the_same(inputs, tmp_path, cluster):
    # Good images of one size: auto fits both modes and draws probe defects on
    # the calibration images, per image on the workers; the choice and the
    # model must not depend on who ran them.
    models = []
    for extra in ([], ["--scheduler", cluster]):
        output = tmp_path / f"m{len(extra)}.npz"
        result = spmcli(
            "learn-dict", inputs["good"], "-o", output, "--detector", "--calibration-images",
            inputs["root"] / "calibration", "--n-atoms", "16", "--iters", "2", *extra,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "20 probe defects drawn on 6 calibration images" in result.stdout
        models.append(load_dictionary(output))
    assert models[0].metadata["detector"] == models[1].metadata["detector"]
    assert models[0].extras.keys() == models[1].extras.keys()
    for name, value in models[0].extras.items():
        assert np.array_equal(value, models[1].extras[name]), name
