//! Prometheus metrics: a [`Metrics`] recorder per [`AppState`], the series it holds, the HTTP
//! middleware that counts and times every request ([`track_http`]), and the scrape that
//! refreshes the gauges and renders the text (`GET /metrics`, `routes/health.rs`).
//!
//! The recorder is `metrics-exporter-prometheus`'s [`PrometheusRecorder`], built without its
//! HTTP listener or push gateway and NOT installed as the process-global recorder: each
//! [`AppState`] owns one, and every recording goes through [`metrics::with_local_recorder`]
//! over it. Tests start many servers in one process; with per-state recorders each server's
//! `/metrics` shows only its own traffic, so tests can assert exact values. A library user
//! that installs a global recorder of its own does not see these series (nor do they leak
//! into it).
//!
//! Series (names follow the Prometheus conventions: `brain_` prefix, `_total` counters, base
//! units in the name):
//!
//! | series | type | labels |
//! | --- | --- | --- |
//! | `brain_ingest_events_total` | counter | `event_type`, `result`, `code` (rejected only) |
//! | `brain_http_requests_total` | counter | `route`, `status` |
//! | `brain_http_request_duration_seconds` | histogram | `route` |
//! | `brain_ingest_group_events` | histogram | |
//! | `brain_ingest_commit_failures_total` | counter | |
//! | `brain_ingest_oldest_event_lag_seconds` | gauge | |
//! | `brain_ingest_commits_total`, `…_requests_total`, `…_items_total`, `…_failed_groups_total` | counter | |
//! | `brain_ingest_queue_depth`, `brain_ingest_queue_capacity` | gauge | |
//! | `brain_ingest_in_flight_bytes`, `brain_http_connections` | gauge | |
//! | `brain_db_pool_connections`, `…_idle_connections`, `…_max_connections` | gauge | |
//! | `brain_dead_letters` | gauge | |
//! | `brain_rollups_in_transaction` | gauge | |
//! | `brain_build_info` | gauge | `version` |
//!
//! [`AppState`]: crate::state::AppState

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, Utc};
use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};

use crate::db::Store;
use crate::db::ingest::Outcome;
use crate::ingest::{Item, WriteJob};
use crate::state::AppState;
use crate::task;

/// Request latency buckets, in seconds: 1 ms to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Events per group commit: 1 to the largest group ([`Limits::group_events`] defaults to 2000).
///
/// [`Limits::group_events`]: crate::config::Limits::group_events
const GROUP_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
];
/// How often histogram samples are folded into their buckets when nobody scrapes (a scrape
/// folds them too); bounds the memory the samples take between scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);
/// How long a scrape waits for the dead-letter count before it keeps the last value.
const COUNT_TIMEOUT: Duration = Duration::from_secs(2);

/// The `route` label of a request that matched no route (404 from the fallback): never the
/// raw path, whose values a client chooses.
const UNMATCHED_ROUTE: &str = "unmatched";
/// The `event_type` label of an element that did not validate (its type is unknown or not
/// trusted; the label keeps only the six known types).
const UNKNOWN_EVENT_TYPE: &str = "unknown";

/// A server's metrics: its own Prometheus recorder. Cheap to clone (one `Arc`).
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    recorder: Arc<PrometheusRecorder>,
}

impl Metrics {
    /// A recorder with every series described and the histogram buckets set, and a task that
    /// folds histogram samples every few seconds while the recorder lives (needs a Tokio
    /// runtime).
    pub(crate) fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("brain_http_request_duration_seconds".to_owned()),
                LATENCY_BUCKETS,
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("brain_ingest_group_events".to_owned()),
                    GROUP_BUCKETS,
                )
            })
            // Only an empty bucket list fails, and these are not empty.
            .unwrap_or_default()
            .build_recorder();
        let metrics = Metrics {
            recorder: Arc::new(recorder),
        };
        metrics.record(|| {
            describe();
            // Exported at 0 from the start, so that `rate()`/`increase()` see the first one.
            counter!("brain_ingest_commit_failures_total").increment(0);
        });
        let weak = Arc::downgrade(&metrics.recorder);
        drop(task::spawn("metrics-upkeep", upkeep(weak)));
        metrics
    }

    /// Runs `f` (which records through the `metrics` macros) against this recorder.
    fn record<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&*self.recorder, f)
    }

    /// The Prometheus text of every series.
    pub(crate) fn render(&self) -> String {
        self.recorder.handle().render()
    }

    /// Records one committed group: its size, each element's outcome by type and result, and
    /// the lag of its oldest accepted event (commit time − `ts`).
    pub(crate) fn group_committed(&self, jobs: &[WriteJob], outcomes: &[Vec<Outcome>]) {
        let now = Utc::now();
        let mut events = 0_usize;
        let mut oldest: Option<DateTime<Utc>> = None;
        // Counted here first: the writer is the serial part, so one recorder update per
        // distinct (type, result, code), not one per element.
        let mut counts: BTreeMap<(&'static str, &'static str, Option<&str>), u64> = BTreeMap::new();
        for (job, outcomes) in jobs.iter().zip(outcomes) {
            for (item, outcome) in job.items.iter().zip(outcomes) {
                events += 1;
                let event_type = match item {
                    Item::Valid(ev) => ev.event_type,
                    Item::Rejected { .. } => UNKNOWN_EVENT_TYPE,
                };
                let key = match outcome {
                    Outcome::Accepted(_) => {
                        if let Item::Valid(ev) = item {
                            oldest = Some(oldest.map_or(ev.ts, |o| o.min(ev.ts)));
                        }
                        (event_type, "accepted", None)
                    }
                    Outcome::Duplicate(_) => (event_type, "duplicate", None),
                    Outcome::Rejected { code, .. } => (event_type, "rejected", Some(code.as_str())),
                };
                *counts.entry(key).or_default() += 1;
            }
        }
        self.record(|| {
            for ((event_type, result, code), n) in counts {
                match code {
                    None => counter!("brain_ingest_events_total", "event_type" => event_type, "result" => result),
                    Some(code) => counter!("brain_ingest_events_total", "event_type" => event_type, "result" => result, "code" => code.to_owned()),
                }
                .increment(n);
            }
            histogram!("brain_ingest_group_events").record(events as f64);
            if let Some(ts) = oldest {
                let lag = (now - ts).num_milliseconds().max(0) as f64 / 1000.0;
                gauge!("brain_ingest_oldest_event_lag_seconds").set(lag);
            }
        });
    }

    /// Records a group write that failed (nothing of it committed).
    pub(crate) fn commit_failed(&self) {
        self.record(|| counter!("brain_ingest_commit_failures_total").increment(1));
    }
}

/// Describes every series (HELP and TYPE lines; units are in the names).
fn describe() {
    describe_counter!(
        "brain_ingest_events_total",
        "Ingest elements by event_type (unknown when it did not validate) and result (accepted, duplicate, rejected with its code)."
    );
    describe_counter!(
        "brain_http_requests_total",
        "HTTP requests answered, by route template (unmatched for a 404 from no route) and status."
    );
    describe_histogram!(
        "brain_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency until the response head, by route template."
    );
    describe_histogram!(
        "brain_ingest_group_events",
        "Elements (events and rejected elements) per committed ingest group."
    );
    describe_counter!(
        "brain_ingest_commit_failures_total",
        "Ingest group writes that failed and committed nothing."
    );
    describe_gauge!(
        "brain_ingest_oldest_event_lag_seconds",
        Unit::Seconds,
        "Commit time minus ts of the oldest event accepted by the last committed group."
    );
    describe_counter!(
        "brain_ingest_commits_total",
        "Ingest transactions committed (one per group)."
    );
    describe_counter!(
        "brain_ingest_requests_total",
        "Ingest requests answered after a commit."
    );
    describe_counter!(
        "brain_ingest_items_total",
        "Ingest elements written (events and dead letters)."
    );
    describe_counter!(
        "brain_ingest_failed_groups_total",
        "Group commits that failed and were retried request by request."
    );
    describe_gauge!(
        "brain_ingest_queue_depth",
        "Ingest requests waiting for the writer."
    );
    describe_gauge!(
        "brain_ingest_queue_capacity",
        "Most ingest requests the writer queue holds; a full queue answers 503."
    );
    describe_gauge!(
        "brain_ingest_in_flight_bytes",
        Unit::Bytes,
        "Bytes of ingest bodies held (read or gunzipped, not yet answered)."
    );
    describe_gauge!("brain_http_connections", "HTTP connections being served.");
    describe_gauge!(
        "brain_db_pool_connections",
        "Database connections open in the pool (in use and idle)."
    );
    describe_gauge!(
        "brain_db_pool_idle_connections",
        "Database connections open and idle in the pool."
    );
    describe_gauge!(
        "brain_db_pool_max_connections",
        "Most database connections the pool opens."
    );
    describe_gauge!(
        "brain_dead_letters",
        "Dead letters stored (rejected elements, until their retention deletes them)."
    );
    describe_gauge!(
        "brain_rollups_in_transaction",
        "1 when rollups are updated in the ingest transaction (rollup lag is 0 by construction)."
    );
    describe_gauge!(
        "brain_build_info",
        "Always 1; the server's version as a label."
    );
}

/// Folds histogram samples into buckets every [`UPKEEP_EVERY`] until the recorder is dropped.
async fn upkeep(recorder: Weak<PrometheusRecorder>) {
    loop {
        tokio::time::sleep(UPKEEP_EVERY).await;
        match recorder.upgrade() {
            Some(r) => r.handle().run_upkeep(),
            None => break,
        }
    }
}

/// Refreshes the gauges read at scrape time (queue, memory, connections, pool, dead letters)
/// and the writer's counters, then renders every series.
pub(crate) async fn scrape(state: &AppState) -> String {
    let metrics = state.metrics();
    let dead_letters = tokio::time::timeout(COUNT_TIMEOUT, state.store().count_dead_letters())
        .await
        .ok()
        .and_then(Result::ok);
    let stats = state.writer_stats();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let (size, idle, max) = pool_figures(state.store());
    metrics.record(|| {
        counter!("brain_ingest_commits_total").absolute(load(&stats.commits));
        counter!("brain_ingest_requests_total").absolute(load(&stats.requests));
        counter!("brain_ingest_items_total").absolute(load(&stats.items));
        counter!("brain_ingest_failed_groups_total").absolute(load(&stats.failed_groups));
        gauge!("brain_ingest_queue_depth").set(state.queue_depth() as f64);
        gauge!("brain_ingest_queue_capacity").set(state.limits().queue_requests as f64);
        gauge!("brain_ingest_in_flight_bytes").set(state.in_flight_bytes() as f64);
        gauge!("brain_http_connections").set(state.open_connections() as f64);
        gauge!("brain_db_pool_connections").set(f64::from(size));
        gauge!("brain_db_pool_idle_connections").set(idle as f64);
        gauge!("brain_db_pool_max_connections").set(f64::from(max));
        if let Some(n) = dead_letters {
            // A count that did not answer in time keeps the last value.
            gauge!("brain_dead_letters").set(n as f64);
        }
        gauge!("brain_rollups_in_transaction").set(if state.limits().rollups { 1.0 } else { 0.0 });
        gauge!("brain_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    });
    metrics.render()
}

/// (open, idle, most) connections of the store's pool.
fn pool_figures(store: &Store) -> (u32, usize, u32) {
    match store {
        Store::Postgres(pool) => (
            pool.size(),
            pool.num_idle(),
            pool.options().get_max_connections(),
        ),
        Store::Sqlite(pool) => (
            pool.size(),
            pool.num_idle(),
            pool.options().get_max_connections(),
        ),
    }
}

/// Middleware: counts every request by route template and status and times it by route
/// template (until the response head).
pub(crate) async fn track_http(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED_ROUTE.to_owned(), |m| m.as_str().to_owned());
    let start = Instant::now();
    let response = next.run(req).await;
    let elapsed = start.elapsed().as_secs_f64();
    let status = response.status().as_u16().to_string();
    state.metrics().record(|| {
        counter!("brain_http_requests_total", "route" => route.clone(), "status" => status)
            .increment(1);
        histogram!("brain_http_request_duration_seconds", "route" => route).record(elapsed);
    });
    response
}
