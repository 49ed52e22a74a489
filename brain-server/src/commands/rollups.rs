//! `brain-server rollups verify` and `rollups rebuild`: prove that the rollup tables equal a
//! full scan of `events` (docs/rollups.md), and repair them when they do not.

use anyhow::Context as _;

use super::{UserError, out};
use crate::config::DbConfig;

/// Recomputes every rollup from `events` and prints each difference with the stored rollups
/// on stdout, one line each (table, key, column, stored, expected); with none, prints a
/// one-line summary.
///
/// # Errors
/// [`UserError`] (exit 1) when there is any difference; any other error for failures.
pub(super) async fn verify(db: &DbConfig) -> anyhow::Result<()> {
    let store = crate::open_store(db).await?;
    let result = store.verify_rollups().await;
    store.close().await;
    let v = result.context("verifying the rollups")?;
    let scope = v.horizon.map_or_else(String::new, |h| {
        format!(
            " (buckets from {} on: raw events before it were pruned)",
            super::time_text(h)
        )
    });
    if v.differences.is_empty() {
        return out(&format!(
            "rollups verified: {} events, {} rollup rows{scope}, no difference\n",
            v.events, v.rows
        ));
    }
    let mut text = String::new();
    for d in &v.differences {
        text.push_str(&format!("{d}\n"));
    }
    out(&text)?;
    Err(UserError(format!(
        "{} differences between the rollups and {} events (see stdout); `brain-server rollups rebuild` recomputes them",
        v.differences.len(),
        v.events
    ))
    .into())
}

/// Replaces every rollup table with the recomputation from `events`, in one transaction,
/// and prints what it wrote. Refused after a prune (the older rollups would be lost).
///
/// # Errors
/// [`UserError`] after a prune; any other error when the database cannot be read or
/// written (nothing changed then).
pub(super) async fn rebuild(db: &DbConfig) -> anyhow::Result<()> {
    let store = crate::open_store(db).await?;
    let horizon = store.retention_horizon().await;
    if let Some(h) = horizon.context("reading the retention horizon")? {
        store.close().await;
        return Err(UserError(format!(
            "raw events before {} were pruned: a rebuild from events would drop the older \
             rollups, the only record left of them; not done (a rebuild limited to the \
             retained range is not implemented yet)",
            super::time_text(h)
        ))
        .into());
    }
    let result = store.rebuild_rollups().await;
    store.close().await;
    let r = result.context("rebuilding the rollups")?;
    out(&format!(
        "rollups rebuilt: {} events, {} rollup rows\n",
        r.events, r.rows
    ))
}
