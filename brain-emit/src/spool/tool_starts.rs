//! The `tool_starts` table: when each tool call started (from PreToolUse), kept until its
//! PostToolUse takes it to compute the call's duration, or for a day at most.

use rusqlite::{OptionalExtension, TransactionBehavior, params};
use shared_proto::Event;

use super::queue::insert_events_and_claim;
use super::{EnqueueOutcome, Spool, SpoolError};

/// `tool_starts` rows older than this are forgotten (their PostToolUse never came), in ms.
const TOOL_START_TTL_MS: i64 = 24 * 3600 * 1000;

impl Spool {
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

    /// Queues a tool-call event and, in the same transaction, removes the start time
    /// recorded for `tool_use_id` and hands it to `build`, which makes the event (or
    /// nothing). Claims the lease as [`Spool::enqueue_and_claim`] does.
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
        let events: Vec<Event> = build(started).into_iter().collect();
        let (outcome, token) = insert_events_and_claim(&tx, &events, options, claim, lease_ttl_ms)?;
        tx.commit()?;
        Ok((outcome, token))
    }
}
