//! Dead-letter retention: a task that deletes dead letters older than
//! [`Limits::dead_letter_retention`], at start-up and every
//! [`Limits::dead_letter_prune_every`], so that a flood of rejected elements cannot fill the
//! disk for good (each one is also capped in size: [`Limits::dead_letter_raw_bytes`]).
//!
//! [`Limits::dead_letter_retention`]: crate::config::Limits::dead_letter_retention
//! [`Limits::dead_letter_prune_every`]: crate::config::Limits::dead_letter_prune_every
//! [`Limits::dead_letter_raw_bytes`]: crate::config::Limits::dead_letter_raw_bytes

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use tokio::task::JoinHandle;

use crate::db::Store;
use crate::task;

/// The pruning task; aborted when dropped (the server's state goes away or shuts down).
#[derive(Debug)]
pub(crate) struct Pruner(JoinHandle<()>);

impl Pruner {
    /// Starts deleting dead letters older than `retention` from `store`, now and every
    /// `every`.
    pub(crate) fn start(store: Store, retention: Duration, every: Duration) -> Self {
        let retention = TimeDelta::from_std(retention).unwrap_or(TimeDelta::MAX);
        let every = every.max(Duration::from_millis(10));
        Pruner(task::spawn("dead-letter-retention", async move {
            loop {
                if let Some(cutoff) = Utc::now().checked_sub_signed(retention) {
                    match store.prune_dead_letters(cutoff).await {
                        Ok(0) => {}
                        Ok(n) => {
                            tracing::info!(deleted = n, %cutoff, "dead letters past their retention deleted")
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "deleting old dead letters failed; trying again later")
                        }
                    }
                }
                tokio::time::sleep(every).await;
            }
        }))
    }

    /// Stops the task (a prune in progress is rolled back).
    pub(crate) fn stop(&self) {
        self.0.abort();
    }
}

impl Drop for Pruner {
    fn drop(&mut self) {
        self.stop();
    }
}
