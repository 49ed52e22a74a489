//! The local spool: one SQLite file holding events waiting for delivery and the emitter's
//! small amount of state. Every SQL statement of brain-emit lives under this module.
//!
//! Tables (schema version [`SCHEMA_VERSION`], kept in `PRAGMA user_version`), and the module
//! that owns each:
//!
//! - `queue` (`queue`): envelopes waiting for delivery, oldest first by `seq`; `event_id` is
//!   unique so re-enqueuing an event is a no-op.
//! - `counters` (`queue`): one row with the queue's row count and byte total (kept exact by
//!   triggers, so the size bound costs O(1) per enqueue) and the drop counts.
//! - `dead_letters` (`queue`): events the server rejected, with its code and message.
//! - `tool_starts` (`tool_starts`): `tool_use_id` → start time, for pairing PreToolUse with
//!   PostToolUse.
//! - `ledgers` (`ledgers`): per Claude session, the serialized
//!   [`crate::usage::SessionLedger`]; flushes compact ledgers idle for 30 days to tombstones
//!   (see `Spool::prune_ledgers`). Not counted toward the size bound, which covers the queue.
//! - `meta` (`meta`): key/value notes named by `MetaKey` (last error, last success,
//!   configuration error, retry schedule, and, on a spool that replaced a corrupt one, the
//!   moved-aside name and the recovery time: ledgers created after it ignore usage logged
//!   before it).
//! - `lease` (`lease`): at most one row naming the flusher that owns delivery, its process
//!   (so a dead holder is noticed at once) and when the lease expires (bounded by the
//!   reader's clock: see `lease` for why the wall clock is not trusted).
//!
//! The file itself (pragmas, busy waits, the WAL kept short) is `connection`'s; the DDL
//! and its version are `schema`'s. Beside the file, `<spool>.losses` (`losses`) counts hook
//! invocations that could not write to the spool at all (a full disk), since the spool
//! itself cannot then record them.
//!
//! Every write is one short `BEGIN IMMEDIATE` transaction, so hundreds of hook processes can
//! enqueue at the same moment: they queue on SQLite's lock (with a busy timeout) instead of
//! failing. A file that SQLite reports as corrupt or not a database is moved aside and a
//! fresh spool is started, so a damaged file never stops the agent: at open, and (damage past
//! the header only shows when a statement reads the damaged page) whenever a hook, flush or
//! heartbeat statement fails with SQLITE_CORRUPT / SQLITE_NOTADB: the caller runs its
//! operation through [`Spool::with_recovery`], which replaces the file and runs it once more
//! (see `recovery`). The rows still readable in the damaged file are first copied into the
//! fresh one (`salvage`), and `status` says how many were salvaged and lost. Losses SQLite
//! itself would keep quiet about leave a trace too: a spool file found empty where one had
//! been (truncated or deleted), and transactions dropped from a damaged WAL (`wal_check`).

mod connection;
mod lease;
mod ledgers;
mod losses;
mod meta;
mod queue;
mod recovery;
mod salvage;
mod schema;
mod tool_starts;
mod wal_check;

use std::path::{Path, PathBuf};

use rusqlite::Connection;
use serde::Serialize;

pub use lease::LEASE_TTL_MS;
pub(crate) use ledgers::StoredLedger;
pub(crate) use losses::{HookProblem, note_hook_problem};
pub(crate) use meta::MetaKey;
pub use queue::DeadLetter;
pub(crate) use queue::QueuedRow;
pub use recovery::MaybeCorrupt;
pub use schema::SCHEMA_VERSION;

/// What to do when an enqueue would push the spool past its size bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenFull {
    /// Make room: delete the oldest `heartbeat` rows first, then the oldest events of any
    /// type. Every deleted row is counted.
    #[default]
    DropOldest,
    /// Keep what is queued and drop the new event (counted).
    DropNewest,
}

/// How a spool is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolOptions {
    /// Bound of the sum of queued envelope sizes, in bytes.
    pub max_bytes: u64,
    /// What happens when an enqueue would exceed [`SpoolOptions::max_bytes`].
    pub when_full: WhenFull,
}

impl Default for SpoolOptions {
    fn default() -> Self {
        SpoolOptions {
            max_bytes: crate::config::DEFAULT_SPOOL_MAX_BYTES,
            when_full: WhenFull::DropOldest,
        }
    }
}

/// Why a spool operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The spool's directory could not be created.
    #[error("cannot create the spool directory {path}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The spool file could not be opened or prepared.
    #[error("cannot open the spool {path}")]
    Open {
        /// The spool file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// A corrupt spool could not be moved aside.
    #[error("cannot move the corrupt spool {path} aside")]
    MoveAside {
        /// The spool file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A statement found the spool corrupt and the file could not be replaced
    /// ([`Spool::with_recovery`]).
    #[error("replacing the corrupt spool ({corruption})")]
    Recover {
        /// The failure that showed the corruption, with its causes.
        corruption: String,
        /// Why the replacement failed.
        #[source]
        source: Box<SpoolError>,
    },
    /// The file was written by a newer brain-emit with a schema this one does not know.
    #[error(
        "the spool {path} has schema version {found}, newer than this brain-emit's {SCHEMA_VERSION}"
    )]
    NewerSchema {
        /// The spool file.
        path: PathBuf,
        /// Its `user_version`.
        found: i64,
    },
    /// A statement failed.
    #[error("spool query failed")]
    Query(#[from] rusqlite::Error),
    /// A ledger could not be serialized.
    #[error("cannot serialize state for the spool")]
    Serialize(#[from] serde_json::Error),
}

impl SpoolError {
    /// Whether SQLite found the file corrupt or not a database (SQLITE_CORRUPT,
    /// SQLITE_NOTADB): the cue for [`Spool::recover`].
    pub fn is_corruption(&self) -> bool {
        match self {
            SpoolError::Query(e) | SpoolError::Open { source: e, .. } => {
                connection::is_corruption(e)
            }
            _ => false,
        }
    }
}

/// Figures about a spool, for `status` and the heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SpoolStats {
    /// The spool file.
    pub path: PathBuf,
    /// Events waiting for delivery.
    pub depth: u64,
    /// Sum of their envelope sizes, in bytes.
    pub bytes: u64,
    /// The configured bound, in bytes.
    pub max_bytes: u64,
    /// Age of the oldest waiting event (since it was enqueued), in ms; `None` when empty.
    pub oldest_age_ms: Option<u64>,
    /// Events dropped for lack of room since the spool was created (all types), including
    /// [`SpoolStats::hooks_lost`].
    pub dropped: u64,
    /// Of which `heartbeat` events.
    pub dropped_heartbeats: u64,
    /// Of which hook invocations whose events could not be spooled at all (disk full,
    /// read-only spool, …), counted beside the spool; each counts once, though an
    /// `llm-usage` hook may have carried several events.
    pub hooks_lost: u64,
    /// Events the server rejected, kept in the local dead-letter table.
    pub dead_letters: u64,
    /// The last delivery error, if any since the last success.
    pub last_error: Option<String>,
    /// When [`SpoolStats::last_error`] happened, Unix ms.
    pub last_error_at_ms: Option<i64>,
    /// When a flush last delivered a batch, Unix ms.
    pub last_success_at_ms: Option<i64>,
    /// A configuration problem found by a flush (401/403, wrong URL); cleared by a success.
    pub config_error: Option<String>,
    /// The last problem a hook invocation met (bad stdin, invalid config, a spool it could
    /// not write to), if any.
    pub last_hook_error: Option<String>,
    /// Background flushers wait until this time after a failure, Unix ms.
    pub next_attempt_at_ms: Option<i64>,
    /// Whether a flusher currently holds a live lease.
    pub lease_held: bool,
    /// When the spool was last found corrupt and replaced, as the moved-aside file's name.
    pub recovered_from: Option<String>,
    /// Queued events salvaged from that corrupt file into this one.
    pub salvaged_rows: Option<u64>,
    /// Queued events of that corrupt file that could not be read (also counted in
    /// [`SpoolStats::dropped`]); `None` when no file was replaced or the number is unknown.
    pub lost_rows: Option<u64>,
    /// When the spool file was last found empty (truncated to 0 bytes, or deleted) where a
    /// spool had been, Unix ms: whatever it held is lost, in unknown number.
    pub found_empty_at_ms: Option<i64>,
    /// Committed transactions (one per hook call) that SQLite dropped because the WAL was
    /// damaged, in total (also counted in [`SpoolStats::dropped`]).
    pub wal_lost_commits: u64,
    /// When a damaged WAL was last found, Unix ms.
    pub wal_damage_at_ms: Option<i64>,
}

/// What an enqueue did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EnqueueOutcome {
    /// New rows written (an event already queued is not written again).
    pub inserted: u64,
    /// Rows dropped to respect the size bound (including a dropped new event).
    pub dropped: u64,
}

/// An open spool. Cheap to open (a few pragmas); hold one per process.
///
/// Its methods are spread over this module's children, one per table (see the module
/// documentation).
#[derive(Debug)]
pub struct Spool {
    conn: Connection,
    path: PathBuf,
    options: SpoolOptions,
    recovered_from: Option<PathBuf>,
    /// (device, inode) of the file opened, to tell whether another process already replaced
    /// it when this one finds it corrupt.
    file_id: Option<(u64, u64)>,
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Spool {
    /// Opens (creating when needed) the spool at `path` with default options.
    ///
    /// # Errors
    /// [`SpoolError`] when the directory cannot be created, the file cannot be opened, or it
    /// has a newer schema. A corrupt file is not an error: it is moved aside to
    /// `<path>.corrupt-<unix ms>` and a fresh spool is created.
    pub fn open(path: impl AsRef<Path>) -> Result<Spool, SpoolError> {
        Spool::open_with(path, SpoolOptions::default())
    }

    /// Opens (creating when needed) the spool at `path` with `options`.
    ///
    /// # Errors
    /// As [`Spool::open`].
    pub fn open_with(path: impl AsRef<Path>, options: SpoolOptions) -> Result<Spool, SpoolError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| SpoolError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let spool = Spool::open_file(path, options)?;
        // While there is room: a full disk later must still be able to count lost hooks.
        losses::ensure(&spool.path);
        Ok(spool)
    }

    /// [`Spool::open_with`] without the losses file.
    fn open_file(path: PathBuf, options: SpoolOptions) -> Result<Spool, SpoolError> {
        let opened_id = connection::file_id(&path);
        match connection::open_waiting(&path) {
            Ok((conn, created)) => {
                let mut spool = Spool {
                    file_id: connection::file_id(&path),
                    conn,
                    path,
                    options,
                    recovered_from: None,
                };
                // A new file where a spool has been (its losses file is still there): the
                // old one was truncated to 0 bytes or deleted, with whatever it held.
                if created && losses::path_for(&spool.path).exists() {
                    spool.note_found_empty()?;
                }
                // Transactions SQLite dropped from a damaged WAL while opening: cheap to
                // rule out (a stat and a 96-byte read), confirmed under the write lock.
                if wal_check::check(&spool.path).is_some() {
                    spool.note_wal_loss()?;
                }
                Ok(spool)
            }
            Err(SpoolError::Open { source, .. }) if connection::is_corruption(&source) => {
                // Another process that found it corrupt too may have replaced it already.
                let aside = if connection::file_id(&path) == opened_id {
                    Some(recovery::move_aside(&path)?)
                } else {
                    None
                };
                let (conn, _) = connection::open_waiting(&path)?;
                let mut spool = Spool {
                    file_id: connection::file_id(&path),
                    conn,
                    path,
                    options,
                    recovered_from: None,
                };
                if let Some(aside) = aside {
                    spool.salvage_and_note(aside)?;
                }
                Ok(spool)
            }
            Err(e) => Err(e),
        }
    }

    /// The spool file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Figures about the spool.
    ///
    /// # Errors
    /// [`SpoolError::Query`] when a read fails.
    pub fn stats(&self) -> Result<SpoolStats, SpoolError> {
        let now = now_ms();
        let counters = queue::counters(&self.conn)?;
        let oldest = queue::oldest_enqueued_at_ms(&self.conn)?;
        let dead_letters = queue::dead_letter_count(&self.conn)?;
        let lease_held = lease::is_live(&self.conn, now)?;
        let text = |k| meta::get(&self.conn, k);
        let int = |k| meta::get_i64(&self.conn, k);
        let to_u = |v: i64| u64::try_from(v).unwrap_or(0);
        let losses = losses::read(&self.path);
        // The later of the hook error noted in `meta` and the last loss (which `meta` could
        // not take when it happened).
        let noted_at = int(MetaKey::LastHookErrorAtMs)?;
        let last_hook_error = match losses.last_error {
            Some(lost) if losses.last_at_ms >= noted_at => Some(lost),
            _ => text(MetaKey::LastHookError)?,
        };
        Ok(SpoolStats {
            path: self.path.clone(),
            depth: to_u(counters.rows),
            bytes: to_u(counters.bytes),
            max_bytes: self.options.max_bytes,
            oldest_age_ms: oldest.map(|t| to_u(now - t)),
            dropped: to_u(counters.dropped_heartbeats + counters.dropped_events)
                .saturating_add(losses.hooks_lost),
            dropped_heartbeats: to_u(counters.dropped_heartbeats),
            hooks_lost: losses.hooks_lost,
            dead_letters: to_u(dead_letters),
            last_error: text(MetaKey::LastError)?,
            last_error_at_ms: int(MetaKey::LastErrorAtMs)?,
            last_success_at_ms: int(MetaKey::LastSuccessAtMs)?,
            config_error: text(MetaKey::ConfigError)?,
            last_hook_error,
            next_attempt_at_ms: int(MetaKey::NextAttemptAtMs)?,
            lease_held,
            recovered_from: text(MetaKey::RecoveredFrom)?,
            salvaged_rows: int(MetaKey::SalvagedRows)?.map(to_u),
            lost_rows: int(MetaKey::LostRows)?.map(to_u),
            found_empty_at_ms: int(MetaKey::FoundEmptyAtMs)?,
            wal_lost_commits: int(MetaKey::WalLostCommits)?.map_or(0, to_u),
            wal_damage_at_ms: int(MetaKey::WalDamageAtMs)?,
        })
    }

    /// Whether this process can write to the spool: takes the write lock and lets it go
    /// (`BEGIN IMMEDIATE; ROLLBACK`), so nothing changes. SQLite opens a file it may not
    /// write read-only without complaint; this is where that shows (`brain-emit doctor`).
    ///
    /// # Errors
    /// [`SpoolError::Query`] when the write lock cannot be taken (read-only file or
    /// directory, a lock held past the busy timeout).
    pub fn check_writable(&self) -> Result<(), SpoolError> {
        self.conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")?;
        Ok(())
    }

    /// Number of queued events.
    ///
    /// # Errors
    /// [`SpoolError::Query`] when the read fails.
    pub fn depth(&self) -> Result<u64, SpoolError> {
        Ok(u64::try_from(queue::counters(&self.conn)?.rows).unwrap_or(0))
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        connection::truncate_wal_if_big(&self.conn, &self.path);
    }
}

#[cfg(test)]
mod tests;
