"""The inspection database's schema, one migration per version.

``PRAGMA user_version`` holds the version of a database file; opening it applies
``MIGRATIONS[v]`` for every ``v`` above it, in one transaction. A new version adds
an entry here (never edit a released one) and raises :data:`SCHEMA_VERSION`.
"""

from __future__ import annotations

__all__ = ["APPLICATION_ID", "MIGRATIONS", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1
# PRAGMA application_id: "SPMI" in ASCII; marks the file as an spmcli inspection database.
APPLICATION_ID = 0x53504D49

# Each entry: the statements that take the schema from version (key - 1) to version key.
# Executed one by one inside the migration's transaction (executescript would commit).
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE models (
            model_id INTEGER PRIMARY KEY,
            sha256 TEXT NOT NULL,
            path TEXT NOT NULL,
            threshold REAL,
            mode TEXT
        )""",
        "CREATE INDEX models_by_sha256 ON models (sha256)",
        """CREATE TABLE runs (
            run_id INTEGER PRIMARY KEY,
            model_id INTEGER NOT NULL REFERENCES models (model_id),
            command TEXT NOT NULL,
            command_line TEXT NOT NULL,
            spmcli_version TEXT NOT NULL,
            settings TEXT NOT NULL,
            model TEXT NOT NULL,
            started TEXT NOT NULL,
            started_unix REAL NOT NULL,
            finished TEXT,
            state TEXT NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'finished', 'abandoned')),
            exit_code INTEGER,
            n_inputs INTEGER,
            n_done INTEGER,
            n_failed INTEGER,
            n_skipped INTEGER,
            n_not_started INTEGER,
            n_anomalies INTEGER,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL
        )""",
        "CREATE INDEX runs_by_start ON runs (started_unix)",
        """CREATE TABLE images (
            image_id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES runs (run_id),
            position INTEGER NOT NULL,
            input TEXT NOT NULL,
            absolute_paths TEXT NOT NULL DEFAULT '{}',
            sha256 TEXT,
            size INTEGER,
            mtime_ns INTEGER,
            status TEXT NOT NULL CHECK (status IN ('done', 'failed', 'not_started')),
            error TEXT,
            seconds REAL,
            warnings TEXT NOT NULL DEFAULT '[]',
            score REAL,
            threshold REAL,
            is_anomaly INTEGER,
            pixel_threshold REAL,
            anomaly_map TEXT,
            overlay TEXT,
            mask TEXT,
            regions TEXT NOT NULL DEFAULT '[]',
            extra TEXT NOT NULL DEFAULT '{}',
            recorded TEXT NOT NULL,
            UNIQUE (run_id, input)
        )""",
        """CREATE TABLE claims (
            model_sha256 TEXT NOT NULL,
            content_sha256 TEXT NOT NULL,
            run_id INTEGER NOT NULL REFERENCES runs (run_id),
            input TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('claimed', 'scored')),
            PRIMARY KEY (model_sha256, content_sha256)
        ) WITHOUT ROWID""",
        "CREATE INDEX claims_by_run ON claims (run_id, state)",
        """CREATE TABLE file_hashes (
            absolute_path TEXT PRIMARY KEY,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            ctime_ns INTEGER NOT NULL,
            inode INTEGER NOT NULL,
            device INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            hashed_ns INTEGER NOT NULL
        ) WITHOUT ROWID""",
    ),
}
