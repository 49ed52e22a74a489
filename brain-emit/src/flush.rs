//! Delivery: reads the spool oldest first and posts gzip'd batches to `POST /v1/events`.
//!
//! One flusher at a time per spool, by the spool's lease (it expires
//! [`LEASE_TTL_MS`] after the last renewal, so a dead holder never wedges delivery). The
//! HTTP client is built here and only here: hook invocations never touch reqwest.
//!
//! What each answer does to the rows:
//!
//! | answer | rows |
//! | --- | --- |
//! | 200 (or 422) with results | accepted and duplicate deleted, rejected moved to `dead_letters` |
//! | 413, or 400 with Brain's `malformed_json` / `not_an_envelope` | batch split in halves and resent; a single event refused alone is dead-lettered |
//! | network error, 408, 429, 5xx | kept; back off (exponential, jitter, `Retry-After`) |
//! | 401 / 403 / any other 400 / other 4xx | kept; a configuration error is recorded for `status` |
//!
//! A 400 is only taken as a verdict on the events when its body is Brain's error envelope
//! with a content code: a misconfigured URL (plain HTTP to a TLS port, a proxy) also answers
//! 400, and treating that as "these events are bad" would discard the whole spool.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use flate2::Compression;
use flate2::write::GzEncoder;
use reqwest::StatusCode;
use reqwest::blocking::Client;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use serde::Serialize;
use shared_proto::limits::{MAX_BATCH_EVENTS, MAX_BODY_BYTES};
use shared_proto::{BatchResponse, ErrorBody, EventStatus};

use crate::config::Settings;
use crate::spool::{QueuedRow, Spool, SpoolError, now_ms};

/// How long a lease lasts without renewal, in ms.
pub const LEASE_TTL_MS: i64 = 30_000;

/// Most delivery attempts of a background or foreground flush before it gives up.
const MAX_ATTEMPTS: usize = 4;

/// Most times one flush re-takes the lease for events queued while it was draining; a
/// bound so a flusher always ends even if hooks keep enqueuing.
const MAX_ROUNDS: u32 = 100;

/// Longest single back-off sleep, in ms; a longer `Retry-After` is recorded as the schedule
/// for the next flusher instead of slept through.
const MAX_SLEEP_MS: u64 = 60_000;

/// How long hooks wait before starting another flusher after a configuration error, in ms.
const CONFIG_ERROR_PAUSE_MS: i64 = 5 * 60 * 1000;

/// Total timeout of one HTTP request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Budget for one request body (the server's limit, minus a margin), in bytes.
const BODY_BUDGET: usize = MAX_BODY_BYTES - 4096;

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
/// more on the fresh spool.
pub fn flush(
    settings: &Settings,
    mode: FlushMode,
    lease_token: Option<&str>,
) -> Result<FlushReport, FlushError> {
    match flush_once(settings, mode, lease_token) {
        Err(FlushError::Spool(e)) if e.is_corruption() => {
            tracing::warn!(error = %e, "the spool is corrupt; moving it aside");
            let mut spool = Spool::open_with(&settings.spool_path, settings.spool_options())?;
            if spool.recovered_from().is_none() {
                spool.recover()?;
            }
            drop(spool);
            flush_once(settings, mode, None)
        }
        other => other,
    }
}

fn flush_once(
    settings: &Settings,
    mode: FlushMode,
    lease_token: Option<&str>,
) -> Result<FlushReport, FlushError> {
    let mut spool = Spool::open_with(&settings.spool_path, settings.spool_options())?;
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
            let not_before: Option<i64> = spool
                .meta("next_attempt_at_ms")?
                .and_then(|v| v.parse().ok());
            if let Some(t) = not_before.filter(|t| *t > now_ms()) {
                let mut report = FlushReport::new(FlushOutcome::Deferred(t));
                report.remaining = spool.depth()?;
                return Ok(report);
            }
        }
        if !take_lease(&mut spool, &token, mode)? {
            let mut report = FlushReport::new(FlushOutcome::LeaseBusy);
            report.remaining = spool.depth()?;
            return Ok(report);
        }
    }

    let client = match build_client() {
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
    let mut report = FlushReport::new(FlushOutcome::Drained);
    let mut backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(Duration::from_millis(MAX_SLEEP_MS))
        .with_factor(2.0)
        .with_jitter()
        .with_max_times(MAX_ATTEMPTS - 1)
        .build();

    let mut rounds = 0;
    loop {
        match sender.drain(&mut spool, &mut report) {
            Ok(()) => {
                spool.release_lease(&token)?;
                // A hook that enqueued while we held the lease did not start a flusher:
                // pick its events up unless someone else already has.
                rounds += 1;
                if rounds < MAX_ROUNDS
                    && spool.depth()? > 0
                    && spool.acquire_lease(&token, LEASE_TTL_MS)?
                {
                    continue;
                }
                report.outcome = FlushOutcome::Drained;
                break;
            }
            Err(Stop::Spool(e)) => {
                let _ = spool.release_lease(&token);
                return Err(e.into());
            }
            Err(Stop::LostLease) => {
                report.outcome = FlushOutcome::LeaseBusy;
                break;
            }
            Err(Stop::Config(reason)) => {
                spool.record_failure(&reason, true, Some(now_ms() + CONFIG_ERROR_PAUSE_MS))?;
                spool.release_lease(&token)?;
                report.outcome = FlushOutcome::ConfigError(reason);
                break;
            }
            Err(Stop::Retryable {
                reason,
                retry_after,
            }) => {
                let next = if mode == FlushMode::Wait {
                    None
                } else {
                    backoff.next()
                };
                let Some(delay) = next else {
                    // Out of attempts: leave a schedule so hooks do not start a flusher per
                    // event while the server is away.
                    let pause = retry_after
                        .unwrap_or(Duration::from_secs(30))
                        .min(Duration::from_secs(300));
                    spool.record_failure(&reason, false, Some(now_ms() + ms(pause)))?;
                    spool.release_lease(&token)?;
                    report.outcome = FlushOutcome::Unavailable(reason);
                    break;
                };
                let delay = retry_after.map_or(delay, |ra| ra.max(delay));
                let sleep = delay.min(Duration::from_millis(MAX_SLEEP_MS));
                spool.record_failure(&reason, false, Some(now_ms() + ms(delay)))?;
                // Release while sleeping: the next hook or timer may take over.
                spool.release_lease(&token)?;
                if delay > sleep {
                    report.outcome = FlushOutcome::Unavailable(reason);
                    break;
                }
                std::thread::sleep(sleep);
                if !spool.acquire_lease(&token, LEASE_TTL_MS)? {
                    report.outcome = FlushOutcome::LeaseBusy;
                    break;
                }
            }
        }
    }
    report.remaining = spool.depth()?;
    Ok(report)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
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

fn build_client() -> Result<Client, reqwest::Error> {
    Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .build()
}

struct Sender<'a> {
    client: &'a Client,
    endpoint: &'a str,
    key: &'a str,
    token: &'a str,
}

impl Sender<'_> {
    /// Sends batches until the queue is empty or something stops us.
    fn drain(&self, spool: &mut Spool, report: &mut FlushReport) -> Result<(), Stop> {
        loop {
            let rows = spool.peek_batch(MAX_BATCH_EVENTS, BODY_BUDGET)?;
            if rows.is_empty() {
                return Ok(());
            }
            self.send(spool, &rows, report)?;
        }
    }

    /// Sends one batch and applies the answer; splits it when the server finds it too
    /// large or unreadable.
    fn send(
        &self,
        spool: &mut Spool,
        rows: &[QueuedRow],
        report: &mut FlushReport,
    ) -> Result<(), Stop> {
        if !spool.renew_lease(self.token, LEASE_TTL_MS)? {
            return Err(Stop::LostLease);
        }
        let body = gzip_batch(rows);
        let answer = self
            .client
            .post(self.endpoint)
            .bearer_auth(self.key)
            .header(CONTENT_TYPE, "application/json")
            .header(CONTENT_ENCODING, "gzip")
            .header(
                USER_AGENT,
                concat!("brain-emit/", env!("CARGO_PKG_VERSION")),
            )
            .body(body)
            .send();
        let ids: Vec<&str> = rows.iter().map(|r| r.event_id.as_str()).collect();
        let response = match answer {
            Ok(r) => r,
            Err(e) => {
                spool.bump_attempts(&ids)?;
                return Err(Stop::Retryable {
                    reason: format!("cannot reach {}: {}", self.endpoint, error_chain(&e)),
                    retry_after: None,
                });
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let bytes = response.bytes().unwrap_or_default();
        let server_says = || {
            serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|b| format!("{}: {}", b.error.code, b.error.message))
                .unwrap_or_else(|_| {
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned()
                })
        };
        match status {
            StatusCode::OK | StatusCode::UNPROCESSABLE_ENTITY => {
                match serde_json::from_slice::<BatchResponse>(&bytes) {
                    Ok(batch) => {
                        if apply_results(spool, rows, &batch, report)? == 0 {
                            // Nothing settled: resending at once would loop forever.
                            return Err(Stop::Retryable {
                                reason: format!(
                                    "server answered {status} without a result for any of {} events",
                                    rows.len()
                                ),
                                retry_after,
                            });
                        }
                        Ok(())
                    }
                    Err(e) => {
                        spool.bump_attempts(&ids)?;
                        Err(Stop::Retryable {
                            reason: format!(
                                "server answered {status} with an unreadable body: {e}"
                            ),
                            retry_after: None,
                        })
                    }
                }
            }
            StatusCode::BAD_REQUEST if !brain_refused_content(&bytes) => {
                // Not Brain's verdict on our JSON (a proxy, plain HTTP to a TLS port, another
                // service, or a transport problem such as gzip): keep every row.
                spool.bump_attempts(&ids)?;
                Err(Stop::Config(format!(
                    "server answered {status} to POST {} (is BRAIN_URL right?): {}",
                    self.endpoint,
                    server_says()
                )))
            }
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::BAD_REQUEST => {
                if let [only] = rows {
                    let (code, message) = serde_json::from_slice::<ErrorBody>(&bytes)
                        .map(|b| (b.error.code, b.error.message))
                        .unwrap_or_else(|_| (status.as_u16().to_string(), server_says()));
                    spool.dead_letter(&only.event_id, &code, &message)?;
                    report.rejected += 1;
                    return Ok(());
                }
                let (left, right) = rows.split_at(rows.len() / 2);
                self.send(spool, left, report)?;
                self.send(spool, right, report)
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                spool.bump_attempts(&ids)?;
                Err(Stop::Config(format!(
                    "server refused the API key ({status}): {}",
                    server_says()
                )))
            }
            s if s == StatusCode::REQUEST_TIMEOUT
                || s == StatusCode::TOO_MANY_REQUESTS
                || s.is_server_error() =>
            {
                spool.bump_attempts(&ids)?;
                Err(Stop::Retryable {
                    reason: format!("server answered {status}: {}", server_says()),
                    retry_after,
                })
            }
            s => {
                spool.bump_attempts(&ids)?;
                Err(Stop::Config(format!(
                    "server answered {s} to POST {} (is BRAIN_URL right?): {}",
                    self.endpoint,
                    server_says()
                )))
            }
        }
    }
}

/// Request-level codes of a Brain 400 that are about the batch's content, so splitting the
/// batch (and dead-lettering an event refused alone) is the right answer.
const CONTENT_ERROR_CODES: [&str; 2] = ["malformed_json", "not_an_envelope"];

/// Whether a 400 body is Brain's error envelope saying the batch's content is unreadable.
/// Anything else (an HTML page from a proxy, a bare 400, another Brain code such as
/// `invalid_gzip`) is not a reason to discard events.
fn brain_refused_content(body: &[u8]) -> bool {
    serde_json::from_slice::<ErrorBody>(body)
        .is_ok_and(|b| CONTENT_ERROR_CODES.contains(&b.error.code.as_str()))
}

/// Deletes delivered rows, dead-letters rejected ones; rows without a result stay queued.
/// Returns how many rows were settled (deleted or dead-lettered).
fn apply_results(
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

/// `[` + the queued envelopes joined by `,` + `]`, gzip'd; the bodies are JSON already.
fn gzip_batch(rows: &[QueuedRow]) -> Vec<u8> {
    let len: usize = rows.iter().map(|r| r.body.len() + 1).sum::<usize>() + 2;
    let mut gz = GzEncoder::new(Vec::with_capacity(len / 4), Compression::fast());
    // Writes go into a Vec, which cannot fail; a failure would surface as an empty body,
    // which the server answers with 400 and the batch is split.
    let _ = gz.write_all(b"[");
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            let _ = gz.write_all(b",");
        }
        let _ = gz.write_all(row.body.as_bytes());
    }
    let _ = gz.write_all(b"]");
    gz.finish().unwrap_or_default()
}

/// `Retry-After` as seconds or an HTTP date, capped at 1 hour.
fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    let secs = match v.parse::<u64>() {
        Ok(s) => s,
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
            let delta = at.timestamp() - chrono::Utc::now().timestamp();
            u64::try_from(delta).unwrap_or(0)
        }
    };
    Some(Duration::from_secs(secs.min(3600)))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use std::io::Read;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("999999"), Some(Duration::from_secs(3600)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn gzip_batch_is_a_json_array() {
        let rows = vec![
            QueuedRow {
                event_id: "a".into(),
                body: r#"{"x":1}"#.into(),
            },
            QueuedRow {
                event_id: "b".into(),
                body: r#"{"x":2}"#.into(),
            },
        ];
        let gz = gzip_batch(&rows);
        let mut out = String::new();
        GzDecoder::new(&gz[..]).read_to_string(&mut out).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v, serde_json::json!([{"x":1},{"x":2}]));
    }
}
