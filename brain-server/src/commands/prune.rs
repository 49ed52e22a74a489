//! `brain-server prune` and the daily retention job of `serve` (`BRAIN_RETENTION_DAYS`): delete
//! raw events older than N days through [`crate::Store`]'s `prune_events` (batched, one
//! prune per database at a time; rollups and run summaries kept).

use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, TimeDelta, Utc};

use super::{UserError, actor, out, time_text};
use crate::Store;
use crate::config::DbConfig;
use crate::task;

/// Pause between two batches of deletes, so that ingest gets the database in between.
pub(super) const PAUSE: Duration = Duration::from_millis(20);

/// How often `serve` prunes.
const EVERY: Duration = Duration::from_secs(24 * 3600);

/// The cutoff of a retention of `days` days at `now`: 00:00 UTC of the day `days` days ago,
/// so that a pruned day is pruned whole (day rollups before it are all past, after it all
/// retained).
pub(super) fn cutoff(now: DateTime<Utc>, days: u32) -> DateTime<Utc> {
    let day = (now - TimeDelta::days(i64::from(days))).date_naive();
    day.and_hms_opt(0, 0, 0).map_or(now, |t| t.and_utc())
}

/// Prunes what is older than `days` days and prints the outcome.
///
/// # Errors
/// [`UserError`] when no retention is given (or 0: keep forever); any other error when the
/// database fails.
pub(super) async fn run(db: &DbConfig, days: Option<u32>) -> anyhow::Result<()> {
    let days = days.filter(|d| *d > 0).ok_or_else(|| {
        UserError(
            "nothing to prune: give --older-than-days N (or BRAIN_RETENTION_DAYS, 0 keeps forever)"
                .to_owned(),
        )
    })?;
    let store = crate::open_store(db).await?;
    let cutoff = cutoff(Utc::now(), days);
    let result = store.prune_events(cutoff, &actor(), PAUSE).await;
    store.close().await;
    match result.context("pruning old events")? {
        Some(r) => out(&format!(
            "pruned: events before {}: {} events, {} dead letters deleted\n",
            time_text(r.cutoff),
            r.events_deleted,
            r.dead_letters_deleted
        )),
        None => out("skipped: another prune is running on this database\n"),
    }
}

/// Starts the daily prune of `serve` (at start-up, then every 24 h) when `days` > 0; the
/// task ends with the returned handle's abort.
pub(super) fn start_daily(store: Store, days: u32) -> Option<tokio::task::JoinHandle<()>> {
    (days > 0).then(|| {
        task::spawn("event-retention", async move {
            loop {
                let cutoff = cutoff(Utc::now(), days);
                match store.prune_events(cutoff, "server:retention", PAUSE).await {
                    Ok(Some(r)) => tracing::info!(
                        cutoff = %r.cutoff,
                        events = r.events_deleted,
                        dead_letters = r.dead_letters_deleted,
                        "pruned events past their retention"
                    ),
                    Ok(None) => tracing::info!("another instance is pruning; skipped"),
                    Err(e) => tracing::warn!(error = %e, "pruning old events failed; trying again tomorrow"),
                }
                tokio::time::sleep(EVERY).await;
            }
        })
    })
}
