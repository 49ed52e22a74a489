//! The spool's tables and their version: the DDL, and the check at every open that creates
//! it when missing or brings an older file up to date, one forward-only step per version.
//!
//! Versions: 1, the first schema; 2, `lease.process` (who holds the lease, precisely enough
//! to tell whether it still runs, see `lease`).

use rusqlite::Connection;

use super::SpoolError;

/// Version of the spool schema this code creates and understands.
pub const SCHEMA_VERSION: i64 = 2;

/// Creates the schema when `user_version` says it is missing, or runs the steps from the
/// file's version up to [`SCHEMA_VERSION`].
///
/// `user_version` is a header field readable without parsing the schema, so the common
/// case (schema current) costs one read; creation and steps happen in an IMMEDIATE
/// transaction that re-checks the version, so concurrent first opens run each exactly once.
///
/// Returns whether this call created the schema (the file was new, or empty).
///
/// # Errors
/// [`SpoolError::NewerSchema`] (with an empty path, filled in by the caller) for a file of a
/// newer brain-emit, [`SpoolError::Query`] when a statement fails.
pub(super) fn migrate(conn: &Connection) -> Result<bool, SpoolError> {
    let version = user_version(conn)?;
    if version == SCHEMA_VERSION {
        return Ok(false);
    }
    if version > SCHEMA_VERSION {
        return Err(SpoolError::NewerSchema {
            path: std::path::PathBuf::new(),
            found: version,
        });
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| -> Result<bool, SpoolError> {
        let found = user_version(conn)?;
        if found < 1 {
            conn.execute_batch(SCHEMA_V1)?;
        }
        if found < 2 {
            conn.execute_batch(STEP_V2)?;
        }
        Ok(found == 0)
    })();
    match result {
        Ok(created) => {
            conn.execute_batch("COMMIT")?;
            Ok(created)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

fn user_version(conn: &Connection) -> Result<i64, rusqlite::Error> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

pub(super) const SCHEMA_V1: &str = "
CREATE TABLE queue (
    seq            INTEGER PRIMARY KEY,
    event_id       TEXT    NOT NULL UNIQUE,
    event_type     TEXT    NOT NULL,
    body           TEXT    NOT NULL,
    size_bytes     INTEGER NOT NULL,
    enqueued_at_ms INTEGER NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE counters (
    id                 INTEGER PRIMARY KEY CHECK (id = 1),
    queue_rows         INTEGER NOT NULL,
    queue_bytes        INTEGER NOT NULL,
    dropped_heartbeats INTEGER NOT NULL,
    dropped_events     INTEGER NOT NULL
);
INSERT INTO counters VALUES (1, 0, 0, 0, 0);
CREATE TRIGGER queue_count_insert AFTER INSERT ON queue BEGIN
    UPDATE counters SET queue_rows = queue_rows + 1, queue_bytes = queue_bytes + NEW.size_bytes
    WHERE id = 1;
END;
CREATE TRIGGER queue_count_delete AFTER DELETE ON queue BEGIN
    UPDATE counters SET queue_rows = queue_rows - 1, queue_bytes = queue_bytes - OLD.size_bytes
    WHERE id = 1;
END;
CREATE TABLE dead_letters (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT,
    body     TEXT    NOT NULL,
    code     TEXT    NOT NULL,
    message  TEXT    NOT NULL,
    at_ms    INTEGER NOT NULL
);
CREATE TABLE tool_starts (
    tool_use_id   TEXT PRIMARY KEY,
    started_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE ledgers (
    session_key   TEXT PRIMARY KEY,
    state         TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE lease (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    holder        TEXT    NOT NULL,
    pid           INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
PRAGMA user_version = 1;
";

/// Version 2: `lease.process`, the holder's boot id, PID namespace and start time (NULL when
/// unknown, e.g. a lease claimed by a hook for a flusher not started yet).
const STEP_V2: &str = "
ALTER TABLE lease ADD COLUMN process TEXT;
PRAGMA user_version = 2;
";
