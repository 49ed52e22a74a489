//! `GET /v1/healthz` (no auth) and `GET /metrics` (Prometheus text).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{SecondsFormat, Utc};
use serde_json::json;

use crate::state::AppState;

/// How long the health check waits for the database.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// `{"ok": true, "version", "ts"}`; 503 with `ok: false` when the database does not answer
/// or ingest writes are failing for lack of storage (disk full, read-only database, I/O
/// error: the last such failure is under 30 s old and no write committed since; a trivial
/// query still answers then, so the writer's record is what tells).
pub(crate) async fn get_healthz(State(state): State<AppState>) -> Response {
    let ok = !state.writes_failing()
        && matches!(
            tokio::time::timeout(PING_TIMEOUT, state.store().ping()).await,
            Ok(Ok(()))
        );
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "ok": ok,
        "version": env!("CARGO_PKG_VERSION"),
        "ts": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
    });
    (status, Json(body)).into_response()
}

/// Prometheus text: the ingest writer's counters and queue depth.
pub(crate) async fn get_metrics(State(state): State<AppState>) -> Response {
    let s = state.writer_stats();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric(
        "brain_ingest_commits_total",
        "counter",
        "Ingest transactions committed (one per group).",
        s.commits.load(Ordering::Relaxed),
    );
    metric(
        "brain_ingest_requests_total",
        "counter",
        "Ingest requests answered after a commit.",
        s.requests.load(Ordering::Relaxed),
    );
    metric(
        "brain_ingest_items_total",
        "counter",
        "Ingest elements written (events and dead letters).",
        s.items.load(Ordering::Relaxed),
    );
    metric(
        "brain_ingest_failed_groups_total",
        "counter",
        "Group commits that failed and were retried request by request.",
        s.failed_groups.load(Ordering::Relaxed),
    );
    metric(
        "brain_http_connections",
        "gauge",
        "HTTP connections being served.",
        state.open_connections() as u64,
    );
    metric(
        "brain_ingest_queue_depth",
        "gauge",
        "Ingest requests waiting for the writer.",
        state.queue_depth() as u64,
    );
    metric(
        "brain_ingest_in_flight_bytes",
        "gauge",
        "Bytes of ingest bodies held (read or gunzipped, not yet answered).",
        state.in_flight_bytes() as u64,
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
