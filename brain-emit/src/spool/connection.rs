//! The spool file as SQLite sees it: opening a connection (pragmas, each with why), waiting
//! out other processes' locks, telling corruption and lock errors apart, and keeping the WAL
//! short when a connection closes.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::SpoolError;
use super::schema;

/// How long a writer waits for another process's lock before giving up, in ms.
const BUSY_TIMEOUT_MS: u64 = 5_000;

/// WAL file size, in bytes, past which closing a spool checkpoints and truncates the WAL.
///
/// The first connection to open a WAL database rebuilds the WAL index by reading and
/// checksumming every frame, and each hook process is a first connection: the WAL must stay
/// short or every hook pays for re-reading it. It must also be emptied by a TRUNCATE
/// checkpoint rather than left to automatic ones: a fresh process forgets which frames were
/// already copied back (that lives in the `-shm` file, reset by the first opener), so
/// without a truncate the WAL never restarts and grows to the automatic-checkpoint bound
/// (about 4 MiB), costing milliseconds per hook. An enqueue appends ~3–4 pages (16 KiB), so
/// this truncates every ~15 hooks.
const WAL_TRUNCATE_BYTES: u64 = 256 * 1024;

/// Busy timeout for the closing checkpoint, in ms: it is housekeeping and must not hold a
/// hook up; if other processes keep the database busy, a later close does it.
const CHECKPOINT_BUSY_MS: u64 = 20;

/// (device, inode) of the file at `path`, when it exists.
pub(super) fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Whether SQLite found the file corrupt or not a database.
pub(super) fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// [`open`], retried while another process holds the file (SQLITE_BUSY/LOCKED), for up to
/// [`BUSY_TIMEOUT_MS`].
///
/// The busy handler does not cover every step of an open: switching a fresh file to WAL
/// and recovering the WAL index can answer BUSY at once while other hook processes are
/// doing the same, and a hook that gave up there would lose its event.
///
/// Returns the connection and whether this open created the schema (a new or empty file).
pub(super) fn open_waiting(path: &Path) -> Result<(Connection, bool), SpoolError> {
    let deadline = Instant::now() + Duration::from_millis(BUSY_TIMEOUT_MS);
    let mut pause = Duration::from_millis(1);
    loop {
        match open(path) {
            Err(SpoolError::Open { source, .. })
                if is_busy(&source) && Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// Opens the connection, sets the pragmas and brings the schema up to date; whether it
/// created the schema.
fn open(path: &Path) -> Result<(Connection, bool), SpoolError> {
    let wrap = |source| SpoolError::Open {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(wrap)?;
    // Many hook processes write at once: wait up to 5 s for the lock instead of failing
    // with SQLITE_BUSY. Set first, so the pragmas below also wait.
    conn.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))
        .map_err(wrap)?;
    // WAL: readers never block the writer and a commit is one append to the log, which is
    // what makes an enqueue cheap. The mode is stored in the file; setting it again is a
    // no-op check. Fails with NOTADB/CORRUPT on a damaged file, which the caller handles.
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(wrap)?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(%mode, "spool is not in WAL mode");
    }
    // NORMAL in WAL mode: a commit survives a process crash (the hook exits right after
    // enqueuing); only an OS crash or power loss can lose the last commits. FULL would
    // fsync on every hook invocation, which the hot path cannot afford.
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(wrap)?;
    // Each hook process is usually the only connection, and SQLite checkpoints and deletes
    // the WAL when the last connection closes: two fsyncs per hook. Skip that;
    // `truncate_wal_if_big` (run when a `Spool` is dropped) truncates the WAL once it passes
    // WAL_TRUNCATE_BYTES instead.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
        .map_err(wrap)?;
    let created = schema::migrate(&conn).map_err(|e| match e {
        SpoolError::Query(source) => wrap(source),
        SpoolError::NewerSchema { found, .. } => SpoolError::NewerSchema {
            path: path.to_path_buf(),
            found,
        },
        other => other,
    })?;
    Ok((conn, created))
}

/// Checkpoints and truncates the WAL of the spool at `path` when it is over
/// [`WAL_TRUNCATE_BYTES`]; failures are ignored (someone else is busy, a later close
/// retries).
pub(super) fn truncate_wal_if_big(conn: &Connection, path: &Path) {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let big = std::fs::metadata(&wal).is_ok_and(|m| m.len() > WAL_TRUNCATE_BYTES);
    if big {
        let _ = conn.busy_timeout(Duration::from_millis(CHECKPOINT_BUSY_MS));
        let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    }
}
