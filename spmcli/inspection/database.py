"""The inspection database: the history of ``detect`` runs in one SQLite file.

Cron-driven inspection runs ``spmcli detect incoming/ --dict model.npz --db
inspections.sqlite --new-only`` every few minutes. This module keeps what those
runs need between them: the models used, the runs, one row per image and run,
which image contents were already scored with which model (so ``--new-only``
scores only new content), and a cache of content hashes (so a re-run over
10,000 unchanged files reads none of them).

It uses the standard library's :mod:`sqlite3` (an embedded database: no server)
and knows nothing of the command line.

Guarantees
----------
- **Nothing half-written.** Every change is one short ``BEGIN IMMEDIATE``
  transaction: a run's start, the claim of its inputs, each image's record, the
  run's end. A crash, SIGTERM or SIGKILL leaves every image recorded before it
  and nothing of the image being recorded.
- **Overlapping runs.** The file is in WAL mode (readers never block the writer)
  with a busy timeout, and every writing transaction takes the write lock
  up front (``BEGIN IMMEDIATE``), so a run waits for another instead of failing
  with "database is locked". :meth:`InspectionDatabase.claim` decides, in one
  such transaction, which inputs a run scores: two runs started together over the
  same folder score each new image once between them.
- **Killed runs.** Each live run holds an exclusive ``flock`` on a small file in
  ``<database>-runs/`` (:mod:`.run_locks`); the kernel drops it when the process
  dies however it dies, so the next claim knows a run was killed (no heartbeat, no
  guessed time-out, no process-id reuse) and takes over the images it had claimed
  but not scored. WAL needs every process on one host anyway (it shares memory),
  so a lock on a local file is a complete test of liveness. POSIX only.
- **Schema versions.** ``PRAGMA user_version`` holds the schema version and
  ``PRAGMA application_id`` marks the file as spmcli's. A file from a newer
  spmcli is refused; an older one is migrated in one transaction. A file that is
  not an SQLite database, is corrupt, or belongs to another program is refused
  and never written to.

Which images ``--new-only`` skips
---------------------------------
An image is identified by the SHA-256 of its bytes, so a renamed or re-copied
file is not scored again and a file rewritten in place is. Hashing every file of
a large folder at every run would cost more than scoring the new ones, so the
hash of each path is cached with the file's ``stat`` signature (size,
modification and change times in nanoseconds, inode, device), as ``git`` and
``rsync`` do, and reused only while that signature holds (:mod:`.file_identity`
says exactly when). Any write to a file changes its change time, which no program
can set back, so a rewrite in place (even one that restores the modification
time, as ``cp -p`` does) is hashed again; a ``touch`` is hashed again and, its
bytes unchanged, not scored.

Schema (version 1, :mod:`.database_schema`)
-------------------------------------------
``models`` (model_id, sha256, path, threshold, mode): one row per model file
and threshold used. ``runs`` (run_id, model_id, command, command_line JSON,
spmcli_version, settings JSON, model JSON, started, started_unix, finished, state
running|finished|abandoned, exit_code, counts, host, pid). ``images`` (run_id,
position, input, absolute paths, sha256, size, mtime_ns, status done|failed|
not_started, error, seconds, warnings, score, threshold, is_anomaly,
pixel_threshold, anomaly_map, overlay, mask, regions JSON, extra JSON,
recorded): one row per image and run, unique per (run_id, input); inputs a run
skipped are counted in the run, not stored. ``claims`` (model_sha256,
content_sha256, run_id, input, state claimed|scored): which content is scored
or being scored with which model. ``file_hashes`` (absolute_path, stat
signature, sha256, hashed_ns): the hash cache.

References
----------
SQLite documentation: "Write-Ahead Logging" (concurrency, and why WAL needs one
host), "Atomic Commit In SQLite", "BEGIN TRANSACTION" (IMMEDIATE versus
DEFERRED and SQLITE_BUSY), and "Database File Format" (``user_version``,
``application_id``).

Examples
--------
>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "a.png").write_bytes(b"not really a png")
>>> with InspectionDatabase.open(folder / "inspections.sqlite") as database:
...     run_id = database.start_run(command="detect", command_line="spmcli detect ...",
...                                 settings={"model": {"path": "m.npz", "sha256": "ab12", "threshold": 2.5}})
...     [claim.decision for claim in database.claim(run_id, [folder / "a.png"], new_only=True)]
...     database.record_image(run_id, {"input": str(folder / "a.png"), "status": "done", "score": 1.0,
...                                    "threshold": 2.5, "is_anomaly": False})
...     database.finish_run(run_id, {"inputs": 1, "done": 1, "failed": 0, "skipped": 0,
...                                  "not_started": 0, "anomalies": 0}, exit_code=0)
['score']
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from .._version import __version__
from ..errors import SpmcliError
from .database_schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION
from .file_identity import RACY_SECONDS, FileIdentity, StatSignature, file_identity, hash_file
from .run_locks import RunLock, lock_is_held

__all__ = [
    "APPLICATION_ID",
    "RACY_SECONDS",
    "RECORD_STATUSES",
    "SCHEMA_VERSION",
    "Claim",
    "DatabaseError",
    "FileIdentity",
    "InspectionDatabase",
    "file_identity",
    "parse_timestamp",
]

RECORD_STATUSES = ("done", "failed", "skipped", "not_started")
COUNT_KEYS = ("inputs", "done", "failed", "skipped", "not_started", "anomalies")
DEFAULT_BUSY_TIMEOUT = 60.0
_SQLITE_MAGIC = b"SQLite format 3\x00"

# Record fields with a column of their own; any other field goes to ``extra``.
_RECORD_COLUMNS = (
    "input",
    "status",
    "error",
    "seconds",
    "warnings",
    "score",
    "threshold",
    "is_anomaly",
    "pixel_threshold",
    "anomaly_map",
    "overlay",
    "mask",
    "regions",
)
_PATH_FIELDS = ("input", "anomaly_map", "overlay", "mask")


class DatabaseError(SpmcliError):
    """The inspection database cannot be used (corrupt, foreign, newer, read-only, busy...)."""


class Claim(NamedTuple):
    """The claim step's decision for one input.

    Attributes
    ----------
    input : str
        The path as given.
    position : int
        Its index in the inputs.
    decision : str
        ``"score"`` (this run scores it) or ``"skip"``.
    reason : str or None
        Why it is skipped; for an input that could not be hashed (it is then
        scored, so that reading it reports the problem), the hashing error.
    identity : FileIdentity or None
        None when the file could not be read.
    """

    input: str
    position: int
    decision: str
    reason: str | None
    identity: FileIdentity | None


def parse_timestamp(text: str) -> dt.datetime:
    """An ISO 8601 date or date-time as an aware UTC datetime (naive values are taken as UTC).

    >>> parse_timestamp("2026-12-01").isoformat()
    '2026-12-01T00:00:00+00:00'
    >>> parse_timestamp("2026-12-01T10:30:00Z").isoformat()
    '2026-12-01T10:30:00+00:00'
    """
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    moment = dt.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc)


def _utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _chunks(values: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    """Slices short enough for one SQL statement's variables (SQLite allows 999 in old builds)."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _placeholders(values: Sequence[Any]) -> str:
    return ", ".join("?" * len(values))


def _json(value: Any) -> str:
    return json.dumps(value, allow_nan=False, separators=(",", ":"))


# --- the database ---------------------------------------------------------------------


def _describe_sqlite_error(error: sqlite3.Error) -> str:
    text = str(error)
    lowered = text.lower()
    if "readonly" in lowered or "read-only" in lowered:
        return "the database is read-only: spmcli needs write access to the file and to its folder"
    if "locked" in lowered or "busy" in lowered:
        return "the database stayed locked by another process beyond the busy timeout"
    if "not a database" in lowered or "malformed" in lowered or "corrupt" in lowered:
        return f"not a valid SQLite database, or a corrupt one ({text}); refusing to touch it"
    if "unable to open" in lowered:
        return f"cannot open the database ({text}): check that its folder exists and is writable"
    return f"database error: {text}"


class InspectionDatabase:
    """The history of ``detect`` runs in one SQLite file. Open it with :meth:`open`.

    One object serves one process; it may be used from several threads (calls are
    serialised). Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self, path: Path, connection: sqlite3.Connection, *, readonly: bool, busy_timeout: float = DEFAULT_BUSY_TIMEOUT
    ) -> None:
        self.path = path
        self._busy_timeout = busy_timeout
        self.readonly = readonly
        self._connection = connection
        self._mutex = threading.RLock()
        self._locks: dict[int, RunLock] = {}
        # run_id -> {input: (position, identity)} from claim(); record_image uses them.
        self._claimed: dict[int, dict[str, tuple[int, FileIdentity | None]]] = {}
        self._model_sha256: dict[int, str] = {}

    # -- opening and closing ------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        create: bool = True,
        readonly: bool = False,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    ) -> InspectionDatabase:
        """Open (and create, or migrate) an inspection database.

        Parameters
        ----------
        path : str or Path
            The database file. A missing file is created (when ``create``); an
            empty file is initialised.
        create : bool
            Create a missing file. With False a missing file is an error.
        readonly : bool
            Open for reading only (for reports): no write is ever attempted, and a
            database of an older schema is refused instead of migrated.
        busy_timeout : float
            Seconds to wait for another process's write transaction before failing.

        Returns
        -------
        InspectionDatabase

        Raises
        ------
        DatabaseError
            Naming the file: not an SQLite file, corrupt, another program's
            database, written by a newer spmcli, read-only (when opened for
            writing: checked here, before any image is scored), or missing.
            The file is never written to in these cases.
        """
        path = Path(path)
        exists = path.exists()
        if exists:
            if path.is_dir():
                raise DatabaseError("is a folder, not a database file", path)
            try:
                with open(path, "rb") as handle:
                    head = handle.read(len(_SQLITE_MAGIC))
            except OSError as error:
                raise DatabaseError(f"cannot read the file: {error.strerror or error}", path) from None
            if head and head != _SQLITE_MAGIC:
                raise DatabaseError("not an SQLite database file; refusing to touch it", path)
        elif not create or readonly:
            raise DatabaseError("no such database file", path)
        elif not (path.parent if str(path.parent) else Path(".")).is_dir():
            raise DatabaseError(f"folder {path.parent} does not exist", path)

        mode = "ro" if readonly else "rw" if exists else "rwc"
        uri = f"{path.resolve().as_uri()}?mode={mode}"
        try:
            connection = sqlite3.connect(
                uri, uri=True, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as error:
            raise DatabaseError(_describe_sqlite_error(error), path) from None
        database = cls(path, connection, readonly=readonly, busy_timeout=busy_timeout)
        try:
            database._prepare()
        except BaseException:
            connection.close()
            raise
        return database

    def _prepare(self) -> None:
        try:
            version, application_id, tables = self._read_header()
            self._check_header(version, application_id, tables)
            if self.readonly:
                if version < SCHEMA_VERSION:
                    raise DatabaseError(
                        f"written by an older spmcli (schema {version}, this one uses {SCHEMA_VERSION}); "
                        "open it once with write access (e.g. spmcli detect --db) to migrate it",
                        self.path,
                    )
                return
            self._switch_to_wal()
            # In WAL mode NORMAL never corrupts and survives any process crash (SIGKILL
            # included); only an OS crash or power cut may lose the last commits. FULL
            # would add an fsync per image.
            self._connection.execute("PRAGMA synchronous = NORMAL")
            self._connection.execute("PRAGMA foreign_keys = ON")
            with self._write():
                version, application_id, tables = self._read_header()
                self._check_header(version, application_id, tables)
                for target in range(version + 1, SCHEMA_VERSION + 1):
                    for statement in MIGRATIONS[target]:
                        self._connection.execute(statement)
                self._connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                # Writing the header even when nothing changed proves, before any image is
                # scored, that the file can be written (SQLite fails only at the first write).
                self._connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.Error as error:
            raise DatabaseError(_describe_sqlite_error(error), self.path) from None

    def _read_header(self) -> tuple[int, int, set[str]]:
        # One read transaction: three autocommit reads could straddle another process's
        # creation of the schema and see its tables without its application id.
        own_transaction = not self._connection.in_transaction
        if own_transaction:
            self._connection.execute("BEGIN")
        try:
            version = self._connection.execute("PRAGMA user_version").fetchone()[0]
            application_id = self._connection.execute("PRAGMA application_id").fetchone()[0]
            tables = {row[0] for row in self._connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            if own_transaction:
                self._connection.execute("COMMIT")
        return version, application_id, tables

    def _switch_to_wal(self) -> None:
        """Put the database in WAL mode, waiting for other processes that hold it.

        Changing the journal mode needs an exclusive lock, and SQLite fails that at once
        with "database is locked" instead of calling the busy handler; two runs that
        create the same database together would meet it. Changing the mode writes, so it
        doubles as the first write check."""
        deadline = time.monotonic() + self._busy_timeout
        delay = 0.005
        while True:
            try:
                mode = self._connection.execute("PRAGMA journal_mode").fetchone()[0].lower()
                if (
                    mode == "wal"
                    or self._connection.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() == "wal"
                ):
                    return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error).lower() and "busy" not in str(error).lower():
                    raise
            if time.monotonic() > deadline:
                raise sqlite3.OperationalError("database is locked")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def _check_header(self, version: int, application_id: int, tables: set[str]) -> None:
        if application_id != APPLICATION_ID and (application_id != 0 or version != 0 or tables):
            raise DatabaseError(
                "an SQLite database of another program (not an spmcli inspection database); refusing to touch it",
                self.path,
            )
        if version > SCHEMA_VERSION:
            raise DatabaseError(
                f"written by a newer spmcli (schema {version}; this spmcli {__version__} reads up to "
                f"{SCHEMA_VERSION}): upgrade spmcli",
                self.path,
            )

    def close(self) -> None:
        """Close the connection and release the locks of runs still open (they then count as killed)."""
        with self._mutex:
            for lock in self._locks.values():
                lock.release()
            self._locks.clear()
            self._connection.close()

    def __enter__(self) -> InspectionDatabase:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def lock_folder(self) -> Path:
        """Where live runs keep their lock files: ``<database>-runs/`` beside the database."""
        return self.path.with_name(self.path.name + "-runs")

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction that takes the write lock first (waiting up to the busy
        timeout): a deferred transaction that later needs to write could fail at once with
        "database is locked" instead of waiting."""
        with self._mutex:
            if self.readonly:
                raise DatabaseError("opened read-only", self.path)
            if self._connection.in_transaction:
                # A signal (SIGTERM raises in the main thread) cut an earlier transaction
                # short between its failure and its rollback: finish that rollback first.
                self._connection.execute("ROLLBACK")
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                yield self._connection
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as error:
            raise DatabaseError(_describe_sqlite_error(error), self.path) from None

    # -- runs --------------------------------------------------------------------------

    def start_run(
        self,
        *,
        command: str,
        command_line: str | Sequence[str],
        settings: Mapping[str, Any],
        model: Mapping[str, Any] | None = None,
        spmcli_version: str = __version__,
        started: str | None = None,
    ) -> int:
        """Record the start of a run and hold its liveness lock until :meth:`finish_run`.

        Parameters
        ----------
        command : str
            ``"detect"``.
        command_line : str or sequence of str
            The command line, as the report header has it (kept as given).
        settings : mapping
            The run's settings as in the report header (JSON-serialisable).
        model : mapping, optional
            The model: ``sha256`` (required: the model whose scores ``--new-only``
            looks up), ``path``, ``threshold``, ``mode``; other keys are kept in the
            settings. When omitted, ``settings["model"]`` if it is such a mapping.
        spmcli_version : str
        started : str, optional
            ISO 8601 start time (UTC unless it says otherwise); now when omitted.

        Returns
        -------
        int
            The run's id.
        """
        if model is None and isinstance(settings.get("model"), Mapping):
            model = settings["model"]
        if not isinstance(model, Mapping) or not model.get("sha256"):
            raise ValueError("the run's model must be a mapping with at least its sha256")
        started = started or _utc_now()
        started_unix = parse_timestamp(started).timestamp()
        settings_json = _json(dict(settings))
        model_json = _json(dict(model))
        threshold = _finite_or_none(model.get("threshold"))
        lock = None
        try:
            with self._errors(), self._write() as connection:
                row = connection.execute(
                    "SELECT model_id FROM models WHERE sha256 = ? AND path = ? AND threshold IS ? AND mode IS ?",
                    (str(model["sha256"]), str(model.get("path", "")), threshold, model.get("mode")),
                ).fetchone()
                if row is None:
                    model_id = connection.execute(
                        "INSERT INTO models (sha256, path, threshold, mode) VALUES (?, ?, ?, ?)",
                        (str(model["sha256"]), str(model.get("path", "")), threshold, model.get("mode")),
                    ).lastrowid
                else:
                    model_id = row[0]
                run_id = connection.execute(
                    """INSERT INTO runs (model_id, command, command_line, spmcli_version, settings, model,
                                         started, started_unix, host, pid)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    (
                        model_id,
                        command,
                        _json(command_line if isinstance(command_line, str) else list(command_line)),
                        spmcli_version,
                        settings_json,
                        model_json,
                        started,
                        started_unix,
                        socket.gethostname(),
                        os.getpid(),
                    ),
                ).lastrowid
                # Locked before the run row is visible to anyone (the commit), so no other
                # process can ever see this run without its lock.
                try:
                    lock = RunLock(self.lock_folder, run_id)
                except OSError as error:
                    raise DatabaseError(f"cannot lock the run: {error.strerror or error}", self.path) from None
        except BaseException:
            if lock is not None:  # the commit failed after locking
                lock.release()
            raise
        self._locks[run_id] = lock
        self._model_sha256[run_id] = str(model["sha256"])
        self._claimed[run_id] = {}
        return run_id

    def finish_run(
        self, run_id: int, counts: Mapping[str, int], exit_code: int, *, finished: str | None = None
    ) -> None:
        """Record the end of a run: its counts and exit code; release its claims and its lock.

        Claims of inputs the run never recorded as done are released, so the next run
        scores them.

        Parameters
        ----------
        run_id : int
        counts : mapping
            ``inputs``, ``done``, ``failed``, ``skipped``, ``not_started``, ``anomalies``.
        exit_code : int
        finished : str, optional
            ISO 8601 UTC end time; now when omitted.
        """
        missing = [key for key in COUNT_KEYS if key not in counts]
        if missing:
            raise ValueError(f"counts lack {', '.join(missing)}")
        with self._errors(), self._write() as connection:
            connection.execute(
                """UPDATE runs SET finished = ?, state = 'finished', exit_code = ?, n_inputs = ?, n_done = ?,
                   n_failed = ?, n_skipped = ?, n_not_started = ?, n_anomalies = ? WHERE run_id = ?""",
                (finished or _utc_now(), int(exit_code), *(int(counts[key]) for key in COUNT_KEYS), run_id),
            )
            connection.execute("DELETE FROM claims WHERE run_id = ? AND state = 'claimed'", (run_id,))
        lock = self._locks.pop(run_id, None)
        if lock is not None:
            lock.release()
        self._claimed.pop(run_id, None)

    def _run_is_alive(self, run_id: int) -> bool:
        if run_id in self._locks:
            return True
        return lock_is_held(self.lock_folder / f"{run_id}.lock")

    # -- which inputs a run scores --------------------------------------------------------

    def identify(self, paths: Sequence[str | Path]) -> list[FileIdentity | OSError]:
        """The identity of each file, reading only files whose cached hash cannot be trusted.

        Parameters
        ----------
        paths : sequence of str or Path

        Returns
        -------
        list
            Per path, its :class:`FileIdentity`, or the :class:`OSError` met reading it.
        """
        folder = os.getcwd()  # once: os.path.abspath asks for it on every call
        absolute = [os.path.normpath(os.path.join(folder, path)) for path in paths]
        cached: dict[str, tuple[StatSignature, str, int]] = {}
        with self._errors(), self._mutex:
            for chunk in _chunks(absolute):
                rows = self._connection.execute(
                    "SELECT absolute_path, size, mtime_ns, ctime_ns, inode, device, sha256, hashed_ns "
                    f"FROM file_hashes WHERE absolute_path IN ({_placeholders(chunk)})",
                    chunk,
                )
                cached.update((row[0], (StatSignature(*row[1:6]), row[6], row[7])) for row in rows)
        identities: list[FileIdentity | OSError] = []
        fresh: list[tuple[str, StatSignature, str, int]] = []
        for path in absolute:
            try:
                signature = StatSignature.of(os.stat(path))
                entry = cached.get(path)
                racy_before = None if entry is None else entry[2] - int(RACY_SECONDS * 1e9)
                if entry is not None and entry[0] == signature and signature.mtime_ns < racy_before:
                    identities.append(FileIdentity(entry[1], signature.size, signature.mtime_ns))
                    continue
                hashed_ns = time.time_ns()
                sha256, status = hash_file(path)
                signature = StatSignature.of(status)
            except OSError as error:
                identities.append(error)
                continue
            identities.append(FileIdentity(sha256, signature.size, signature.mtime_ns))
            fresh.append((path, signature, sha256, hashed_ns))
        if fresh and not self.readonly:
            with self._errors(), self._write() as connection:
                connection.executemany(
                    """INSERT INTO file_hashes (absolute_path, size, mtime_ns, ctime_ns, inode, device, sha256,
                                                hashed_ns)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                       ON CONFLICT (absolute_path) DO UPDATE SET size = excluded.size,
                           mtime_ns = excluded.mtime_ns, ctime_ns = excluded.ctime_ns, inode = excluded.inode,
                           device = excluded.device, sha256 = excluded.sha256, hashed_ns = excluded.hashed_ns""",
                    [
                        (
                            path,
                            signature.size,
                            signature.mtime_ns,
                            signature.ctime_ns,
                            signature.inode,
                            signature.device,
                            sha256,
                            hashed_ns,
                        )
                        for path, signature, sha256, hashed_ns in fresh
                    ],
                )
        return identities

    def claim(self, run_id: int, paths: Sequence[str | Path], *, new_only: bool) -> list[Claim]:
        """Decide which inputs this run scores, and claim their contents for it.

        Files are hashed first (through the cache, see :meth:`identify`), outside any
        transaction; then one short ``BEGIN IMMEDIATE`` transaction looks up each
        content hash with this run's model and claims the unclaimed ones. A content
        claimed by a run that no longer lives (killed: its lock is free) is taken
        over, and that run is marked ``abandoned``.

        With ``new_only``, an input is skipped when its content was scored with the
        same model (by any run, under any name), is being scored by another live
        run, or appeared earlier in these inputs; two runs claiming the same folder
        at once score each new content once between them. Without it every input is
        scored, and new contents are claimed all the same (so a concurrent
        ``--new-only`` run leaves them alone).

        Parameters
        ----------
        run_id : int
            From :meth:`start_run`.
        paths : sequence of str or Path
            The run's inputs, in input order.
        new_only : bool

        Returns
        -------
        list of Claim
            One per input, in input order.
        """
        model_sha256 = self._run_model(run_id)
        inputs = [str(path) for path in paths]
        identities = self.identify(inputs)
        claims: list[Claim] = []
        first_with_content: dict[str, str] = {}
        liveness: dict[int, bool] = {}
        new_claims: list[tuple[str, str, int, str]] = []
        taken_over: list[tuple[int, str, str, str]] = []
        with self._errors(), self._write() as connection:
            # Nobody else writes while this transaction holds the write lock: look every
            # content up at once, decide in memory, write the changes at once.
            contents = sorted({identity.sha256 for identity in identities if isinstance(identity, FileIdentity)})
            existing: dict[str, tuple[int, str, str]] = {}
            for chunk in _chunks(contents):
                rows = connection.execute(
                    "SELECT content_sha256, run_id, input, state FROM claims "
                    f"WHERE model_sha256 = ? AND content_sha256 IN ({_placeholders(chunk)})",
                    [model_sha256, *chunk],
                )
                existing.update((row[0], row[1:]) for row in rows)
            for position, (name, identity) in enumerate(zip(inputs, identities, strict=True)):
                if isinstance(identity, OSError):
                    reason = f"cannot hash: {identity.strerror or identity}"
                    claims.append(Claim(name, position, "score", reason, None))
                    continue
                earlier = first_with_content.setdefault(identity.sha256, name)
                if earlier != name:
                    decision, reason = ("skip", f"same content as {earlier}") if new_only else ("score", None)
                else:
                    decision, reason, change = self._decide(run_id, existing.get(identity.sha256), new_only, liveness)
                    if change == "insert":
                        new_claims.append((model_sha256, identity.sha256, run_id, name))
                    elif change == "take over":
                        taken_over.append((run_id, name, model_sha256, identity.sha256))
                claims.append(Claim(name, position, decision, reason, identity))
            connection.executemany(
                "INSERT INTO claims (model_sha256, content_sha256, run_id, input, state) "
                "VALUES (?, ?, ?, ?, 'claimed')",
                new_claims,
            )
            connection.executemany(
                "UPDATE claims SET run_id = ?, input = ? WHERE model_sha256 = ? AND content_sha256 = ?", taken_over
            )
            abandoned = [owner for owner, alive in liveness.items() if not alive]
            connection.executemany(
                "UPDATE runs SET state = 'abandoned' WHERE run_id = ? AND state = 'running'",
                [(owner,) for owner in abandoned],
            )
        for owner in abandoned:
            with contextlib.suppress(OSError):
                (self.lock_folder / f"{owner}.lock").unlink()
        self._claimed.setdefault(run_id, {}).update(
            {claim.input: (claim.position, claim.identity) for claim in claims if claim.decision == "score"}
        )
        return claims

    def _decide(
        self, run_id: int, existing: tuple[int, str, str] | None, new_only: bool, liveness: dict[int, bool]
    ) -> tuple[str, str | None, str | None]:
        """(decision, reason, change) for one content given its claim row: change is
        ``"insert"`` (claim it), ``"take over"`` (claim it from a dead run) or None."""
        if existing is None:
            return "score", None, "insert"
        owner, owner_input, state = existing
        if state == "scored":
            if new_only:
                return "skip", f"already scored with this model by run {owner} (as {owner_input})", None
            return "score", None, None
        if owner == run_id:
            return "score", None, None
        if owner not in liveness:
            liveness[owner] = self._run_is_alive(owner)
        if not liveness[owner]:
            return "score", None, "take over"
        if new_only:
            return "skip", f"being scored by run {owner} (as {owner_input})", None
        return "score", None, None

    def _run_model(self, run_id: int) -> str:
        if run_id not in self._model_sha256:
            with self._errors(), self._mutex:
                row = self._connection.execute(
                    "SELECT models.sha256 FROM runs JOIN models USING (model_id) WHERE run_id = ?", (run_id,)
                ).fetchone()
            if row is None:
                raise ValueError(f"no run {run_id} in {self.path}")
            self._model_sha256[run_id] = row[0]
        return self._model_sha256[run_id]

    # -- per-image records ----------------------------------------------------------------

    def record_image(self, run_id: int, record: Mapping[str, Any], *, position: int | None = None) -> None:
        """Store one image's record, in its own transaction.

        ``done`` marks its content scored with the run's model (``--new-only`` runs skip
        it from then on); ``failed`` and ``not_started`` release the run's claim so a
        later run tries again; ``skipped`` records are not stored (the run's counts say
        how many). Recording the same input twice in a run replaces the first record.

        Parameters
        ----------
        run_id : int
        record : mapping
            The report's per-image record: ``input``, ``status``, ``error``,
            ``seconds``, ``warnings``, ``score``, ``threshold``, ``is_anomaly``,
            ``pixel_threshold``, ``anomaly_map``, ``overlay``, ``mask``, ``regions``;
            other fields are kept as they are. Relative paths are taken from the
            current folder (stored as given, and resolved for the report).
        position : int, optional
            The input's index in the run; by default the one :meth:`claim` gave it,
            else after the last stored one.
        """
        status = record.get("status")
        if status not in RECORD_STATUSES:
            raise ValueError(f"status must be one of {', '.join(RECORD_STATUSES)}, not {status!r}")
        name = str(record["input"])
        if status == "skipped":
            return
        model_sha256 = self._run_model(run_id)
        claimed_position, identity = self._claimed.get(run_id, {}).get(name, (None, None))
        if identity is None and status == "done":
            # Not claimed (or not hashable then): identify it now, after the fact.
            identity = next(iter(self.identify([name])))
            identity = None if isinstance(identity, OSError) else identity
        if position is None:
            position = claimed_position
        absolute = {field: os.path.abspath(record[field]) for field in _PATH_FIELDS if record.get(field)}
        extra = {key: value for key, value in record.items() if key not in _RECORD_COLUMNS}
        is_anomaly = record.get("is_anomaly")
        values = (
            name,
            _json(absolute),
            None if identity is None else identity.sha256,
            None if identity is None else identity.size,
            None if identity is None else identity.mtime_ns,
            status,
            record.get("error"),
            _finite_or_none(record.get("seconds")),
            _json(list(record.get("warnings") or [])),
            _finite_or_none(record.get("score")),
            _finite_or_none(record.get("threshold")),
            None if is_anomaly is None else int(bool(is_anomaly)),
            _finite_or_none(record.get("pixel_threshold")),
            *(
                None if record.get(field) is None else str(record[field])
                for field in ("anomaly_map", "overlay", "mask")
            ),
            _json(list(record.get("regions") or [])),
            _json(extra),
            _utc_now(),
        )
        with self._errors(), self._write() as connection:
            if position is None:
                position = connection.execute(
                    "SELECT COALESCE(MAX(position) + 1, 0) FROM images WHERE run_id = ?", (run_id,)
                ).fetchone()[0]
            connection.execute(
                """INSERT INTO images (run_id, position, input, absolute_paths, sha256, size, mtime_ns, status,
                       error, seconds, warnings, score, threshold, is_anomaly, pixel_threshold, anomaly_map,
                       overlay, mask, regions, extra, recorded)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (run_id, input) DO UPDATE SET position = excluded.position,
                       absolute_paths = excluded.absolute_paths, sha256 = excluded.sha256, size = excluded.size,
                       mtime_ns = excluded.mtime_ns, status = excluded.status, error = excluded.error,
                       seconds = excluded.seconds, warnings = excluded.warnings, score = excluded.score,
                       threshold = excluded.threshold, is_anomaly = excluded.is_anomaly,
                       pixel_threshold = excluded.pixel_threshold, anomaly_map = excluded.anomaly_map,
                       overlay = excluded.overlay, mask = excluded.mask, regions = excluded.regions,
                       extra = excluded.extra, recorded = excluded.recorded""",
                (run_id, position, *values),
            )
            if identity is None:
                return
            if status == "done":
                connection.execute(
                    """INSERT INTO claims (model_sha256, content_sha256, run_id, input, state)
                       VALUES (?, ?, ?, ?, 'scored')
                       ON CONFLICT (model_sha256, content_sha256) DO UPDATE SET run_id = excluded.run_id,
                           input = excluded.input, state = 'scored'""",
                    (model_sha256, identity.sha256, run_id, name),
                )
            else:
                connection.execute(
                    "DELETE FROM claims WHERE model_sha256 = ? AND content_sha256 = ? AND run_id = ? "
                    "AND state = 'claimed'",
                    (model_sha256, identity.sha256, run_id),
                )

    # -- queries ------------------------------------------------------------------------

    def runs(self, *, since: str | dt.datetime | None = None, run_ids: Sequence[int] | None = None) -> list[dict]:
        """The selected runs, oldest first, each as a report header plus ``run_id`` and ``state``.

        Parameters
        ----------
        since : str or datetime, optional
            Runs started at or after this instant (ISO 8601; a date alone means its
            midnight UTC; a naive time is taken as UTC).
        run_ids : sequence of int, optional
            Only these runs.

        Returns
        -------
        list of dict
            Keys: ``run_id``, ``state`` (``running``, ``finished``, ``abandoned``; a
            ``running`` run whose process is gone reads ``abandoned``),
            ``spmcli_version``, ``command``, ``command_line``, ``settings``,
            ``model`` (as given to :meth:`start_run`), ``started``, ``finished``,
            ``counts`` (None while running),
            ``exit_code``, ``host``, ``pid``.
        """
        conditions, parameters = [], []
        if since is not None:
            moment = parse_timestamp(since) if isinstance(since, str) else since
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=dt.timezone.utc)
            conditions.append("started_unix >= ?")
            parameters.append(moment.timestamp())
        if run_ids is not None:
            conditions.append(f"run_id IN ({', '.join('?' * len(run_ids))})")
            parameters.extend(int(run_id) for run_id in run_ids)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        with self._errors(), self._mutex:
            rows = self._connection.execute(
                f"""SELECT run_id, state, spmcli_version, command, command_line, settings, started, finished,
                           exit_code, n_inputs, n_done, n_failed, n_skipped, n_not_started, n_anomalies, host, pid,
                           model
                    FROM runs {where} ORDER BY started_unix, run_id""",
                parameters,
            ).fetchall()
        runs = []
        for row in rows:
            state = row[1]
            if state == "running" and not self._run_is_alive(row[0]):
                state = "abandoned"
            counts = None if row[9] is None else dict(zip(COUNT_KEYS, row[9:15], strict=True))
            runs.append(
                {
                    "run_id": row[0],
                    "state": state,
                    "spmcli_version": row[2],
                    "command": row[3],
                    "command_line": json.loads(row[4]),
                    "settings": json.loads(row[5]),
                    "model": json.loads(row[17]),
                    "started": row[6],
                    "finished": row[7],
                    "counts": counts,
                    "exit_code": row[8],
                    "host": row[15],
                    "pid": row[16],
                }
            )
        return runs

    def records(self, run_ids: Sequence[int], *, anomalies_only: bool = False) -> list[dict]:
        """The stored records of the given runs, by run then input order.

        Each is the report's per-image record (the fields given to
        :meth:`record_image`, ``extra`` fields merged back) plus ``run_id``,
        ``sha256``, ``size``, ``mtime_ns`` and ``absolute_paths`` ({field: path}
        for ``input``, ``anomaly_map``, ``overlay``, ``mask``).

        Parameters
        ----------
        run_ids : sequence of int
        anomalies_only : bool
            Only records with ``is_anomaly`` true.
        """
        if not run_ids:
            return []
        condition = " AND is_anomaly = 1" if anomalies_only else ""
        records = []
        with self._errors(), self._mutex:
            for chunk in _chunks([int(run_id) for run_id in run_ids]):
                rows = self._connection.execute(
                    f"""SELECT run_id, input, status, error, seconds, warnings, score, threshold, is_anomaly,
                               pixel_threshold, anomaly_map, overlay, mask, regions, extra, sha256, size, mtime_ns,
                               absolute_paths
                        FROM images WHERE run_id IN ({_placeholders(chunk)}){condition}
                        ORDER BY run_id, position""",
                    chunk,
                ).fetchall()
                records.extend(self._record_of(row) for row in rows)
        return records

    @staticmethod
    def _record_of(row: tuple) -> dict[str, Any]:
        record = {
            "input": row[1],
            "status": row[2],
            "error": row[3],
            "seconds": row[4],
            "warnings": json.loads(row[5]),
            "score": row[6],
            "threshold": row[7],
            "is_anomaly": None if row[8] is None else bool(row[8]),
            "pixel_threshold": row[9],
            "anomaly_map": row[10],
            "overlay": row[11],
            "mask": row[12],
            "regions": json.loads(row[13]),
        }
        record.update(json.loads(row[14]))
        record.update(
            {
                "run_id": row[0],
                "sha256": row[15],
                "size": row[16],
                "mtime_ns": row[17],
                "absolute_paths": json.loads(row[18]),
            }
        )
        return record

    def run_report(self, run_id: int) -> dict[str, Any]:
        """One stored run in the shape of ``detect --report`` JSON: its header and ``records``
        (the stored ones: skipped inputs are not stored)."""
        runs = self.runs(run_ids=[run_id])
        if not runs:
            raise ValueError(f"no run {run_id} in {self.path}")
        return {**runs[0], "records": self.records([run_id])}

    def totals(self) -> dict[str, int]:
        """Totals over the whole database: ``runs``, ``images`` (stored records), ``scored_contents``."""
        with self._errors(), self._mutex:
            return {
                "runs": self._connection.execute("SELECT COUNT(*) FROM runs").fetchone()[0],
                "images": self._connection.execute("SELECT COUNT(*) FROM images").fetchone()[0],
                "scored_contents": self._connection.execute(
                    "SELECT COUNT(*) FROM claims WHERE state = 'scored'"
                ).fetchone()[0],
            }
