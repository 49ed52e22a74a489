//! `GET /v1/healthz` (no auth) and `GET /metrics` (Prometheus text).

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

/// Prometheus text of this server's series (`metrics.rs`), gauges refreshed now.
pub(crate) async fn get_metrics(State(state): State<AppState>) -> Response {
    let text = crate::metrics::scrape(&state).await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
