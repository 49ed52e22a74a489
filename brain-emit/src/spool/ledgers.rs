//! The `ledgers` table: one serialized [`crate::usage::SessionLedger`] per Claude session,
//! saved together with the events computed from it (optimistic concurrency on a version
//! number), and pruned by flushes so the table stays small.

use rusqlite::{OptionalExtension, TransactionBehavior, params};
use shared_proto::Event;

use super::queue::insert_events_and_claim;
use super::{EnqueueOutcome, MetaKey, Spool, SpoolError, meta, now_ms};

/// A session ledger not updated for this long is compacted to a tombstone, in ms (30 days).
const LEDGER_IDLE_MS: i64 = 30 * 24 * 3600 * 1000;

/// A tombstone not touched for this long is deleted, in ms (365 days).
const LEDGER_TOMBSTONE_TTL_MS: i64 = 365 * 24 * 3600 * 1000;

/// How often a flush prunes ledgers, at most, in ms.
const LEDGER_PRUNE_EVERY_MS: i64 = 3600 * 1000;

/// A ledger as stored, with the version used for optimistic concurrency.
#[derive(Debug, Clone)]
pub(crate) struct StoredLedger {
    pub(crate) state: String,
    pub(crate) version: i64,
}

impl Spool {
    /// The ledger stored for `key` (a session id), if any.
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
    /// Ledger bytes are not counted toward [`super::SpoolOptions::max_bytes`] (that bound
    /// covers the queue, kept exact by triggers); pruning is what keeps this table small:
    /// live ledgers of the last 30 days, plus ~50 bytes per older session.
    pub(crate) fn prune_ledgers(&mut self) -> Result<(u64, u64), SpoolError> {
        let now = now_ms();
        let last = self.meta_i64(MetaKey::LedgersPrunedAtMs)?;
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
        meta::put(&tx, MetaKey::LedgersPrunedAtMs, &now.to_string())?;
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
}
