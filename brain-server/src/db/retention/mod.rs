//! Retention of raw events (SPEC §5 `prune`, `BRAIN_RETENTION_DAYS`): deletes the events with
//! `ts` before a cutoff in bounded batches (one short transaction each, a pause between, so the
//! ingest writer is never held long), and the dead letters received before it; rollups and
//! run summaries are kept. One prune at a time per database: a Postgres session advisory lock
//! ([`PRUNE_LOCK_KEY`]; another instance's prune is skipped, not queued), on SQLite an
//! exclusive lock on the file `<database>.prune.lock`.
//!
//! The cutoff is recorded first in `retention_state.events_pruned_before` (it only moves
//! forward): the horizon before which raw events may be gone, so that `rollups verify` covers
//! only the buckets at or after it (docs/rollups.md, "Retention").

pub(super) mod postgres;
pub(super) mod sqlite;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use super::{DbError, Store};

/// Events deleted per transaction.
pub(crate) const PRUNE_EVENTS_BATCH: i64 = 10_000;

/// The Postgres advisory lock key of the prune (`'brainprn'` as a big-endian i64).
const PRUNE_LOCK_KEY: i64 = 0x6272_6169_6e70_726e;

/// What one prune did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// Events with `ts` before this were deleted.
    pub cutoff: DateTime<Utc>,
    /// Events deleted.
    pub events_deleted: u64,
    /// Dead letters deleted (received before the cutoff).
    pub dead_letters_deleted: u64,
}

/// The lock one prune holds (released when dropped).
#[derive(Debug)]
pub(super) enum PruneLock {
    /// The connection holding the Postgres session lock (closed, not pooled, when dropped
    /// without unlocking: the lock goes with it).
    Postgres(sqlx::pool::PoolConnection<sqlx::Postgres>),
    /// The locked file (none for an in-memory database).
    Sqlite(
        #[expect(
            dead_code,
            reason = "held, not read: the lock lasts while the file is open"
        )]
        Option<std::fs::File>,
    ),
}

impl Store {
    /// Deletes the events with `ts` before `cutoff` in batches of 10,000 rows
    /// (sleeping `pause` between them) and the dead letters received before it, after
    /// recording the horizon; writes the `prune` audit entry (cutoff and counts) as `actor`.
    /// `None` when another prune holds the lock (nothing was done).
    ///
    /// # Errors
    /// [`DbError::Query`] on a database error (batches deleted before it stay deleted; the
    /// horizon is already recorded).
    pub async fn prune_events(
        &self,
        cutoff: DateTime<Utc>,
        actor: &str,
        pause: Duration,
    ) -> Result<Option<PruneReport>, DbError> {
        let lock = match self {
            Store::Postgres(pool) => postgres::try_lock(pool).await?,
            Store::Sqlite(pool) => sqlite::try_lock(pool).await?,
        };
        let Some(lock) = lock else {
            return Ok(None);
        };
        dispatch!(self, set_horizon(cutoff))?;
        let mut events_deleted = 0;
        loop {
            let n = dispatch!(self, prune_events_batch(cutoff, PRUNE_EVENTS_BATCH))?;
            events_deleted += n;
            if n < PRUNE_EVENTS_BATCH.unsigned_abs() {
                break;
            }
            tokio::time::sleep(pause).await;
        }
        let dead_letters_deleted = self.prune_dead_letters(cutoff).await?;
        let report = PruneReport {
            cutoff,
            events_deleted,
            dead_letters_deleted,
        };
        self.record_audit(
            actor,
            "prune",
            &json!({
                "cutoff": cutoff,
                "events_deleted": events_deleted,
                "dead_letters_deleted": dead_letters_deleted,
            }),
        )
        .await?;
        if let PruneLock::Postgres(conn) = lock {
            postgres::unlock(conn).await;
        }
        Ok(Some(report))
    }

    /// The retention horizon: raw events with `ts` before it may have been pruned (`None`:
    /// never pruned).
    ///
    /// # Errors
    /// [`DbError::Query`] on a database error.
    pub(crate) async fn retention_horizon(&self) -> Result<Option<DateTime<Utc>>, DbError> {
        dispatch!(self, horizon())
    }
}
