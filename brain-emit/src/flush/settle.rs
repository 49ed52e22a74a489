//! Applying a server's per-event verdicts (`200`/`422` with results) to the queued rows.

use std::collections::HashMap;

use shared_proto::{BatchResponse, EventStatus};

use super::FlushReport;
use crate::spool::{QueuedRow, Spool, SpoolError};

/// Deletes delivered rows, dead-letters rejected ones; rows without a result stay queued.
/// Returns how many rows were settled (deleted or dead-lettered).
pub(super) fn apply_results(
    spool: &mut Spool,
    rows: &[QueuedRow],
    batch: &BatchResponse,
    report: &mut FlushReport,
) -> Result<usize, SpoolError> {
    let positional = batch.results.len() == rows.len()
        && rows
            .iter()
            .zip(&batch.results)
            .all(|(row, r)| r.event_id.as_deref().is_none_or(|id| id == row.event_id));
    let by_id: HashMap<&str, _> = batch
        .results
        .iter()
        .filter_map(|r| r.event_id.as_deref().map(|id| (id, r)))
        .collect();
    let mut delivered = Vec::new();
    let mut rejected = Vec::new();
    let mut retry = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let result = if positional {
            batch.results.get(i)
        } else {
            by_id.get(row.event_id.as_str()).copied()
        };
        match result.map(|r| (r.status, r.error.as_ref())) {
            Some((EventStatus::Accepted, _)) => {
                report.accepted += 1;
                delivered.push(row.event_id.as_str());
            }
            Some((EventStatus::Duplicate, _)) => {
                report.duplicate += 1;
                delivered.push(row.event_id.as_str());
            }
            Some((EventStatus::Rejected, err)) => {
                report.rejected += 1;
                let (code, message) = err.map_or_else(
                    || ("rejected".to_owned(), String::new()),
                    |e| (e.code.clone(), e.message.clone()),
                );
                rejected.push((row.event_id.as_str(), code, message));
            }
            None => retry.push(row.event_id.as_str()),
        }
    }
    spool.settle(&delivered, &rejected, &retry)?;
    Ok(delivered.len() + rejected.len())
}
