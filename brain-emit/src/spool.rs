//! The local spool: one SQLite file holding events waiting for delivery and the emitter's
//! small amount of state.
//!
//! Tables (schema version [`SCHEMA_VERSION`], kept in `PRAGMA user_version`):
//!
//! - `queue`: envelopes waiting for delivery, oldest first by `seq`; `event_id` is unique so
//!   re-enqueuing an event is a no-op.
//! - `counters`: one row with the queue's row count and byte total (kept exact by triggers, so
//!   the size bound costs O(1) per enqueue) and the drop counts.
//! - `dead_letters`: events the server rejected, with its code and message.
//! - `tool_starts`: `tool_use_id` → start time, for pairing PreToolUse with PostToolUse.
//! - `ledgers`: per Claude session, the serialized [`crate::usage::SessionLedger`]; flushes
//!   compact ledgers idle for 30 days to tombstones (see `Spool::prune_ledgers`). Not counted
//!   toward the size bound, which covers the queue.
//! - `meta`: key/value notes (last error, last success, configuration error, retry schedule,
//!   and, on a spool that replaced a corrupt one, the moved-aside name and the recovery time:
//!   ledgers created after it ignore usage logged before it).
//! - `lease`: at most one row naming the flusher that owns delivery and when that expires.
//!
//! Every write is one short `BEGIN IMMEDIATE` transaction, so hundreds of hook processes can
//! enqueue at the same moment: they queue on SQLite's lock (with a busy timeout) instead of
//! failing. A file that SQLite reports as corrupt or not a database is moved aside and a
//! fresh spool is started, so a damaged file never stops the agent: at open, and (damage past
//! the header only shows when a statement reads the damaged page) whenever a hook, flush or
//! heartbeat statement fails with SQLITE_CORRUPT / SQLITE_NOTADB: the caller calls
//! [`Spool::recover`] and retries its operation once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;
use shared_proto::{Event, EventType};

/// Version of the spool schema this code creates and understands.
pub const SCHEMA_VERSION: i64 = 1;

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

/// Most dead letters kept locally; older ones are deleted first.
const MAX_DEAD_LETTERS: i64 = 10_000;

/// A session ledger not updated for this long is compacted to a tombstone, in ms (30 days).
const LEDGER_IDLE_MS: i64 = 30 * 24 * 3600 * 1000;

/// A tombstone not touched for this long is deleted, in ms (365 days).
const LEDGER_TOMBSTONE_TTL_MS: i64 = 365 * 24 * 3600 * 1000;

/// How often a flush prunes ledgers, at most, in ms.
const LEDGER_PRUNE_EVERY_MS: i64 = 3600 * 1000;

/// `tool_starts` rows older than this are forgotten (their PostToolUse never came), in ms.
const TOOL_START_TTL_MS: i64 = 24 * 3600 * 1000;

/// Meta key: when this spool replaced a corrupt one, Unix ms.
const RECOVERED_AT_MS: &str = "recovered_at_ms";

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
            SpoolError::Query(e) | SpoolError::Open { source: e, .. } => is_corruption(e),
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
    /// Events dropped for lack of room since the spool was created (all types).
    pub dropped: u64,
    /// Of which `heartbeat` events.
    pub dropped_heartbeats: u64,
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
    /// The last problem a hook invocation met (bad stdin, invalid config), if any.
    pub last_hook_error: Option<String>,
    /// Background flushers wait until this time after a failure, Unix ms.
    pub next_attempt_at_ms: Option<i64>,
    /// Whether a flusher currently holds a live lease.
    pub lease_held: bool,
    /// When the spool was last found corrupt and replaced, as the moved-aside file's name.
    pub recovered_from: Option<String>,
}

/// What an enqueue did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EnqueueOutcome {
    /// New rows written (an event already queued is not written again).
    pub inserted: u64,
    /// Rows dropped to respect the size bound (including a dropped new event).
    pub dropped: u64,
}

/// One queued event, as read by the flusher.
#[derive(Debug, Clone)]
pub(crate) struct QueuedRow {
    pub(crate) event_id: String,
    pub(crate) body: String,
}

/// A ledger as stored, with the version used for optimistic concurrency.
#[derive(Debug, Clone)]
pub(crate) struct StoredLedger {
    pub(crate) state: String,
    pub(crate) version: i64,
}

/// An open spool. Cheap to open (a few pragmas); hold one per process.
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

fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
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
        match open_conn_waiting(&path) {
            Ok(conn) => Ok(Spool {
                file_id: file_id(&path),
                conn,
                path,
                options,
                recovered_from: None,
            }),
            Err(SpoolError::Open { source, .. }) if is_corruption(&source) => {
                let aside = move_aside(&path)?;
                let conn = open_conn_waiting(&path)?;
                let mut spool = Spool {
                    file_id: file_id(&path),
                    conn,
                    path,
                    options,
                    recovered_from: None,
                };
                spool.note_recovery(aside)?;
                Ok(spool)
            }
            Err(e) => Err(e),
        }
    }

    /// Replaces a spool found corrupt after it was opened (a statement failed with
    /// SQLITE_CORRUPT or SQLITE_NOTADB, see [`SpoolError::is_corruption`]): closes it, moves the
    /// file aside as [`Spool::open`] does, and continues on a fresh file. When another process
    /// already replaced the file, this one just switches to the replacement.
    ///
    /// # Errors
    /// [`SpoolError`] when the file cannot be moved or the fresh one cannot be created.
    pub fn recover(&mut self) -> Result<(), SpoolError> {
        // Close first: SQLite addresses the WAL by name, and after the rename that name
        // belongs to the fresh file.
        let placeholder = Connection::open_in_memory()?;
        drop(std::mem::replace(&mut self.conn, placeholder));
        let still_ours = self.file_id.is_some() && file_id(&self.path) == self.file_id;
        let aside = if still_ours {
            Some(move_aside(&self.path)?)
        } else {
            None
        };
        self.conn = open_conn_waiting(&self.path)?;
        self.file_id = file_id(&self.path);
        if let Some(aside) = aside {
            self.note_recovery(aside)?;
        }
        Ok(())
    }

    /// Records on a fresh spool that it replaced the corrupt file now at `aside`.
    fn note_recovery(&mut self, aside: PathBuf) -> Result<(), SpoolError> {
        let name = aside
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.recovered_from = Some(aside);
        self.set_meta("recovered_from", &name)?;
        // Ledgers created from now on ignore usage logged before this time (see
        // `crate::usage::SessionLedger::ignoring_before`).
        self.set_meta(RECOVERED_AT_MS, &now_ms().to_string())?;
        self.set_meta(
            "last_error",
            &format!("the spool was corrupt; moved aside to {name}"),
        )?;
        self.set_meta("last_error_at_ms", &now_ms().to_string())?;
        Ok(())
    }

    /// The spool file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// When this spool file was started to replace a corrupt one (Unix ms); `None` for a
    /// spool that never replaced one.
    ///
    /// # Errors
    /// [`SpoolError::Query`] when the read fails.
    pub fn recovered_at_ms(&self) -> Result<Option<i64>, SpoolError> {
        Ok(self.meta(RECOVERED_AT_MS)?.and_then(|v| v.parse().ok()))
    }

    /// Where the corrupt file was moved when this open replaced it.
    pub fn recovered_from(&self) -> Option<&Path> {
        self.recovered_from.as_deref()
    }

    /// Queues one event durably (committed to the WAL when this returns).
    ///
    /// An event whose id is already queued is not written again.
    ///
    /// # Errors
    /// [`SpoolError::Query`] when the write fails (e.g. the disk is full or the lock was held
    /// longer than the 5 s busy timeout).
    pub fn enqueue(&mut self, event: &Event) -> Result<EnqueueOutcome, SpoolError> {
        self.enqueue_all(std::slice::from_ref(event))
    }

    /// Queues several events in one transaction.
    ///
    /// # Errors
    /// As [`Spool::enqueue`].
    pub fn enqueue_all(&mut self, events: &[Event]) -> Result<EnqueueOutcome, SpoolError> {
        let options = self.options;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut outcome = EnqueueOutcome::default();
        for event in events {
            let o = insert_event(&tx, event, options)?;
            outcome.inserted += o.inserted;
            outcome.dropped += o.dropped;
        }
        tx.commit()?;
        Ok(outcome)
    }

    /// Queues events and, in the same transaction, claims the delivery lease for a
    /// background flusher when nobody holds a live one and no retry back-off is pending.
    ///
    /// Returns the claimed lease token (hand it to the flusher) or `None`.
    pub(crate) fn enqueue_and_claim(
        &mut self,
        events: &[Event],
        claim: bool,
        lease_ttl_ms: i64,
    ) -> Result<(EnqueueOutcome, Option<String>), SpoolError> {
        let options = self.options;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (outcome, token) = insert_events_and_claim(&tx, events, options, claim, lease_ttl_ms)?;
        tx.commit()?;
        Ok((outcome, token))
    }

    /// Figures about the spool.
    ///
    /// # Errors
    /// [`SpoolError::Query`] when a read fails.
    pub fn stats(&self) -> Result<SpoolStats, SpoolError> {
        let now = now_ms();
        let (depth, bytes, dropped_hb, dropped_ev): (i64, i64, i64, i64) = self.conn.query_row(
            "SELECT queue_rows, queue_bytes, dropped_heartbeats, dropped_events FROM counters WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        let oldest: Option<i64> = self
            .conn
            .query_row(
                "SELECT enqueued_at_ms FROM queue ORDER BY seq LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        let dead_letters: i64 =
            self.conn
                .query_row("SELECT COUNT(*) FROM dead_letters", [], |r| r.get(0))?;
        let lease_held: bool = self
            .conn
            .query_row(
                "SELECT expires_at_ms > ?1 FROM lease WHERE id = 1",
                [now],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(false);
        let int_meta = |k: &str| -> Result<Option<i64>, SpoolError> {
            Ok(self.meta(k)?.and_then(|v| v.parse().ok()))
        };
        let to_u = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(SpoolStats {
            path: self.path.clone(),
            depth: to_u(depth),
            bytes: to_u(bytes),
            max_bytes: self.options.max_bytes,
            oldest_age_ms: oldest.map(|t| to_u(now - t)),
            dropped: to_u(dropped_hb + dropped_ev),
            dropped_heartbeats: to_u(dropped_hb),
            dead_letters: to_u(dead_letters),
            last_error: self.meta("last_error")?,
            last_error_at_ms: int_meta("last_error_at_ms")?,
            last_success_at_ms: int_meta("last_success_at_ms")?,
            config_error: self.meta("config_error")?,
            last_hook_error: self.meta("last_hook_error")?,
            next_attempt_at_ms: int_meta("next_attempt_at_ms")?,
            lease_held,
            recovered_from: self.meta("recovered_from")?,
        })
    }

    /// Number of queued events.
    ///
    /// # Errors
    /// [`SpoolError::Query`] when the read fails.
    pub fn depth(&self) -> Result<u64, SpoolError> {
        let n: i64 =
            self.conn
                .query_row("SELECT queue_rows FROM counters WHERE id = 1", [], |r| {
                    r.get(0)
                })?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    // ---- meta -------------------------------------------------------------------------

    pub(crate) fn meta(&self, key: &str) -> Result<Option<String>, SpoolError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    pub(crate) fn set_meta(&mut self, key: &str, value: &str) -> Result<(), SpoolError> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    /// Records a delivery failure: message, time, and when background flushers may retry.
    pub(crate) fn record_failure(
        &mut self,
        message: &str,
        config_error: bool,
        next_attempt_at_ms: Option<i64>,
    ) -> Result<(), SpoolError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = now_ms().to_string();
        let put = |k: &str, v: &str| {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![k, v],
            )
        };
        put("last_error", message)?;
        put("last_error_at_ms", &now)?;
        if config_error {
            put("config_error", message)?;
        }
        if let Some(at) = next_attempt_at_ms {
            put("next_attempt_at_ms", &at.to_string())?;
        }
        tx.commit()?;
        Ok(())
    }

    // ---- tool starts ------------------------------------------------------------------

    /// Remembers when a tool call started, for duration pairing.
    pub(crate) fn record_tool_start(
        &mut self,
        tool_use_id: &str,
        started_at_ms: i64,
    ) -> Result<(), SpoolError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO tool_starts (tool_use_id, started_at_ms) VALUES (?1, ?2)
             ON CONFLICT (tool_use_id) DO UPDATE SET started_at_ms = excluded.started_at_ms",
            params![tool_use_id, started_at_ms],
        )?;
        // Forget starts whose PostToolUse never came (agent killed mid-call).
        tx.execute(
            "DELETE FROM tool_starts WHERE started_at_ms < ?1",
            [started_at_ms - TOOL_START_TTL_MS],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Queues a tool-call event and, in the same transaction, removes and returns the start
    /// time recorded for `tool_use_id` through `build`, which receives it.
    pub(crate) fn take_tool_start_and_enqueue(
        &mut self,
        tool_use_id: Option<&str>,
        build: impl FnOnce(Option<i64>) -> Option<Event>,
        claim: bool,
        lease_ttl_ms: i64,
    ) -> Result<(EnqueueOutcome, Option<String>), SpoolError> {
        let options = self.options;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let started = match tool_use_id {
            Some(id) => tx
                .query_row(
                    "DELETE FROM tool_starts WHERE tool_use_id = ?1 RETURNING started_at_ms",
                    [id],
                    |r| r.get(0),
                )
                .optional()?,
            None => None,
        };
        let mut outcome = EnqueueOutcome::default();
        if let Some(event) = build(started) {
            outcome = insert_event(&tx, &event, options)?;
        }
        let token = if claim {
            claim_for_background(&tx, lease_ttl_ms)?
        } else {
            None
        };
        tx.commit()?;
        Ok((outcome, token))
    }

    // ---- ledgers ----------------------------------------------------------------------

    pub(crate) fn load_ledger(&self, key: &str) -> Result<Option<StoredLedger>, SpoolError> {
        Ok(self
            .conn
            .query_row(
                "SELECT state, version FROM ledgers WHERE session_key = ?1",
                [key],
                |r| {
                    Ok(StoredLedger {
                        state: r.get(0)?,
                        version: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    /// Bounds the `ledgers` table (called by flushes, never by hooks; at most once per
    /// [`LEDGER_PRUNE_EVERY_MS`]).
    ///
    /// A ledger not updated for 30 days is replaced by a tombstone: a ledger with no offsets
    /// and no counts that ignores usage logged before the pruning (see
    /// `SessionLedger::ignoring_before`), a few dozen bytes. A session resumed later then
    /// reports only its new usage instead of its whole history again. Tombstones untouched
    /// for a year are deleted. Returns (compacted, deleted).
    ///
    /// Ledger bytes are not counted toward [`SpoolOptions::max_bytes`] (that bound covers the
    /// queue, kept exact by triggers); pruning is what keeps this table small: live ledgers
    /// of the last 30 days, plus ~50 bytes per older session.
    pub(crate) fn prune_ledgers(&mut self) -> Result<(u64, u64), SpoolError> {
        let now = now_ms();
        let last: Option<i64> = self
            .meta("ledgers_pruned_at_ms")?
            .and_then(|v| v.parse().ok());
        if last.is_some_and(|t| now - t < LEDGER_PRUNE_EVERY_MS && t <= now) {
            return Ok((0, 0));
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let tombstone = format!(r#"{{"v":{},"since":{now}}}"#, crate::usage::LEDGER_FORMAT);
        // A tombstone is the only ledger without `offsets`. The version bump makes a hook
        // that loaded the old state redo its work from the tombstone.
        let compacted = tx.execute(
            "UPDATE ledgers SET state = ?1, version = version + 1, updated_at_ms = ?2
             WHERE updated_at_ms < ?3 AND json_valid(state) AND json_type(state, '$.offsets') IS NOT NULL",
            params![tombstone, now, now - LEDGER_IDLE_MS],
        )?;
        let deleted = tx.execute(
            "DELETE FROM ledgers WHERE updated_at_ms < ?1
             AND json_valid(state) AND json_type(state, '$.offsets') IS NULL",
            [now - LEDGER_TOMBSTONE_TTL_MS],
        )?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('ledgers_pruned_at_ms', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [now.to_string()],
        )?;
        tx.commit()?;
        Ok((
            u64::try_from(compacted).unwrap_or(0),
            u64::try_from(deleted).unwrap_or(0),
        ))
    }

    /// Saves a ledger and queues its events in one transaction, provided nobody saved the
    /// ledger since it was loaded at `expected_version` (`None` = it did not exist).
    ///
    /// Returns `None` when the ledger changed underneath (nothing written; reload and redo),
    /// else the enqueue outcome and a claimed lease token as [`Spool::enqueue_and_claim`].
    pub(crate) fn save_ledger_and_enqueue(
        &mut self,
        key: &str,
        expected_version: Option<i64>,
        state: &str,
        events: &[Event],
        claim: bool,
        lease_ttl_ms: i64,
    ) -> Result<Option<(EnqueueOutcome, Option<String>)>, SpoolError> {
        let options = self.options;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: Option<i64> = tx
            .query_row(
                "SELECT version FROM ledgers WHERE session_key = ?1",
                [key],
                |r| r.get(0),
            )
            .optional()?;
        if current != expected_version {
            return Ok(None);
        }
        tx.execute(
            "INSERT INTO ledgers (session_key, state, version, updated_at_ms) VALUES (?1, ?2, 1, ?3)
             ON CONFLICT (session_key) DO UPDATE
             SET state = excluded.state, version = ledgers.version + 1, updated_at_ms = excluded.updated_at_ms",
            params![key, state, now_ms()],
        )?;
        let (outcome, token) = insert_events_and_claim(&tx, events, options, claim, lease_ttl_ms)?;
        tx.commit()?;
        Ok(Some((outcome, token)))
    }

    // ---- lease ------------------------------------------------------------------------

    /// Takes the delivery lease for `token` when it is free, expired, or already ours.
    pub(crate) fn acquire_lease(&mut self, token: &str, ttl_ms: i64) -> Result<bool, SpoolError> {
        let now = now_ms();
        let changed = self.conn.execute(
            "INSERT INTO lease (id, holder, pid, expires_at_ms) VALUES (1, ?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE
             SET holder = excluded.holder, pid = excluded.pid, expires_at_ms = excluded.expires_at_ms
             WHERE lease.expires_at_ms <= ?4 OR lease.holder = excluded.holder",
            params![token, std::process::id(), now + ttl_ms, now],
        )?;
        Ok(changed == 1)
    }

    /// Extends our lease; false when it is no longer ours.
    pub(crate) fn renew_lease(&mut self, token: &str, ttl_ms: i64) -> Result<bool, SpoolError> {
        let changed = self.conn.execute(
            "UPDATE lease SET expires_at_ms = ?2, pid = ?3 WHERE id = 1 AND holder = ?1",
            params![token, now_ms() + ttl_ms, std::process::id()],
        )?;
        Ok(changed == 1)
    }

    /// Gives the lease up if it is ours.
    pub(crate) fn release_lease(&mut self, token: &str) -> Result<(), SpoolError> {
        self.conn
            .execute("DELETE FROM lease WHERE id = 1 AND holder = ?1", [token])?;
        Ok(())
    }

    /// Whether someone holds a live lease.
    #[cfg(test)]
    pub(crate) fn lease_live(&self) -> Result<bool, SpoolError> {
        Ok(self
            .conn
            .query_row(
                "SELECT expires_at_ms > ?1 FROM lease WHERE id = 1",
                [now_ms()],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(false))
    }

    // ---- delivery ---------------------------------------------------------------------

    /// The oldest queued events: at most `max_rows`, and at most `max_bytes` of envelopes
    /// (always at least one row when the queue is not empty).
    pub(crate) fn peek_batch(
        &self,
        max_rows: usize,
        max_bytes: usize,
    ) -> Result<Vec<QueuedRow>, SpoolError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT event_id, body FROM queue ORDER BY seq LIMIT ?1")?;
        let rows = stmt.query_map([i64::try_from(max_rows).unwrap_or(i64::MAX)], |r| {
            Ok(QueuedRow {
                event_id: r.get(0)?,
                body: r.get(1)?,
            })
        })?;
        let mut out = Vec::new();
        let mut total = 2usize;
        for row in rows {
            let row = row?;
            total += row.body.len() + 1;
            if !out.is_empty() && total > max_bytes {
                break;
            }
            out.push(row);
        }
        Ok(out)
    }

    /// Applies a server answer: deletes delivered rows, moves rejected ones to the
    /// dead-letter table, counts an attempt on the rest; records the success.
    pub(crate) fn settle(
        &mut self,
        delivered: &[&str],
        rejected: &[(&str, String, String)],
        retry: &[&str],
    ) -> Result<(), SpoolError> {
        let now = now_ms();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut del = tx.prepare_cached("DELETE FROM queue WHERE event_id = ?1")?;
            for id in delivered {
                del.execute([id])?;
            }
            let mut dead = tx.prepare_cached(
                "INSERT INTO dead_letters (event_id, body, code, message, at_ms)
                 SELECT event_id, body, ?2, ?3, ?4 FROM queue WHERE event_id = ?1",
            )?;
            for (id, code, message) in rejected {
                dead.execute(params![id, code, message, now])?;
                del.execute([id])?;
            }
            let mut bump =
                tx.prepare_cached("UPDATE queue SET attempts = attempts + 1 WHERE event_id = ?1")?;
            for id in retry {
                bump.execute([id])?;
            }
        }
        if !rejected.is_empty() {
            tx.execute(
                "DELETE FROM dead_letters WHERE id <= (SELECT MAX(id) FROM dead_letters) - ?1",
                [MAX_DEAD_LETTERS],
            )?;
        }
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('last_success_at_ms', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [now.to_string()],
        )?;
        tx.execute(
            "DELETE FROM meta WHERE key IN ('last_error', 'last_error_at_ms', 'config_error', 'next_attempt_at_ms')",
            [],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Moves single rows to the dead-letter table without a server verdict (e.g. an event
    /// the server refuses as too large even alone).
    pub(crate) fn dead_letter(
        &mut self,
        event_id: &str,
        code: &str,
        message: &str,
    ) -> Result<(), SpoolError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO dead_letters (event_id, body, code, message, at_ms)
             SELECT event_id, body, ?2, ?3, ?4 FROM queue WHERE event_id = ?1",
            params![event_id, code, message, now_ms()],
        )?;
        tx.execute("DELETE FROM queue WHERE event_id = ?1", [event_id])?;
        tx.commit()?;
        Ok(())
    }

    /// Counts a failed delivery attempt on rows.
    pub(crate) fn bump_attempts(&mut self, event_ids: &[&str]) -> Result<(), SpoolError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut bump =
                tx.prepare_cached("UPDATE queue SET attempts = attempts + 1 WHERE event_id = ?1")?;
            for id in event_ids {
                bump.execute([id])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The local dead letters, newest first: (event_id, code, message, body).
    ///
    /// # Errors
    /// [`SpoolError::Query`] when the read fails.
    pub fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, SpoolError> {
        let mut stmt = self.conn.prepare(
            "SELECT event_id, code, message, body, at_ms FROM dead_letters ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            Ok(DeadLetter {
                event_id: r.get(0)?,
                code: r.get(1)?,
                message: r.get(2)?,
                body: r.get(3)?,
                at_ms: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let mut wal = self.path.as_os_str().to_owned();
        wal.push("-wal");
        let big = std::fs::metadata(&wal).is_ok_and(|m| m.len() > WAL_TRUNCATE_BYTES);
        if big {
            // Errors only mean someone else is busy; a later close retries.
            let _ = self
                .conn
                .busy_timeout(Duration::from_millis(CHECKPOINT_BUSY_MS));
            let _ = self
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        }
    }
}

/// An event the server rejected, kept locally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    /// The event's id.
    pub event_id: Option<String>,
    /// The server's error code.
    pub code: String,
    /// The server's message.
    pub message: String,
    /// The envelope JSON as queued.
    pub body: String,
    /// When it was dead-lettered, Unix ms.
    pub at_ms: i64,
}

/// [`open_conn`], retried while another process holds the file (SQLITE_BUSY/LOCKED), for up
/// to [`BUSY_TIMEOUT_MS`].
///
/// The busy handler does not cover every step of an open: switching a fresh file to WAL
/// and recovering the WAL index can answer BUSY at once while other hook processes are
/// doing the same, and a hook that gave up there would lose its event.
fn open_conn_waiting(path: &Path) -> Result<Connection, SpoolError> {
    let deadline = std::time::Instant::now() + Duration::from_millis(BUSY_TIMEOUT_MS);
    let mut pause = Duration::from_millis(1);
    loop {
        match open_conn(path) {
            Err(SpoolError::Open { source, .. })
                if is_busy(&source) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Opens the connection, sets the pragmas and brings the schema up to date.
fn open_conn(path: &Path) -> Result<Connection, SpoolError> {
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
    // the WAL when the last connection closes: two fsyncs per hook. Skip that; `Drop for
    // Spool` truncates the WAL once it passes WAL_TRUNCATE_BYTES instead.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
        .map_err(wrap)?;
    migrate(&conn).map_err(|e| match e {
        SpoolError::Query(source) => wrap(source),
        SpoolError::NewerSchema { found, .. } => SpoolError::NewerSchema {
            path: path.to_path_buf(),
            found,
        },
        other => other,
    })?;
    Ok(conn)
}

/// Creates the schema when `user_version` says it is missing.
///
/// `user_version` is a header field readable without parsing the schema, so the common
/// case (schema present) costs one read; creation happens in an IMMEDIATE transaction that
/// re-checks the version, so concurrent first opens create it exactly once.
fn migrate(conn: &Connection) -> Result<(), SpoolError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    if version > SCHEMA_VERSION {
        return Err(SpoolError::NewerSchema {
            path: PathBuf::new(),
            found: version,
        });
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| -> Result<(), SpoolError> {
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version == 0 {
            conn.execute_batch(SCHEMA_V1)?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT")?,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e);
        }
    }
    Ok(())
}

const SCHEMA_V1: &str = "
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

/// Renames a corrupt spool (and its WAL/SHM side files) to `<path>.corrupt-<unix ms>`.
fn move_aside(path: &Path) -> Result<PathBuf, SpoolError> {
    let suffix = format!("corrupt-{}", now_ms());
    let with = |ext: &str| {
        let mut s = path.as_os_str().to_owned();
        s.push(ext);
        PathBuf::from(s)
    };
    let aside = with(&format!(".{suffix}"));
    std::fs::rename(path, &aside).map_err(|source| SpoolError::MoveAside {
        path: path.to_path_buf(),
        source,
    })?;
    for side in ["-wal", "-shm"] {
        let from = with(side);
        if from.exists() {
            let _ = std::fs::rename(&from, with(&format!(".{suffix}{side}")));
        }
    }
    Ok(aside)
}

/// Inserts `events` in `tx` and, when `claim` is set, claims the delivery lease for a
/// background flusher in the same transaction (its token, when claimed).
fn insert_events_and_claim(
    tx: &rusqlite::Transaction<'_>,
    events: &[Event],
    options: SpoolOptions,
    claim: bool,
    lease_ttl_ms: i64,
) -> Result<(EnqueueOutcome, Option<String>), SpoolError> {
    let mut outcome = EnqueueOutcome::default();
    for event in events {
        let o = insert_event(tx, event, options)?;
        outcome.inserted += o.inserted;
        outcome.dropped += o.dropped;
    }
    let token = if claim {
        claim_for_background(tx, lease_ttl_ms)?
    } else {
        None
    };
    Ok((outcome, token))
}

/// Inserts one event inside the caller's transaction, making room first when needed.
fn insert_event(
    tx: &rusqlite::Transaction<'_>,
    event: &Event,
    options: SpoolOptions,
) -> Result<EnqueueOutcome, SpoolError> {
    let body = serde_json::to_string(event)?;
    let size = i64::try_from(body.len()).unwrap_or(i64::MAX);
    let max = i64::try_from(options.max_bytes).unwrap_or(i64::MAX);
    let event_type = event.event_type();
    let mut dropped = 0u64;

    let used: i64 = tx.query_row("SELECT queue_bytes FROM counters WHERE id = 1", [], |r| {
        r.get(0)
    })?;
    if used + size > max {
        let make_room = options.when_full == WhenFull::DropOldest && size <= max;
        if make_room {
            dropped += drop_oldest(tx, used + size - max)?;
        } else {
            count_drops(tx, event_type == EventType::Heartbeat, 1)?;
            return Ok(EnqueueOutcome {
                inserted: 0,
                dropped: 1,
            });
        }
    }
    let inserted = tx
        .prepare_cached(
            "INSERT INTO queue (event_id, event_type, body, size_bytes, enqueued_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (event_id) DO NOTHING",
        )?
        .execute(params![
            event.event_id().to_string(),
            event_type.as_str(),
            body,
            size,
            now_ms()
        ])?;
    Ok(EnqueueOutcome {
        inserted: u64::try_from(inserted).unwrap_or(0),
        dropped,
    })
}

/// Deletes the oldest rows until at least `need` bytes are freed: heartbeats first, then
/// any event. Returns how many rows were deleted (and counts them).
fn drop_oldest(tx: &rusqlite::Transaction<'_>, need: i64) -> Result<u64, SpoolError> {
    let mut freed = 0i64;
    let mut dropped = 0u64;
    for heartbeats_only in [true, false] {
        let sql = if heartbeats_only {
            "DELETE FROM queue WHERE seq = (SELECT seq FROM queue WHERE event_type = 'heartbeat'
             ORDER BY seq LIMIT 1) RETURNING size_bytes"
        } else {
            "DELETE FROM queue WHERE seq = (SELECT seq FROM queue ORDER BY seq LIMIT 1)
             RETURNING size_bytes, event_type = 'heartbeat'"
        };
        let mut stmt = tx.prepare_cached(sql)?;
        while freed < need {
            let row: Option<(i64, bool)> = stmt
                .query_row([], |r| {
                    Ok((r.get(0)?, if heartbeats_only { true } else { r.get(1)? }))
                })
                .optional()?;
            let Some((size, is_heartbeat)) = row else {
                break;
            };
            freed += size;
            dropped += 1;
            count_drops(tx, is_heartbeat, 1)?;
        }
    }
    Ok(dropped)
}

fn count_drops(tx: &rusqlite::Transaction<'_>, heartbeat: bool, n: i64) -> Result<(), SpoolError> {
    let sql = if heartbeat {
        "UPDATE counters SET dropped_heartbeats = dropped_heartbeats + ?1 WHERE id = 1"
    } else {
        "UPDATE counters SET dropped_events = dropped_events + ?1 WHERE id = 1"
    };
    tx.execute(sql, [n])?;
    Ok(())
}

/// Claims the lease for a background flusher about to be spawned, when no live lease is
/// held, the retry schedule allows it, and there is something to send.
fn claim_for_background(
    tx: &rusqlite::Transaction<'_>,
    ttl_ms: i64,
) -> Result<Option<String>, SpoolError> {
    let now = now_ms();
    let not_before: Option<i64> = tx
        .query_row(
            "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'next_attempt_at_ms'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if not_before.is_some_and(|t| t > now) {
        return Ok(None);
    }
    let token = uuid::Uuid::new_v4().to_string();
    let changed = tx.execute(
        "INSERT INTO lease (id, holder, pid, expires_at_ms) VALUES (1, ?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE
         SET holder = excluded.holder, pid = excluded.pid, expires_at_ms = excluded.expires_at_ms
         WHERE lease.expires_at_ms <= ?4",
        params![token, std::process::id(), now + ttl_ms, now],
    )?;
    Ok((changed == 1).then_some(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use shared_proto::{AgentId, Heartbeat, Payload, ToolCall};
    use uuid::Uuid;

    fn tool_event() -> Event {
        Event::new(
            Uuid::new_v4(),
            Utc::now(),
            AgentId::parse("agent_1").unwrap(),
            None,
            Payload::ToolCall(ToolCall {
                tool_name: "Bash".into(),
                ok: true,
                ..ToolCall::default()
            }),
        )
        .unwrap()
    }

    fn heartbeat_event() -> Event {
        Event::new(
            Uuid::new_v4(),
            Utc::now(),
            AgentId::parse("agent_1").unwrap(),
            None,
            Payload::Heartbeat(Heartbeat {
                host_load_1m: 0.5,
                ..Heartbeat::default()
            }),
        )
        .unwrap()
    }

    #[test]
    fn enqueue_is_idempotent_per_event_id_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path().join("s.db")).unwrap();
        let e = tool_event();
        assert_eq!(spool.enqueue(&e).unwrap().inserted, 1);
        assert_eq!(spool.enqueue(&e).unwrap().inserted, 0);
        let stats = spool.stats().unwrap();
        assert_eq!(stats.depth, 1);
        assert_eq!(stats.bytes, serde_json::to_string(&e).unwrap().len() as u64);
        assert!(stats.oldest_age_ms.is_some());
    }

    #[test]
    fn full_spool_drops_heartbeats_first_then_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let one = serde_json::to_string(&tool_event()).unwrap().len() as u64;
        let mut spool = Spool::open_with(
            dir.path().join("s.db"),
            SpoolOptions {
                max_bytes: one * 4 + one / 2,
                when_full: WhenFull::DropOldest,
            },
        )
        .unwrap();
        let first = tool_event();
        spool.enqueue(&first).unwrap();
        spool.enqueue(&heartbeat_event()).unwrap();
        spool.enqueue(&tool_event()).unwrap();
        spool.enqueue(&tool_event()).unwrap();
        // Full: the heartbeat goes first although the first tool call is older.
        let o = spool.enqueue(&tool_event()).unwrap();
        assert_eq!((o.inserted, o.dropped), (1, 1));
        let stats = spool.stats().unwrap();
        assert_eq!((stats.dropped, stats.dropped_heartbeats), (1, 1));
        let ids: Vec<String> = spool
            .peek_batch(10, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|r| r.event_id)
            .collect();
        assert_eq!(ids[0], first.event_id().to_string());
        // No heartbeat left: now the oldest event goes.
        spool.enqueue(&tool_event()).unwrap();
        let ids: Vec<String> = spool
            .peek_batch(10, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|r| r.event_id)
            .collect();
        assert!(!ids.contains(&first.event_id().to_string()));
        let stats = spool.stats().unwrap();
        assert_eq!((stats.dropped, stats.dropped_heartbeats), (2, 1));
        assert!(stats.bytes <= stats.max_bytes);
    }

    #[test]
    fn drop_newest_policy_keeps_queue() {
        let dir = tempfile::tempdir().unwrap();
        let one = serde_json::to_string(&tool_event()).unwrap().len() as u64;
        let mut spool = Spool::open_with(
            dir.path().join("s.db"),
            SpoolOptions {
                max_bytes: one + one / 2,
                when_full: WhenFull::DropNewest,
            },
        )
        .unwrap();
        let first = tool_event();
        spool.enqueue(&first).unwrap();
        let o = spool.enqueue(&tool_event()).unwrap();
        assert_eq!((o.inserted, o.dropped), (0, 1));
        let rows = spool.peek_batch(10, usize::MAX).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].event_id, first.event_id().to_string());
    }

    #[test]
    fn lease_is_exclusive_until_released_or_expired() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Spool::open(dir.path().join("s.db")).unwrap();
        let mut b = Spool::open(dir.path().join("s.db")).unwrap();
        assert!(a.acquire_lease("a", 30_000).unwrap());
        assert!(!b.acquire_lease("b", 30_000).unwrap());
        assert!(b.lease_live().unwrap());
        assert!(a.renew_lease("a", 30_000).unwrap());
        assert!(!b.renew_lease("b", 30_000).unwrap());
        a.release_lease("a").unwrap();
        assert!(b.acquire_lease("b", -1).unwrap()); // already expired
        assert!(a.acquire_lease("a", 30_000).unwrap());
    }

    #[test]
    fn corrupt_file_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
        let mut spool = Spool::open(&path).unwrap();
        assert!(spool.recovered_from().is_some());
        spool.enqueue(&tool_event()).unwrap();
        assert_eq!(spool.stats().unwrap().depth, 1);
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("s.db.corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1);
    }
}
