"""What a report shows: the selected runs and their per-image records, read from an
inspection database or from one ``detect --report`` JSON file.

Both sources give the same :class:`InspectionHistory`, so the HTML report has one
input shape. Paths in records are resolved to files that exist where possible:
the database stores them resolved at record time; a JSON report's relative paths
are tried from the current folder, then from the report's folder.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SpmcliError
from .database import DatabaseError, InspectionDatabase, parse_timestamp

__all__ = ["InspectionHistory", "load_history", "history_from_database", "history_from_json"]

PATH_FIELDS = ("input", "anomaly_map", "overlay", "mask")
_SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass
class InspectionHistory:
    """Runs and their records, ready for a report.

    Attributes
    ----------
    source : str
        The database or JSON file they came from.
    runs : list of dict
        Run headers (``run_id``, ``state``, ``command_line``, ``settings``,
        ``model``, ``started``, ``finished``, ``counts``, ``exit_code``...),
        oldest first.
    records : list of dict
        Per-image records of those runs (the report's fields plus ``run_id``
        and ``absolute_paths``), by run then input order. Skipped inputs are not
        among them (each run's ``counts`` say how many there were).
    """

    source: str
    runs: list[dict[str, Any]]
    records: list[dict[str, Any]] = field(default_factory=list)


def load_history(
    path: str | Path, *, since: str | dt.datetime | None = None, run_ids: Sequence[int] | None = None
) -> InspectionHistory:
    """Read a database or a JSON report (told apart by their content, not their name).

    Parameters
    ----------
    path : str or Path
    since : str or datetime, optional
        Runs started at or after this instant (ISO 8601, UTC unless it says otherwise).
    run_ids : sequence of int, optional
        Only these runs (databases only).

    Returns
    -------
    InspectionHistory

    Raises
    ------
    SpmcliError
        Unreadable or unknown files, a database holding no runs, or a selection
        that matches none.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(_SQLITE_MAGIC))
    except OSError as error:
        raise SpmcliError(f"cannot read: {error.strerror or error}", path) from None
    if head == _SQLITE_MAGIC:
        return history_from_database(path, since=since, run_ids=run_ids)
    if run_ids:
        raise SpmcliError("--run selects runs of a database; this is a JSON report of one run", path)
    return history_from_json(path, since=since)


def _open_for_reading(path: Path) -> InspectionDatabase:
    """Open read-write when possible (so an older schema is migrated), else read-only."""
    try:
        return InspectionDatabase.open(path, create=False)
    except DatabaseError as error:
        if "read-only" not in error.message:
            raise
    return InspectionDatabase.open(path, readonly=True)


def history_from_database(
    path: str | Path, *, since: str | dt.datetime | None = None, run_ids: Sequence[int] | None = None
) -> InspectionHistory:
    """The selected runs of an inspection database and their stored records."""
    path = Path(path)
    with _open_for_reading(path) as database:
        every_run = database.runs()
        if not every_run:
            raise SpmcliError("the database holds no runs yet (spmcli detect ... --db FILE records them)", path)
        runs = database.runs(since=since, run_ids=run_ids)
        if run_ids:
            missing = sorted(set(run_ids) - {run["run_id"] for run in runs})
            known = {run["run_id"] for run in every_run}
            unknown = [run_id for run_id in missing if run_id not in known]
            if unknown:
                raise SpmcliError(
                    f"no run {', '.join(map(str, unknown))} in the database (its runs are "
                    f"{every_run[0]['run_id']} to {every_run[-1]['run_id']})",
                    path,
                )
        if not runs:
            raise SpmcliError(
                f"no selected run started on or after {since} (the database's {len(every_run)} run(s) started "
                f"from {every_run[0]['started']} to {every_run[-1]['started']})",
                path,
            )
        records = database.records([run["run_id"] for run in runs])
    return InspectionHistory(str(path), runs, records)


def _resolve(value: str, base: Path) -> str:
    if os.path.isabs(value) or os.path.exists(value):
        return os.path.abspath(value)
    beside = base / value
    return os.path.abspath(beside if beside.exists() else value)


def _from_legacy_layout(payload: dict[str, Any]) -> dict[str, Any]:
    """A report of spmcli 0.1 (``images`` with ``path``) in the current layout."""
    dictionary = payload.get("dictionary") or {}
    records = []
    for image in payload["images"]:
        record = dict(image)
        record["input"] = record.pop("path", None)
        record["status"] = "failed" if record.get("error") else "done"
        records.append(record)
    counts = payload.get("counts") or {}
    return {
        **payload,
        "command": "detect",
        "model": {
            "path": dictionary.get("path"),
            "sha256": dictionary.get("sha256"),
            "threshold": payload.get("threshold"),
            "mode": payload.get("detector_mode"),
        },
        "counts": {
            "inputs": counts.get("images", len(records)),
            "done": counts.get("images", len(records)) - counts.get("failures", 0),
            "failed": counts.get("failures", 0),
            "skipped": 0,
            "not_started": 0,
            "anomalies": counts.get("anomalies", 0),
        },
        "records": records,
    }


def history_from_json(path: str | Path, *, since: str | dt.datetime | None = None) -> InspectionHistory:
    """The run of one ``detect --report`` JSON file, as a one-run history."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SpmcliError(f"neither an inspection database nor a JSON report ({error})", path) from None
    if isinstance(payload, dict) and "records" not in payload and isinstance(payload.get("images"), list):
        payload = _from_legacy_layout(payload)
    if not isinstance(payload, dict) or not isinstance(payload.get("records"), list):
        raise SpmcliError("not a detect report: no list of records", path)
    if payload.get("command", "detect") != "detect":
        raise SpmcliError(f"a report of `{payload['command']}`, not of detect", path)
    for index, record in enumerate(payload["records"]):
        if not isinstance(record, dict) or not isinstance(record.get("input"), str):
            raise SpmcliError(f"record {index} has no input path", path)
    started = payload.get("started")
    if since is not None and started:
        moment = parse_timestamp(since) if isinstance(since, str) else since
        if parse_timestamp(started) < moment:
            raise SpmcliError(f"its run started at {started}, before --since {since}", path)
    settings = payload.get("settings") if isinstance(payload.get("settings"), dict) else {}
    model = payload.get("model")
    if not isinstance(model, dict):  # the model may sit in the settings instead
        model = settings.get("model") if isinstance(settings.get("model"), dict) else {}
    run = {
        "run_id": 1,
        "state": "finished" if payload.get("finished") else "unknown",
        "spmcli_version": payload.get("spmcli_version"),
        "command": payload.get("command", "detect"),
        "command_line": payload.get("command_line"),
        "settings": settings,
        "model": model,
        "started": started,
        "finished": payload.get("finished"),
        "counts": payload.get("counts"),
        "exit_code": payload.get("exit_code"),
    }
    base = path.resolve().parent
    records = []
    for record in payload["records"]:
        if record.get("status") == "skipped":
            continue
        resolved = {name: _resolve(str(record[name]), base) for name in PATH_FIELDS if record.get(name)}
        records.append({**record, "run_id": 1, "absolute_paths": resolved})
    return InspectionHistory(str(path), [run], records)
