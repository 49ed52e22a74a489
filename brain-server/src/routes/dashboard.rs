//! The dashboard reads under `/v1/dashboard/*` (admin bearer): overview, customers, agents,
//! tools, health. Shapes are documented in `docs/api.md`.
//!
//! These are plain queries over `events` for now; rollup tables come later (SPEC §6).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth::Admin;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::state::AppState;

/// The reads, relative to `/v1/dashboard`.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/overview", get(get_overview))
        .route("/customers", get(get_customers))
        .route("/agents", get(get_agents))
        .route("/tools", get(get_tools))
        .route("/health", get(get_health))
}

/// A read's time window: `1h`, `24h`, `7d` or `30d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
pub(crate) enum Window {
    /// The last hour.
    #[serde(rename = "1h")]
    Hour,
    /// The last 24 hours.
    #[default]
    #[serde(rename = "24h")]
    Day,
    /// The last 7 days.
    #[serde(rename = "7d")]
    Week,
    /// The last 30 days.
    #[serde(rename = "30d")]
    Month,
}

impl Window {
    fn span(self) -> TimeDelta {
        match self {
            Window::Hour => TimeDelta::hours(1),
            Window::Day => TimeDelta::hours(24),
            Window::Week => TimeDelta::days(7),
            Window::Month => TimeDelta::days(30),
        }
    }
}

/// Query of `overview`.
#[derive(Debug, Deserialize)]
pub(crate) struct OverviewParams {
    #[serde(default)]
    window: Window,
}

/// Query of `agents`.
#[derive(Debug, Deserialize)]
pub(crate) struct AgentsParams {
    customer_id: Option<String>,
}

/// Query of `tools`.
#[derive(Debug, Deserialize)]
pub(crate) struct ToolsParams {
    #[serde(default)]
    window: Window,
    customer_id: Option<String>,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Money is summed as floating point: round to 1/10000 cent so sums read cleanly. Always finite:
/// the sums count only costs within `shared_proto::limits::MAX_COST_CENTS` (`db/dashboard`),
/// so no read serializes a non-finite number (which JSON would show as `null`).
fn cents(c: f64) -> f64 {
    (c * 10_000.0).round() / 10_000.0
}

/// Per customer over the window (default 24 h): events, sessions, errors, cost, agents, last seen.
#[tracing::instrument(skip_all)]
pub(crate) async fn get_overview(
    _: Admin,
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<OverviewParams>,
) -> Result<Json<Value>, ApiError> {
    let now = Utc::now();
    let since = now - p.window.span();
    let rows = state.store().overview(since).await?;
    let customers: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            json!({
                "customer_id": r.customer_id,
                "name": r.name,
                "events": r.events,
                "sessions": r.sessions,
                "errors": r.errors,
                "cost_cents": cents(r.cost_cents),
                "agents": r.agents,
                "last_seen": r.last_seen.map(ts),
            })
        })
        .collect();
    Ok(Json(json!({
        "window": p.window,
        "since": ts(since),
        "generated_at": ts(now),
        "customers": customers,
    })))
}

/// Engagement bucket from the last event's time: `active` (≤ 24 h ago), `idle` (≤ 7 days),
/// `dormant` (older), `never` (no events).
pub(crate) fn engagement(last_seen: Option<DateTime<Utc>>, now: DateTime<Utc>) -> &'static str {
    match last_seen {
        None => "never",
        Some(t) if now - t <= TimeDelta::hours(24) => "active",
        Some(t) if now - t <= TimeDelta::days(7) => "idle",
        Some(_) => "dormant",
    }
}

/// Every customer with cumulative counts and an engagement bucket.
#[tracing::instrument(skip_all)]
pub(crate) async fn get_customers(
    _: Admin,
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let now = Utc::now();
    let rows = state.store().customers().await?;
    let customers: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            json!({
                "customer_id": r.customer_id,
                "name": r.name,
                "created_at": ts(r.created_at),
                "events": r.events,
                "sessions": r.sessions,
                "tool_calls": r.tool_calls,
                "errors": r.errors,
                "cost_cents": cents(r.cost_cents),
                "agents": r.agents,
                "last_seen": r.last_seen.map(ts),
                "engagement": engagement(r.last_seen, now),
            })
        })
        .collect();
    Ok(Json(
        json!({ "generated_at": ts(now), "customers": customers }),
    ))
}

/// Per agent (of `customer_id`, or all): cumulative counts, version, first and last seen.
#[tracing::instrument(skip_all)]
pub(crate) async fn get_agents(
    _: Admin,
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<AgentsParams>,
) -> Result<Json<Value>, ApiError> {
    let customer = p.customer_id.filter(|c| !c.is_empty());
    let rows = state.store().agents(customer.as_deref()).await?;
    let agents: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            json!({
                "agent_id": r.agent_id,
                "customer_id": r.customer_id,
                "agent_version": r.agent_version,
                "first_seen": ts(r.first_seen),
                "last_seen": ts(r.last_seen),
                "events": r.events,
                "sessions": r.sessions,
                "tool_calls": r.tool_calls,
                "errors": r.errors,
                "cost_cents": cents(r.cost_cents),
            })
        })
        .collect();
    Ok(Json(json!({ "customer_id": customer, "agents": agents })))
}

/// Figures of one tool.
#[derive(Debug, Default)]
struct ToolAgg {
    calls: u64,
    errors: u64,
    durations: Vec<i64>,
}

/// Nearest-rank percentile `p` (0–100) of sorted values.
fn percentile(sorted: &[i64], p: u32) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (sorted.len() * p as usize).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

/// Per tool over the window: calls, errors, error rate, average and p95 duration (ms).
#[tracing::instrument(skip_all)]
pub(crate) async fn get_tools(
    _: Admin,
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<ToolsParams>,
) -> Result<Json<Value>, ApiError> {
    let now = Utc::now();
    let since = now - p.window.span();
    let customer = p.customer_id.filter(|c| !c.is_empty());
    let rows = state.store().tool_calls(since, customer.as_deref()).await?;
    let mut by_tool: BTreeMap<String, ToolAgg> = BTreeMap::new();
    for r in rows {
        let agg = by_tool.entry(r.tool_name).or_default();
        agg.calls += 1;
        agg.errors += u64::from(!r.ok);
        if let Some(d) = r.duration_ms {
            agg.durations.push(d);
        }
    }
    let mut tools: Vec<(String, ToolAgg)> = by_tool.into_iter().collect();
    tools.sort_by(|a, b| b.1.calls.cmp(&a.1.calls).then_with(|| a.0.cmp(&b.0)));
    let tools: Vec<Value> = tools
        .into_iter()
        .map(|(name, mut agg)| {
            agg.durations.sort_unstable();
            let avg = (!agg.durations.is_empty()).then(|| {
                agg.durations.iter().map(|&d| d as f64).sum::<f64>() / agg.durations.len() as f64
            });
            json!({
                "tool_name": name,
                "calls": agg.calls,
                "errors": agg.errors,
                "error_rate": agg.errors as f64 / agg.calls as f64,
                "avg_duration_ms": avg.map(|a| (a * 10.0).round() / 10.0),
                "p95_duration_ms": percentile(&agg.durations, 95),
            })
        })
        .collect();
    Ok(Json(json!({
        "window": p.window,
        "since": ts(since),
        "customer_id": customer,
        "tools": tools,
    })))
}

/// Ingestion health: volume and lag of the last hour, the latest-arriving event, dead letters,
/// the writer's queue and counters.
#[tracing::instrument(skip_all)]
pub(crate) async fn get_health(
    _: Admin,
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let now = Utc::now();
    let h = state.store().health(now).await?;
    let stats = state.writer_stats();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    Ok(Json(json!({
        "generated_at": ts(now),
        "events_total": h.events_total,
        "events_last_hour": h.events_last_hour,
        "ingest_lag_ms": {
            "avg": h.lag_avg_ms.map(|a| a.round()),
            "max": h.lag_max_ms,
        },
        "most_late_event": h.most_late.map(|(event_id, t, at)| json!({
            "event_id": event_id,
            "ts": ts(t),
            "ingested_at": ts(at),
            "lag_ms": (at - t).num_milliseconds(),
        })),
        "dead_letters": {
            "total": h.dead_letters_total,
            "last_24h": h.dead_letters_last_24h,
        },
        "writer": {
            "queue_depth": state.queue_depth(),
            "commits": load(&stats.commits),
            "requests": load(&stats.requests),
            "items": load(&stats.items),
        },
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p95_is_nearest_rank() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&v, 95), Some(95));
        assert_eq!(percentile(&[7], 95), Some(7));
        assert_eq!(percentile(&[1, 2], 95), Some(2));
        assert_eq!(percentile(&[], 95), None);
    }

    #[test]
    fn engagement_buckets() {
        let now = Utc::now();
        assert_eq!(engagement(None, now), "never");
        assert_eq!(engagement(Some(now - TimeDelta::hours(2)), now), "active");
        assert_eq!(engagement(Some(now - TimeDelta::days(3)), now), "idle");
        assert_eq!(engagement(Some(now - TimeDelta::days(30)), now), "dormant");
    }
}
