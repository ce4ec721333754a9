"""A separate process for the inspection database tests: real processes, real locks.

Usage: ``python database_worker.py ACTION DATABASE FOLDER [START_SIGNAL]``. With a
start signal (a file path), the worker creates ``<signal>.ready`` and waits for the
signal file to exist before opening the database, so that several workers start
together. It prints one JSON line on stdout (what it did).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from spmcli.inspection.database import InspectionDatabase

SETTINGS = {"model": {"path": "model.npz", "sha256": "0" * 64, "threshold": 2.5, "mode": "pooled"}}


def _wait_for(start_signal: str | None) -> None:
    if start_signal is None:
        return
    Path(start_signal + f".ready.{os.getpid()}").touch()
    deadline = time.monotonic() + 60
    while not os.path.exists(start_signal):
        if time.monotonic() > deadline:
            sys.exit("start signal never came")
        time.sleep(0.001)


def _done(name: str, score: float = 1.0) -> dict:
    return {"input": name, "status": "done", "score": score, "threshold": 2.5, "is_anomaly": score > 2.5}


def _inputs(folder: str) -> list[str]:
    return sorted(str(path) for path in Path(folder).iterdir() if path.suffix == ".png")


def claim_and_score(database_path: str, folder: str, start_signal: str | None = None) -> None:
    """One --new-only run: claim, 'score' each claimed image (a short sleep), record, finish."""
    _wait_for(start_signal)
    with InspectionDatabase.open(database_path) as database:
        run_id = database.start_run(command="detect", command_line="worker", settings=SETTINGS)
        claims = database.claim(run_id, _inputs(folder), new_only=True)
        scored = []
        for claim in claims:
            if claim.decision == "score":
                time.sleep(0.005)
                database.record_image(run_id, _done(claim.input))
                scored.append(claim.input)
        counts = {"inputs": len(claims), "done": len(scored), "failed": 0, "skipped": len(claims) - len(scored)}
        database.finish_run(run_id, {**counts, "not_started": 0, "anomalies": 0}, exit_code=0)
    print(json.dumps({"run_id": run_id, "scored": scored}), flush=True)


def score_some_then_hang(database_path: str, folder: str, count: str) -> None:
    """Claim every image, record ``count`` of them, say so, then wait to be killed."""
    database = InspectionDatabase.open(database_path)
    run_id = database.start_run(command="detect", command_line="worker", settings=SETTINGS)
    claims = database.claim(run_id, _inputs(folder), new_only=True)
    for claim in claims[: int(count)]:
        database.record_image(run_id, _done(claim.input))
    print(json.dumps({"run_id": run_id, "claimed": [claim.input for claim in claims]}), flush=True)
    time.sleep(120)


def record_forever(database_path: str, folder: str, _unused: str | None = None) -> None:
    """Record images as fast as possible until killed (to be killed mid-transaction)."""
    database = InspectionDatabase.open(database_path)
    run_id = database.start_run(command="detect", command_line="worker", settings=SETTINGS)
    print(json.dumps({"run_id": run_id}), flush=True)
    index = 0
    regions = [{"bbox": [0, 0, 4, 4], "area": 16, "peak": 5.0, "mean": 3.0, "feature": "structure"}]
    while True:
        database.record_image(run_id, {**_done(f"{folder}/image_{index:06d}.png", 3.0), "regions": regions})
        index += 1


def fork_then_die(database_path: str, folder: str, _unused: str | None = None) -> None:
    """Start a run, fork a child that outlives us (as a --jobs worker could), then SIGKILL ourselves."""
    database = InspectionDatabase.open(database_path)
    run_id = database.start_run(command="detect", command_line="worker", settings=SETTINGS)
    ready_read, ready_write = os.pipe()
    child = os.fork()
    if child == 0:
        os.write(ready_write, b"x")  # at-fork handlers have run by now
        time.sleep(60)
        os._exit(0)
    os.read(ready_read, 1)
    print(json.dumps({"run_id": run_id, "child": child}), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


ACTIONS = {
    "claim": claim_and_score,
    "hang": score_some_then_hang,
    "record-forever": record_forever,
    "fork-then-die": fork_then_die,
}

if __name__ == "__main__":
    action, *arguments = sys.argv[1:]
    ACTIONS[action](*arguments)
