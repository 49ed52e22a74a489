//! Salvage: copying what is still readable out of a corrupt spool (already moved aside) into
//! the fresh one that replaces it, so a damaged page costs the rows on that page, not the
//! whole queue.
//!
//! SQLite's `.recover` is a shell feature, not part of the library, so this reads the moved
//! file row by row and skips what fails:
//!
//! - `queue`: a scan oldest first until it fails, a scan newest first until it fails, then
//!   a lookup by `seq` of every number in between (bounded by [`MAX_PROBES`]) and of every
//!   `seq` the `event_id` index still lists. A row is kept only if its envelope is a JSON
//!   object whose `event_id` is the row's: damage that SQLite does not notice must not send
//!   garbage.
//! - `ledgers` (keyed by session, no row numbers to probe): a scan from each end.
//! - `dead_letters`: a scan oldest first; `counters`: the drop counts.
//!
//! How many queued rows were lost is the old `counters` row count minus what was salvaged,
//! when that row is readable; unknown otherwise.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use super::SpoolError;

/// Most `seq` numbers looked up one by one between the two scans (a few µs each).
const MAX_PROBES: i64 = 200_000;

/// What a salvage recovered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Salvaged {
    /// Queued events copied into the fresh spool.
    pub(super) queued: u64,
    /// Queued events that could not be read; `None` when the old row count is unreadable.
    pub(super) lost: Option<u64>,
    /// Session ledgers copied.
    pub(super) ledgers: u64,
    /// Dead letters copied.
    pub(super) dead_letters: u64,
}

/// One queued row as stored.
struct QueueRow {
    event_id: String,
    event_type: String,
    body: String,
    enqueued_at_ms: i64,
    attempts: i64,
}

/// Copies what is readable in the corrupt spool at `aside` into `fresh` (one transaction).
///
/// # Errors
/// [`SpoolError::Query`] when writing into `fresh` fails; nothing readable in `aside` is not
/// an error (everything is then counted as lost).
pub(super) fn salvage(aside: &Path, fresh: &mut Connection) -> Result<Salvaged, SpoolError> {
    let Some(old) = open_damaged(aside) else {
        return Ok(Salvaged::default());
    };
    let expected = old
        .query_row("SELECT queue_rows FROM counters WHERE id = 1", [], |r| {
            r.get::<_, i64>(0)
        })
        .ok()
        .and_then(|n| u64::try_from(n).ok());
    let drops: (i64, i64) = old
        .query_row(
            "SELECT dropped_heartbeats, dropped_events FROM counters WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap_or((0, 0));
    let rows = queue_rows(&old);
    let ledgers = ledger_rows(&old);
    let dead_letters = dead_letter_rows(&old);
    drop(old);

    let tx = fresh.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut queued = 0u64;
    {
        let mut insert = tx.prepare(
            "INSERT INTO queue (event_id, event_type, body, size_bytes, enqueued_at_ms, attempts)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (event_id) DO NOTHING",
        )?;
        for r in rows.values() {
            let size = i64::try_from(r.body.len()).unwrap_or(i64::MAX);
            queued += u64::try_from(insert.execute(params![
                r.event_id,
                r.event_type,
                r.body,
                size,
                r.enqueued_at_ms,
                r.attempts
            ])?)
            .unwrap_or(0);
        }
        let mut insert = tx.prepare(
            "INSERT INTO ledgers (session_key, state, version, updated_at_ms)
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (session_key) DO NOTHING",
        )?;
        for (key, (state, version, at)) in &ledgers {
            insert.execute(params![key, state, version, at])?;
        }
        let mut insert = tx.prepare(
            "INSERT INTO dead_letters (event_id, body, code, message, at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for d in &dead_letters {
            insert.execute(params![d.0, d.1, d.2, d.3, d.4])?;
        }
    }
    let lost = expected.map(|n| n.saturating_sub(queued));
    // What the old spool dropped, and what this one lost, are drops the heartbeat reports.
    tx.execute(
        "UPDATE counters SET dropped_heartbeats = dropped_heartbeats + ?1,
         dropped_events = dropped_events + ?2 WHERE id = 1",
        params![
            drops.0,
            drops.1 + i64::try_from(lost.unwrap_or(0)).unwrap_or(0)
        ],
    )?;
    tx.commit()?;
    Ok(Salvaged {
        queued,
        lost,
        ledgers: u64::try_from(ledgers.len()).unwrap_or(0),
        dead_letters: u64::try_from(dead_letters.len()).unwrap_or(0),
    })
}

/// Opens the moved-aside file for reading what is left; `None` when even that fails.
fn open_damaged(path: &Path) -> Option<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ok()?;
    let _ = conn.busy_timeout(Duration::from_millis(1_000));
    // Check each page's cells as it is read: more damage is reported as an error instead of
    // being returned as data.
    let _ = conn.pragma_update(None, "cell_size_check", "ON");
    Some(conn)
}

/// The readable, plausible queue rows of `old`, by `seq`.
fn queue_rows(old: &Connection) -> BTreeMap<i64, QueueRow> {
    const COLUMNS: &str = "seq, event_id, event_type, body, enqueued_at_ms, attempts";
    let mut rows = BTreeMap::new();
    let keep = |seq: i64, row: QueueRow, rows: &mut BTreeMap<i64, QueueRow>| {
        if plausible(&row) {
            rows.insert(seq, row);
        }
    };
    let read = |r: &rusqlite::Row<'_>| -> rusqlite::Result<(i64, QueueRow)> {
        Ok((
            r.get(0)?,
            QueueRow {
                event_id: r.get(1)?,
                event_type: r.get(2)?,
                body: r.get(3)?,
                enqueued_at_ms: r.get(4)?,
                attempts: r.get(5)?,
            },
        ))
    };
    // From each end until the first failure; the highest and lowest numbers reached bound
    // the probing in between.
    let mut forward_end = 0i64;
    let mut backward_end: Option<i64> = None;
    for (order, forward) in [("ASC", true), ("DESC", false)] {
        let sql = format!("SELECT {COLUMNS} FROM queue ORDER BY seq {order}");
        let Ok(mut stmt) = old.prepare(&sql) else {
            continue;
        };
        let Ok(mut it) = stmt.query([]) else { continue };
        while let Ok(Some(r)) = it.next() {
            let Ok((seq, row)) = read(r) else { break };
            if forward {
                forward_end = seq;
            } else if backward_end.is_none_or(|b| seq < b) {
                backward_end = Some(seq);
            }
            keep(seq, row, &mut rows);
        }
    }
    let listed: Vec<i64> = indexed_seqs(old);
    let highest = listed
        .iter()
        .copied()
        .chain(backward_end)
        .max()
        .unwrap_or(forward_end);
    let probe_end = backward_end
        .unwrap_or(highest.max(forward_end + MAX_PROBES))
        .min(forward_end.saturating_add(MAX_PROBES));
    let Ok(mut one) = old.prepare(&format!("SELECT {COLUMNS} FROM queue WHERE seq = ?1")) else {
        return rows;
    };
    let wanted = (forward_end + 1..probe_end).chain(listed);
    for seq in wanted {
        if rows.contains_key(&seq) {
            continue;
        }
        if let Ok(Some((seq, row))) = one.query_row([seq], read).optional() {
            keep(seq, row, &mut rows);
        }
    }
    rows
}

/// The `seq` numbers the `event_id` index lists (a separate b-tree, often intact when the
/// table's pages are not), until it fails.
fn indexed_seqs(old: &Connection) -> Vec<i64> {
    let mut out = Vec::new();
    let Ok(mut stmt) =
        old.prepare("SELECT seq FROM queue INDEXED BY sqlite_autoindex_queue_1 ORDER BY event_id")
    else {
        return out;
    };
    let Ok(mut it) = stmt.query([]) else {
        return out;
    };
    while let Ok(Some(r)) = it.next() {
        match r.get(0) {
            Ok(seq) => out.push(seq),
            Err(_) => break,
        }
    }
    out
}

/// Whether a row read from a damaged file looks like what the spool wrote: its envelope is
/// a JSON object naming the row's `event_id`.
fn plausible(row: &QueueRow) -> bool {
    serde_json::from_str::<serde_json::Value>(&row.body)
        .is_ok_and(|v| v.get("event_id").and_then(|id| id.as_str()) == Some(&row.event_id))
}

/// The readable ledgers of `old` whose state is JSON, by session key: a scan from each end.
fn ledger_rows(old: &Connection) -> BTreeMap<String, (String, i64, i64)> {
    let mut out = BTreeMap::new();
    for order in ["ASC", "DESC"] {
        let sql = format!(
            "SELECT session_key, state, version, updated_at_ms FROM ledgers ORDER BY session_key {order}"
        );
        let Ok(mut stmt) = old.prepare(&sql) else {
            continue;
        };
        let Ok(mut it) = stmt.query([]) else { continue };
        while let Ok(Some(r)) = it.next() {
            let row = (|| -> rusqlite::Result<(String, String, i64, i64)> {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })();
            let Ok((key, state, version, at)) = row else {
                break;
            };
            if serde_json::from_str::<serde_json::Value>(&state).is_ok() {
                out.insert(key, (state, version, at));
            }
        }
    }
    out
}

/// A dead letter as stored: event id, envelope, code, message, time.
type DeadLetterRow = (Option<String>, String, String, String, i64);

/// The readable dead letters of `old`, oldest first, until the first failure.
fn dead_letter_rows(old: &Connection) -> Vec<DeadLetterRow> {
    let mut out = Vec::new();
    let Ok(mut stmt) =
        old.prepare("SELECT event_id, body, code, message, at_ms FROM dead_letters ORDER BY id")
    else {
        return out;
    };
    let Ok(mut it) = stmt.query([]) else {
        return out;
    };
    while let Ok(Some(r)) = it.next() {
        let row = (|| -> rusqlite::Result<DeadLetterRow> {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })();
        match row {
            Ok(row) => out.push(row),
            Err(_) => break,
        }
    }
    out
}
