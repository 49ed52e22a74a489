//! Delivery: reads the spool oldest first and posts gzip'd batches to `POST /v1/events`.
//!
//! One flusher at a time per spool, by the spool's lease (it expires
//! [`LEASE_TTL_MS`] after the last renewal, and at once when its holder's process is gone,
//! so a dead holder never wedges delivery). The
//! delivery HTTP client is built here (the only other one is `doctor`'s probe of
//! `GET /v1/whoami`): hook invocations never touch reqwest.
//!
//! What each answer does to the rows:
//!
//! | answer | rows |
//! | --- | --- |
//! | 200 (or 422) with results | accepted and duplicate deleted, rejected moved to `dead_letters` |
//! | 413 with Brain's `body_too_large` / `too_many_events`, or 400 with Brain's `malformed_json` / `not_an_envelope` | batch split in halves and resent; a single event refused alone is dead-lettered (not for `too_many_events`) |
//! | network error, 408, 429, 5xx | kept; back off (exponential, jitter, `Retry-After`) |
//! | 401 / 403 / any other 400 or 413 / other 4xx | kept; a configuration error is recorded for `status` |
//!
//! A 400 or 413 is only taken as a verdict on the events when its body is Brain's error
//! envelope (`{"error":{"code":…}}`) with one of those codes: a misconfigured URL (plain HTTP
//! to a TLS port) or a proxy with a smaller body limit also answers 400 or 413, and treating
//! that as "these events are bad" would split the batch down and discard the whole spool.
//!
//! Where each part lives: this module holds the entry point ([`flush`]), the lease and
//! retry-schedule checks before sending, and the outcome types; `retry` the drain loop with
//! its back-off and lease hand-offs; `http` one request and its answer; `settle` the
//! per-event verdicts applied to the rows.

mod http;
mod retry;
mod settle;

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::Settings;
use crate::spool::{MaybeCorrupt, MetaKey, Spool, SpoolError, now_ms};
use http::Sender;

pub use crate::spool::LEASE_TTL_MS;

/// How a flush behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushMode {
    /// The detached flusher a hook starts: respects the retry schedule, backs off a few
    /// times releasing the lease while it sleeps, then gives up.
    Background,
    /// A flush someone asked for (`brain-emit flush`, the heartbeat timer): like
    /// [`FlushMode::Background`] but ignores the retry schedule left by earlier failures.
    Foreground,
    /// `flush --wait`: waits for the lease, never sleeps on back-off, stops at the first
    /// failure; success means the spool is empty.
    Wait,
}

/// How a flush ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "reason", rename_all = "snake_case")]
pub enum FlushOutcome {
    /// The spool is empty.
    Drained,
    /// No URL or no API key is configured; nothing was sent.
    NotConfigured,
    /// Another flusher holds the lease; it will do the work.
    LeaseBusy,
    /// An earlier failure asked background flushers to wait until this time (Unix ms).
    Deferred(i64),
    /// The server could not be reached or asked us to come back later; rows are kept.
    Unavailable(String),
    /// The server refused our credentials or URL; rows are kept.
    ConfigError(String),
}

/// What a flush did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlushReport {
    /// Events the server stored now.
    pub accepted: u64,
    /// Events the server already had.
    pub duplicate: u64,
    /// Events the server rejected (now in the local dead-letter table).
    pub rejected: u64,
    /// Events still queued at the end.
    pub remaining: u64,
    /// How it ended.
    #[serde(flatten)]
    pub outcome: FlushOutcome,
}

impl FlushReport {
    fn new(outcome: FlushOutcome) -> Self {
        FlushReport {
            accepted: 0,
            duplicate: 0,
            rejected: 0,
            remaining: 0,
            outcome,
        }
    }
}

/// Why a flush could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    /// The spool failed.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The HTTP client could not be built (TLS setup).
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
}

/// Why draining stopped early.
enum Stop {
    Retryable {
        reason: String,
        retry_after: Option<Duration>,
    },
    Config(String),
    LostLease,
    Spool(SpoolError),
}

impl From<SpoolError> for Stop {
    fn from(e: SpoolError) -> Self {
        Stop::Spool(e)
    }
}

impl MaybeCorrupt for FlushError {
    fn spool_corruption(&self) -> Option<&SpoolError> {
        match self {
            FlushError::Spool(e) => e.spool_corruption(),
            FlushError::Client(_) => None,
        }
    }
}

/// Delivers the spool at `settings.spool_path` to `settings.url`.
///
/// `lease_token` is the lease a hook claimed for this flusher (background only).
///
/// # Errors
/// [`FlushError`] when the spool cannot be used or the client cannot be built; delivery
/// problems are not errors but outcomes, see [`FlushOutcome`].
///
/// A spool that SQLite finds corrupt while flushing (damage past the header shows only when
/// a statement reads the damaged page) is moved aside as at open, and the flush runs once
/// more on the fresh spool ([`Spool::with_recovery`]).
pub fn flush(
    settings: &Settings,
    mode: FlushMode,
    lease_token: Option<&str>,
) -> Result<FlushReport, FlushError> {
    let mut spool = Spool::open_with(&settings.spool_path, settings.spool_options())?;
    let mut lease_token = lease_token;
    spool.with_recovery(|spool| {
        // The lease a hook claimed lived in the file a recovery replaced: a second run
        // takes a lease of its own.
        flush_on(spool, settings, mode, lease_token.take())
    })
}

fn flush_on(
    spool: &mut Spool,
    settings: &Settings,
    mode: FlushMode,
    lease_token: Option<&str>,
) -> Result<FlushReport, FlushError> {
    // Housekeeping that must stay off the hook path.
    let (compacted, deleted) = spool.prune_ledgers()?;
    if compacted + deleted > 0 {
        tracing::debug!(compacted, deleted, "pruned idle session ledgers");
    }
    let (Some(url), Some(key)) = (settings.url.as_deref(), settings.api_key_plain()) else {
        let mut report = FlushReport::new(FlushOutcome::NotConfigured);
        report.remaining = spool.depth()?;
        return Ok(report);
    };

    let token = lease_token.map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let adopted = lease_token.is_some() && spool.renew_lease(&token, LEASE_TTL_MS)?;
    if !adopted {
        if mode == FlushMode::Background {
            let not_before = spool.meta_i64(MetaKey::NextAttemptAtMs)?;
            if let Some(t) = not_before.filter(|t| *t > now_ms()) {
                let mut report = FlushReport::new(FlushOutcome::Deferred(t));
                report.remaining = spool.depth()?;
                return Ok(report);
            }
        }
        if !take_lease(spool, &token, mode)? {
            let mut report = FlushReport::new(FlushOutcome::LeaseBusy);
            report.remaining = spool.depth()?;
            return Ok(report);
        }
    }

    let client = match http::build_client() {
        Ok(c) => c,
        Err(e) => {
            spool.release_lease(&token)?;
            return Err(FlushError::Client(e));
        }
    };
    let endpoint = format!("{url}/v1/events");
    let sender = Sender {
        client: &client,
        endpoint: &endpoint,
        key,
        token: &token,
    };
    let report = retry::deliver(spool, &sender, mode)?;
    Ok(report)
}

/// Takes the lease; `Wait` polls until the current holder releases it or it expires.
fn take_lease(spool: &mut Spool, token: &str, mode: FlushMode) -> Result<bool, SpoolError> {
    let deadline = Instant::now() + Duration::from_millis(2 * LEASE_TTL_MS.unsigned_abs());
    loop {
        if spool.acquire_lease(token, LEASE_TTL_MS)? {
            return Ok(true);
        }
        if mode != FlushMode::Wait || Instant::now() > deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
