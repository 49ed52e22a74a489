//! The queue of envelopes waiting for delivery and what becomes of them: enqueue (with the
//! size bound and its drops, in the `counters` row), the flusher's reads, and settling a
//! server answer (delete, dead-letter, count an attempt). Owns the `queue`, `counters` and
//! `dead_letters` tables.

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde::Serialize;
use shared_proto::{Event, EventType};

use super::{EnqueueOutcome, Spool, SpoolError, SpoolOptions, WhenFull, lease, meta, now_ms};

/// Most dead letters kept locally; older ones are deleted first.
const MAX_DEAD_LETTERS: i64 = 10_000;

/// One queued event, as read by the flusher.
#[derive(Debug, Clone)]
pub(crate) struct QueuedRow {
    pub(crate) event_id: String,
    pub(crate) body: String,
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

/// The `counters` row.
pub(super) struct Counters {
    /// Queued rows.
    pub(super) rows: i64,
    /// Sum of their envelope sizes, in bytes.
    pub(super) bytes: i64,
    /// `heartbeat` events dropped for lack of room.
    pub(super) dropped_heartbeats: i64,
    /// Other events dropped for lack of room.
    pub(super) dropped_events: i64,
}

impl Spool {
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
        Ok(self.enqueue_and_claim(events, false, 0)?.0)
    }

    /// Queues events and, in the same transaction, claims the delivery lease for a
    /// background flusher when `claim` is set, nobody holds a live one and no retry back-off
    /// is pending.
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
        for id in delivered {
            delete_row(&tx, id)?;
        }
        for (id, code, message) in rejected {
            move_to_dead_letters(&tx, id, code, message, now)?;
        }
        for id in retry {
            bump_attempts(&tx, id)?;
        }
        if !rejected.is_empty() {
            tx.execute(
                "DELETE FROM dead_letters WHERE id <= (SELECT MAX(id) FROM dead_letters) - ?1",
                [MAX_DEAD_LETTERS],
            )?;
        }
        meta::note_success(&tx, now)?;
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
        move_to_dead_letters(&tx, event_id, code, message, now_ms())?;
        tx.commit()?;
        Ok(())
    }

    /// Counts a failed delivery attempt on rows.
    pub(crate) fn bump_attempts(&mut self, event_ids: &[&str]) -> Result<(), SpoolError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for id in event_ids {
            bump_attempts(&tx, id)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The local dead letters, newest first: at most `limit`.
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

/// The `counters` row.
pub(super) fn counters(conn: &Connection) -> Result<Counters, rusqlite::Error> {
    conn.prepare_cached(
        "SELECT queue_rows, queue_bytes, dropped_heartbeats, dropped_events FROM counters WHERE id = 1",
    )?
    .query_row([], |r| {
        Ok(Counters {
            rows: r.get(0)?,
            bytes: r.get(1)?,
            dropped_heartbeats: r.get(2)?,
            dropped_events: r.get(3)?,
        })
    })
}

/// When the oldest queued event was enqueued, Unix ms; `None` when the queue is empty.
pub(super) fn oldest_enqueued_at_ms(conn: &Connection) -> Result<Option<i64>, rusqlite::Error> {
    conn.query_row(
        "SELECT enqueued_at_ms FROM queue ORDER BY seq LIMIT 1",
        [],
        |r| r.get(0),
    )
    .optional()
}

/// Rows in the dead-letter table.
pub(super) fn dead_letter_count(conn: &Connection) -> Result<i64, rusqlite::Error> {
    conn.query_row("SELECT COUNT(*) FROM dead_letters", [], |r| r.get(0))
}

fn delete_row(tx: &Transaction<'_>, event_id: &str) -> Result<(), rusqlite::Error> {
    tx.prepare_cached("DELETE FROM queue WHERE event_id = ?1")?
        .execute([event_id])?;
    Ok(())
}

/// Copies a queued row to `dead_letters` with the server's `code` and `message`, then
/// deletes it from the queue.
fn move_to_dead_letters(
    tx: &Transaction<'_>,
    event_id: &str,
    code: &str,
    message: &str,
    now: i64,
) -> Result<(), rusqlite::Error> {
    tx.prepare_cached(
        "INSERT INTO dead_letters (event_id, body, code, message, at_ms)
         SELECT event_id, body, ?2, ?3, ?4 FROM queue WHERE event_id = ?1",
    )?
    .execute(params![event_id, code, message, now])?;
    delete_row(tx, event_id)
}

fn bump_attempts(tx: &Transaction<'_>, event_id: &str) -> Result<(), rusqlite::Error> {
    tx.prepare_cached("UPDATE queue SET attempts = attempts + 1 WHERE event_id = ?1")?
        .execute([event_id])?;
    Ok(())
}

/// Inserts `events` in `tx` and, when `claim` is set, claims the delivery lease for a
/// background flusher in the same transaction (its token, when claimed).
pub(super) fn insert_events_and_claim(
    tx: &Transaction<'_>,
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
        lease::claim_for_background(tx, lease_ttl_ms)?
    } else {
        None
    };
    Ok((outcome, token))
}

/// Inserts one event inside the caller's transaction, making room first when needed.
fn insert_event(
    tx: &Transaction<'_>,
    event: &Event,
    options: SpoolOptions,
) -> Result<EnqueueOutcome, SpoolError> {
    let body = serde_json::to_string(event)?;
    let size = i64::try_from(body.len()).unwrap_or(i64::MAX);
    let max = i64::try_from(options.max_bytes).unwrap_or(i64::MAX);
    let event_type = event.event_type();
    let mut dropped = 0u64;

    let used = counters(tx)?.bytes;
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
fn drop_oldest(tx: &Transaction<'_>, need: i64) -> Result<u64, SpoolError> {
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

fn count_drops(tx: &Transaction<'_>, heartbeat: bool, n: i64) -> Result<(), SpoolError> {
    let sql = if heartbeat {
        "UPDATE counters SET dropped_heartbeats = dropped_heartbeats + ?1 WHERE id = 1"
    } else {
        "UPDATE counters SET dropped_events = dropped_events + ?1 WHERE id = 1"
    };
    tx.execute(sql, [n])?;
    Ok(())
}

/// Counts `n` events lost without passing through the queue's bound (a damaged WAL) as
/// dropped events.
pub(super) fn count_lost(tx: &Transaction<'_>, n: i64) -> Result<(), SpoolError> {
    count_drops(tx, false, n)
}
