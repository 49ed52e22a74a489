//! The dashboard reads under `/v1/dashboard/*` (admin bearer): overview, customers, agents,
//! tools, cost, sessions, errors, fleet, health (SPEC §4 "Dashboard reads"). Each answers one
//! typed body of [`shared_proto::dashboard`] from the rollup tables (`db/dashboard`).
//!
//! Windows: `window=1h|24h|7d|30d|90d` means `[now − window rounded down to the hour, now)`;
//! `since`/`until` (RFC 3339) override it, rounded down/up to the hour (docs/rollups.md,
//! "Windows"). A bad value of any parameter is a 400 `invalid_query`, never a 500.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Datelike, TimeDelta, Utc};
use serde::Deserialize;
use shared_proto::dashboard::{
    AgentSummary, AgentsResponse, CostBucket, CostPoint, CostResponse, CustomerActivity,
    CustomerCost, CustomerSummary, CustomersResponse, DatabaseBackend, Engagement, ErrorGroup,
    ErrorsResponse, FleetAgent, FleetResponse, HealthResponse, McpServerStats, ModelCost,
    OverviewResponse, PriceTable, RunModel, RunStatus, RunSummary, SessionsResponse, ToolFailures,
    ToolStats, ToolsResponse, Window,
};

use crate::auth::Admin;
use crate::db::dashboard::{
    Range, RunQuery, RunRow, Span, StatusFilter, ToolRow, Trunc, Usage, ceil_hour, floor_hour,
};
use crate::db::rollups::latency;
use crate::db::{Backend, Store};
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
        .route("/cost", get(get_cost))
        .route("/sessions", get(get_sessions))
        .route("/errors", get(get_errors))
        .route("/fleet", get(get_fleet))
        .route("/health", get(get_health))
}

/// An agent without a heartbeat for this long is stale.
const STALE_AFTER_S: i64 = 15 * 60;
/// Runs per sessions page when `limit` is not given.
const DEFAULT_RUNS_LIMIT: u32 = 50;
/// The largest sessions page.
const MAX_RUNS_LIMIT: u32 = 500;
/// An event stored more than this after it happened arrived late (health).
const LATE_MS: u64 = 3_600_000;

/// A window's query parameters (and the customer filter), shared by the windowed reads.
#[derive(Debug, Deserialize)]
pub(crate) struct WindowParams {
    window: Option<Window>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    customer_id: Option<String>,
}

/// Query of `cost`.
#[derive(Debug, Deserialize)]
pub(crate) struct CostParams {
    window: Option<Window>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    customer_id: Option<String>,
    bucket: Option<CostBucket>,
}

/// Query of `sessions`.
#[derive(Debug, Deserialize)]
pub(crate) struct SessionsParams {
    window: Option<Window>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    customer_id: Option<String>,
    agent_id: Option<String>,
    status: Option<RunStatus>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// Query of `fleet`.
#[derive(Debug, Deserialize)]
pub(crate) struct FleetParams {
    customer_id: Option<String>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_query", message)
}

/// An id filter: absent or empty means none.
fn filter(id: Option<String>) -> Option<String> {
    id.filter(|s| !s.is_empty())
}

/// The read's range: `since`/`until` rounded to the hour, else `window` (or `default`)
/// back from `until` (or now). `None`: all time up to now (no window, no `since`/`until`).
fn resolve(
    window: Option<Window>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    default: Option<Window>,
    now: DateTime<Utc>,
) -> Result<Option<Span>, ApiError> {
    let explicit_until = until.is_some();
    let until = until.map_or(now, ceil_hour);
    let since = match (since, window.or(default)) {
        (Some(s), _) => Some(floor_hour(s)),
        (None, Some(w)) => Some(floor_hour(until - TimeDelta::hours(w.hours()))),
        (None, None) if explicit_until => Some(DateTime::UNIX_EPOCH),
        (None, None) => None,
    };
    let Some(since) = since else {
        return Ok(None);
    };
    if since < DateTime::UNIX_EPOCH {
        return Err(invalid("since is before 1970-01-01T00:00:00Z"));
    }
    if since >= until {
        return Err(invalid("since must be before until"));
    }
    Ok(Some(Span { since, until }))
}

/// [`resolve`] with a default window, so always a span.
fn resolve_span(
    window: Option<Window>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    default: Window,
    now: DateTime<Utc>,
) -> Result<Span, ApiError> {
    let span = resolve(window, since, until, Some(default), now)?;
    span.ok_or_else(|| invalid("no window"))
}

/// A count from the database (never negative there).
fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Money, rounded to 1/10000 cent so sums read cleanly; always finite (JSON has no NaN or
/// infinity: a non-finite sum, which bounded costs cannot make, reads as 0).
fn cents(c: f64) -> f64 {
    if c.is_finite() {
        (c * 10_000.0).round() / 10_000.0
    } else {
        0.0
    }
}

/// `part / whole` (0 when `whole` is 0).
fn rate(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Mean duration (ms, to 0.1) of `n` timed calls summing to `sum` ms.
fn mean(sum: f64, n: u64) -> Option<f64> {
    (n > 0 && sum.is_finite()).then(|| (sum / n as f64 * 10.0).round() / 10.0)
}

/// The span engagement is read from: the last 7 days.
fn engagement_span(now: DateTime<Utc>) -> Span {
    Span {
        since: floor_hour(now - TimeDelta::days(7)),
        until: now,
    }
}

/// Per customer over the window (default 24 h): split counts, cost, agents, last seen.
#[tracing::instrument(skip_all)]
pub(crate) async fn get_overview(
    _: Admin,
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<WindowParams>,
) -> Result<Json<OverviewResponse>, ApiError> {
    let now = Utc::now();
    let span = resolve_span(p.window, p.since, p.until, Window::Day, now)?;
    let rows = state
        .store()
        .customer_activity(Range::Span(span), engagement_span(now))
        .await?;
    let customers = rows
        .into_iter()
        .map(|r| CustomerActivity {
            customer_id: r.customer_id,
            name: r.name,
            events: count(r.activity.events),
            runs: count(r.activity.runs),
            runs_failed: count(r.activity.runs_failed),
            runs_timed_out: count(r.activity.runs_timed_out),
            tool_calls: count(r.activity.tool_calls),
            tool_failures: count(r.activity.tool_failures),
            error_events: count(r.activity.error_events),
            llm_events: count(r.activity.llm_events),
            cost_cents: cents(r.activity.cost_cents),
            agents: count(r.agents),
            last_seen: r.last_seen,
        })
        .collect();
    Ok(Json(OverviewResponse {
        since: span.since,
        until: span.until,
        customers,
    }))
}

/// Every customer: counts (all time unless a window is given) and engagement.
#[tracing::instrument(skip_all)]
pub(crate) async fn get_customers(
    _: Admin,
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<WindowParams>,
) -> Result<Json<CustomersResponse>, ApiError> {
    let now = Utc::now();
    let span = resolve(p.window, p.since, p.until, None, now)?;
    let range = span.map_or(Range::All, Range::Span);
    let rows = state
        .store()
        .customer_activity(range, engagement_span(now))
        .await?;
    let customers = rows
        .into_iter()
        .map(|r| CustomerSummary {
            customer_id: r.customer_id,
            name: r.name,
            created_at: r.created_at,
            events: count(r.activity.events),
            runs: count(r.activity.runs),
            runs_failed: count(r.activity.runs_failed),
            runs_timed_out: count(r.activity.runs_timed_out),
            tool_calls: count(r.activity.tool_calls),
            tool_failures: count(r.activity.tool_failures),
            error_events: count(r.activity.error_events),
            llm_events: count(r.activity.llm_events),
            cost_cents: cents(r.activity.cost_cents),
            agents: count(r.agents),
            last_seen: r.last_seen_in_range,
            runs_last_7d: count(r.runs_recent),
            engagement: Engagement::of_runs_last_7d(count(r.runs_recent)),
        })
        .collect();
    Ok(Json(CustomersResponse {
        since: span.map(|s| s.since),
        until: span.map_or(now, |s| s.until),
        customers,
    }))
}

/// Per agent (of `customer_id`, or all): counts (all time unless a window is given), version.
#[tracing::instrument(skip_all)]
pub(crate) async fn get_agents(
    _: Admin,
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<WindowParams>,
) -> Result<Json<AgentsResponse>, ApiError> {
    let now = Utc::now();
    let span = resolve(p.window, p.since, p.until, None, now)?;
    let customer = filter(p.customer_id);
    let range = span.map_or(Range::All, Range::Span);
    let rows = state
        .store()
        .agent_activity(customer.as_deref(), range)
        .await?;
    let agents = rows
        .into_iter()
        .map(|r| AgentSummary {
            agent_id: r.agent_id,
            customer_id: r.customer_id,
            agent_version: r.agent_version,
            events: count(r.activity.events),
            runs: count(r.activity.runs),
            runs_failed: count(r.activity.runs_failed),
            runs_timed_out: count(r.activity.runs_timed_out),
            tool_calls: count(r.activity.tool_calls),
            tool_failures: count(r.activity.tool_failures),
            error_events: count(r.activity.error_events),
            llm_events: count(r.activity.llm_events),
            cost_cents: cents(r.activity.cost_cents),
            first_seen: r.first_seen,
            last_seen: r.last_seen,
        })
        .collect();
    Ok(Json(AgentsResponse {
        customer_id: customer,
        since: span.map(|s| s.since),
        until: span.map_or(now, |s| s.until),
        agents,
    }))
}

/// `''` (absent) → `None`.
fn present(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// p50, p95, p99 of a histogram, ms.
fn quantiles(h: &[(i32, i64)]) -> [Option<f64>; 3] {
    [0.5, 0.95, 0.99].map(|p| latency::quantile(h, p))
}

/// Per tool over the window (default 24 h), and per MCP server: calls, failures, failure
/// rate, mean and p50/p95/p99 duration from the latency histograms.
#[tracing::instrument(skip_all)]
pub(crate) async fn get_tools(
    _: Admin,
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<WindowParams>,
) -> Result<Json<ToolsResponse>, ApiError> {
    let now = Utc::now();
    let span = resolve_span(p.window, p.since, p.until, Window::Day, now)?;
    let customer = filter(p.customer_id);
    let store = state.store();
    let rows = store.tool_sums(customer.as_deref(), span, false).await?;
    let mut histograms: HashMap<String, Vec<(i32, i64)>> = HashMap::new();
    for r in store.tool_latency(customer.as_deref(), span).await? {
        histograms
            .entry(r.tool_name)
            .or_default()
            .push((r.bucket, r.calls));
    }
    let mcp_servers = mcp_roll_up(&rows, &histograms);
    let tools = rows
        .into_iter()
        .map(|r| {
            let (calls, failures, timed) =
                (count(r.calls), count(r.failures), count(r.timed_calls));
            let [p50, p95, p99] = quantiles(histograms.get(&r.tool_name).map_or(&[], |h| h));
            ToolStats {
                tool_name: r.tool_name,
                tool_source: present(r.tool_source),
                mcp_server: present(r.mcp_server),
                calls,
                failures,
                failure_rate: rate(failures, calls),
                timed_calls: timed,
                mean_duration_ms: mean(r.duration_sum_ms, timed),
                p50_duration_ms: p50,
                p95_duration_ms: p95,
                p99_duration_ms: p99,
            }
        })
        .collect();
    Ok(Json(ToolsResponse {
        customer_id: customer,
        since: span.since,
        until: span.until,
        tools,
        mcp_servers,
    }))
}

/// The tools of each MCP server summed, with quantiles from their merged histograms; most
/// calls first.
fn mcp_roll_up(
    rows: &[ToolRow],
    histograms: &HashMap<String, Vec<(i32, i64)>>,
) -> Vec<McpServerStats> {
    #[derive(Default)]
    struct Sum<'a> {
        tools: BTreeSet<&'a str>,
        calls: u64,
        failures: u64,
        timed: u64,
        duration_ms: f64,
    }
    let mut servers: BTreeMap<&str, Sum<'_>> = BTreeMap::new();
    for r in rows.iter().filter(|r| !r.mcp_server.is_empty()) {
        let s = servers.entry(&r.mcp_server).or_default();
        s.tools.insert(&r.tool_name);
        s.calls += count(r.calls);
        s.failures += count(r.failures);
        s.timed += count(r.timed_calls);
        s.duration_ms += r.duration_sum_ms;
    }
    let mut out: Vec<McpServerStats> = servers
        .into_iter()
        .map(|(name, s)| {
            let merged: Vec<(i32, i64)> = s
                .tools
                .iter()
                .filter_map(|t| histograms.get(*t))
                .flatten()
                .copied()
                .collect();
            let [p50, p95, p99] = quantiles(&merged);
            McpServerStats {
                mcp_server: name.to_owned(),
                tools: s.tools.len() as u64,
                calls: s.calls,
                failures: s.failures,
                failure_rate: rate(s.failures, s.calls),
                timed_calls: s.timed,
                mean_duration_ms: mean(s.duration_ms, s.timed),
                p50_duration_ms: p50,
                p95_duration_ms: p95,
                p99_duration_ms: p99,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.calls
            .cmp(&a.calls)
            .then_with(|| a.mcp_server.cmp(&b.mcp_server))
    });
    out
}

/// Adds `u` to the totals `t` (token counts saturate; cost is a finite sum of bounded costs).
fn add_usage(t: &mut Usage, u: &Usage) {
    t.llm_events = t.llm_events.saturating_add(u.llm_events);
    t.input_tokens = t.input_tokens.saturating_add(u.input_tokens);
    t.output_tokens = t.output_tokens.saturating_add(u.output_tokens);
    t.cache_read_tokens = t.cache_read_tokens.saturating_add(u.cache_read_tokens);
    t.cache_write_tokens = t.cache_write_tokens.saturating_add(u.cache_write_tokens);
    t.cost_cents += u.cost_cents;
}

/// Totals by key, costliest first (then by key).
fn by_cost(totals: BTreeMap<String, Usage>) -> Vec<(String, Usage)> {
    let mut v: Vec<(String, Usage)> = totals.into_iter().collect();
    v.sort_by(|a, b| {
        b.1.cost_cents
            .total_cmp(&a.1.cost_cents)
            .then_with(|| a.0.cmp(&b.0))
    });
    v
}

/// The cost-to-serve series over the window (default 30 d, daily), per customer and model,
/// tokens beside cents, with totals and the price table's provenance.
#[tracing::instrument(skip_all)]
pub(crate) async fn get_cost(
    _: Admin,
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<CostParams>,
) -> Result<Json<CostResponse>, ApiError> {
    let now = Utc::now();
    let span = resolve_span(p.window, p.since, p.until, Window::Month, now)?;
    let customer = filter(p.customer_id);
    let bucket = p.bucket.unwrap_or(CostBucket::Day);
    let unit = match bucket {
        CostBucket::Hour => Trunc::Hour,
        CostBucket::Day => Trunc::Day,
        CostBucket::Week => Trunc::Week,
    };
    let rows = state
        .store()
        .usage_series(customer.as_deref(), span, unit)
        .await?;
    let mut per_customer: BTreeMap<String, Usage> = BTreeMap::new();
    let mut per_model: BTreeMap<String, Usage> = BTreeMap::new();
    let mut points = Vec::with_capacity(rows.len());
    for r in rows {
        add_usage(
            per_customer.entry(r.customer_id.clone()).or_default(),
            &r.usage,
        );
        add_usage(per_model.entry(r.model.clone()).or_default(), &r.usage);
        points.push(CostPoint {
            bucket_start: r.bucket_start,
            customer_id: r.customer_id,
            model: r.model,
            llm_events: count(r.usage.llm_events),
            input_tokens: count(r.usage.input_tokens),
            output_tokens: count(r.usage.output_tokens),
            cache_read_tokens: count(r.usage.cache_read_tokens),
            cache_write_tokens: count(r.usage.cache_write_tokens),
            cost_cents: cents(r.usage.cost_cents),
        });
    }
    let by_customer = by_cost(per_customer)
        .into_iter()
        .map(|(customer_id, u)| CustomerCost {
            customer_id,
            llm_events: count(u.llm_events),
            input_tokens: count(u.input_tokens),
            output_tokens: count(u.output_tokens),
            cache_read_tokens: count(u.cache_read_tokens),
            cache_write_tokens: count(u.cache_write_tokens),
            cost_cents: cents(u.cost_cents),
        })
        .collect();
    let by_model = by_cost(per_model)
        .into_iter()
        .map(|(model, u)| ModelCost {
            model,
            llm_events: count(u.llm_events),
            input_tokens: count(u.input_tokens),
            output_tokens: count(u.output_tokens),
            cache_read_tokens: count(u.cache_read_tokens),
            cache_write_tokens: count(u.cache_write_tokens),
            cost_cents: cents(u.cost_cents),
        })
        .collect();
    Ok(Json(CostResponse {
        customer_id: customer,
        since: span.since,
        until: span.until,
        bucket,
        prices: PriceTable::current(),
        points,
        by_customer,
        by_model,
    }))
}

/// The opaque cursor after `run`: hex of `[first_ts µs, customer_id, run_id]`.
fn encode_cursor(run: &RunRow) -> String {
    let key = serde_json::json!([run.first_ts.timestamp_micros(), run.customer_id, run.run_id]);
    hex::encode(key.to_string())
}

/// The key a cursor of [`encode_cursor`] holds.
fn decode_cursor(cursor: &str) -> Result<(DateTime<Utc>, String, String), ApiError> {
    let bad = || invalid("cursor is not one this server gave (pass next_cursor as it came)");
    let bytes = hex::decode(cursor).map_err(|_| bad())?;
    let (micros, customer, run): (i64, String, String) =
        serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let ts = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
    // Years an event can carry (RFC 3339) and both databases hold; a forged cursor outside
    // them must be a 400, not a failed bind.
    if !(0..=9999).contains(&ts.year()) || customer.contains('\0') || run.contains('\0') {
        return Err(bad());
    }
    Ok((ts, customer, run))
}

/// The stored `session.end` status as the read reports it; `started` says whether a
/// `session.start` is stored.
fn run_status(stored: Option<&str>, started: bool) -> RunStatus {
    match stored {
        None if started => RunStatus::Running,
        None => RunStatus::Unknown,
        Some("success") => RunStatus::Success,
        Some("timeout") => RunStatus::Timeout,
        // "failed", and anything a future emitter may send: it ended, not well.
        Some(_) => RunStatus::Failed,
    }
}

/// Runs, newest first, one page at a time (keyset cursor), filtered by customer, agent,
/// status and the window of their first event (none by default).
#[tracing::instrument(skip_all)]
pub(crate) async fn get_sessions(
    _: Admin,
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<SessionsParams>,
) -> Result<Json<SessionsResponse>, ApiError> {
    let now = Utc::now();
    let span = resolve(p.window, p.since, p.until, None, now)?;
    let limit = p.limit.unwrap_or(DEFAULT_RUNS_LIMIT);
    if !(1..=MAX_RUNS_LIMIT).contains(&limit) {
        return Err(invalid(format!(
            "limit must be between 1 and {MAX_RUNS_LIMIT}"
        )));
    }
    let after = match p.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => Some(decode_cursor(c)?),
        None => None,
    };
    let customer = filter(p.customer_id);
    let status = p.status.map(|s| match s {
        RunStatus::Success => StatusFilter::Ended("success"),
        RunStatus::Failed => StatusFilter::Ended("failed"),
        RunStatus::Timeout => StatusFilter::Ended("timeout"),
        RunStatus::Running => StatusFilter::Running,
        RunStatus::Unknown => StatusFilter::Unknown,
    });
    let q = RunQuery {
        customer_id: customer.clone(),
        agent_id: filter(p.agent_id),
        status,
        since: span.map(|s| s.since),
        until: span.map_or(now, |s| s.until),
        after,
        // One more than asked: whether a next page exists.
        limit: i64::from(limit) + 1,
    };
    let mut runs = state.store().runs(&q).await?;
    let next_cursor = if runs.len() > limit as usize {
        runs.truncate(limit as usize);
        runs.last().map(encode_cursor)
    } else {
        None
    };
    let sessions = runs
        .into_iter()
        .map(|r| RunSummary {
            status: run_status(r.status.as_deref(), r.started_at.is_some()),
            customer_id: r.customer_id,
            run_id: r.run_id,
            agent_id: r.agent_id,
            first_ts: r.first_ts,
            last_ts: r.last_ts,
            started_at: r.started_at,
            ended_at: r.ended_at,
            exit_code: r.exit_code,
            duration_ms: r.duration_ms.map(count),
            events: count(r.events),
            tool_calls: count(r.tool_calls),
            tool_failures: count(r.tool_failures),
            error_events: count(r.error_events),
            llm_events: count(r.llm_events),
            cost_cents: cents(r.cost_cents),
            models: r
                .models
                .into_iter()
                .map(|(model, u)| RunModel {
                    model,
                    llm_events: count(u.llm_events),
                    input_tokens: count(u.input_tokens),
                    output_tokens: count(u.output_tokens),
                    cache_read_tokens: count(u.cache_read_tokens),
                    cache_write_tokens: count(u.cache_write_tokens),
                    cost_cents: cents(u.cost_cents),
                })
                .collect(),
        })
        .collect();
    Ok(Json(SessionsResponse {
        customer_id: customer,
        since: q.since,
        until: q.until,
        sessions,
        next_cursor,
    }))
}

/// Error events by kind and stack hash, and tool failures by tool, over the window
/// (default 24 h).
#[tracing::instrument(skip_all)]
pub(crate) async fn get_errors(
    _: Admin,
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<WindowParams>,
) -> Result<Json<ErrorsResponse>, ApiError> {
    let now = Utc::now();
    let span = resolve_span(p.window, p.since, p.until, Window::Day, now)?;
    let customer = filter(p.customer_id);
    let store = state.store();
    let errors = store
        .error_groups(customer.as_deref(), span)
        .await?
        .into_iter()
        .map(|g| ErrorGroup {
            kind: g.kind,
            stack_hash: present(g.stack_hash),
            events: count(g.events),
            customers: count(g.customers),
            first_seen: g.first_seen,
            last_seen: g.last_seen,
            example_message: g.example_message,
        })
        .collect();
    let tool_failures = store
        .tool_sums(customer.as_deref(), span, true)
        .await?
        .into_iter()
        .map(|r| {
            let (calls, failures) = (count(r.calls), count(r.failures));
            ToolFailures {
                tool_name: r.tool_name,
                tool_source: present(r.tool_source),
                mcp_server: present(r.mcp_server),
                calls,
                failures,
                failure_rate: rate(failures, calls),
            }
        })
        .collect();
    Ok(Json(ErrorsResponse {
        customer_id: customer,
        since: span.since,
        until: span.until,
        errors,
        tool_failures,
    }))
}

/// Every agent's latest heartbeat (of `customer_id`, or all), stale ones first.
#[tracing::instrument(skip_all)]
pub(crate) async fn get_fleet(
    _: Admin,
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<FleetParams>,
) -> Result<Json<FleetResponse>, ApiError> {
    let now = Utc::now();
    let customer = filter(p.customer_id);
    let rows = state.store().heartbeats(customer.as_deref()).await?;
    let mut agents: Vec<FleetAgent> = rows
        .into_iter()
        .map(|r| {
            let age = (now - r.ts).num_seconds().max(0);
            FleetAgent {
                agent_id: r.agent_id,
                customer_id: r.customer_id,
                last_heartbeat: r.ts,
                age_s: count(age),
                stale: age >= STALE_AFTER_S,
                host_load_1m: if r.host_load_1m.is_finite() {
                    r.host_load_1m
                } else {
                    0.0
                },
                agent_runtime_count: r.agent_runtime_count.map(count),
                paperclip_uptime_s: r.paperclip_uptime_s.map(count),
                spool_depth: r.spool_depth.map(count),
                spool_dropped: r.spool_dropped.map(count),
                versions: serde_json::from_str(&r.agent_versions).unwrap_or_default(),
            }
        })
        .collect();
    // Stable: within stale and fresh, the store's (customer, agent) order.
    agents.sort_by_key(|a| !a.stale);
    Ok(Json(FleetResponse {
        customer_id: customer,
        until: now,
        stale_after_s: count(STALE_AFTER_S),
        agents,
    }))
}

/// Ingestion health in plain figures: what was stored in the last hour and how late it
/// arrived (quantiles, so a backfill moves them only by its share), dead letters, activity.
#[tracing::instrument(skip_all)]
pub(crate) async fn get_health(
    _: Admin,
    State(state): State<AppState>,
) -> Result<Json<HealthResponse>, ApiError> {
    let now = Utc::now();
    let store: &Store = state.store();
    let last_hour = floor_hour(now - TimeDelta::hours(1));
    let day_ago = now - TimeDelta::hours(24);
    let h = store
        .health(last_hour, day_ago, floor_hour(day_ago))
        .await?;
    // The lag bucket holding exactly one hour straddles it: count from the next one, so
    // every event counted is more than an hour late.
    let late_from = latency::bucket_of(LATE_MS);
    let stored: i64 = h.lag.iter().map(|&(_, n)| n).sum();
    let late: i64 = h
        .lag
        .iter()
        .filter(|&&(b, _)| b > late_from)
        .map(|&(_, n)| n)
        .sum();
    Ok(Json(HealthResponse {
        generated_at: now,
        database: match store.backend() {
            Backend::Postgres => DatabaseBackend::Postgres,
            Backend::Sqlite => DatabaseBackend::Sqlite,
        },
        last_hour_since: last_hour,
        events_stored_last_hour: count(stored),
        delay_p50_ms: latency::quantile(&h.lag, 0.5),
        delay_p95_ms: latency::quantile(&h.lag, 0.95),
        late_events_last_hour: count(late),
        events_total: count(h.events_total),
        dead_letters_total: count(h.dead_letters_total),
        dead_letters_last_24h: count(h.dead_letters_recent),
        customers_seen_last_24h: count(h.customers_recent),
        agents_seen_last_24h: count(h.agents_recent),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn windows_round_down_to_the_hour_and_explicit_bounds_outward() {
        let now = at("2026-12-02T11:40:00Z");
        let span = resolve(Some(Window::Day), None, None, None, now)
            .unwrap()
            .unwrap();
        assert_eq!(span.since, at("2026-12-01T11:00:00Z"));
        assert_eq!(span.until, now);
        let span = resolve(
            Some(Window::Hour),
            Some(at("2026-11-01T10:30:00Z")),
            Some(at("2026-11-02T10:30:00Z")),
            None,
            now,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            span.since,
            at("2026-11-01T10:00:00Z"),
            "since wins over window"
        );
        assert_eq!(span.until, at("2026-11-02T11:00:00Z"));
        assert_eq!(resolve(None, None, None, None, now).unwrap(), None);
        let err = resolve(None, Some(now), Some(now - TimeDelta::hours(2)), None, now);
        assert_eq!(err.unwrap_err().code(), "invalid_query");
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let run = RunRow {
            customer_id: "acme".into(),
            run_id: "run_1".into(),
            agent_id: "a".into(),
            first_ts: at("2026-12-02T11:40:00.123456Z"),
            last_ts: at("2026-12-02T11:40:00Z"),
            started_at: None,
            ended_at: None,
            status: None,
            exit_code: None,
            duration_ms: None,
            events: 0,
            tool_calls: 0,
            tool_failures: 0,
            error_events: 0,
            llm_events: 0,
            cost_cents: 0.0,
            models: vec![],
        };
        let (ts, c, r) = decode_cursor(&encode_cursor(&run)).unwrap();
        assert_eq!(
            (ts, c.as_str(), r.as_str()),
            (run.first_ts, "acme", "run_1")
        );
        let forged = hex::encode(format!("[{},\"a\",\"b\"]", i64::MIN / 2));
        for bad in ["zz", "00", &hex::encode("[1,2,3]"), &forged] {
            assert_eq!(decode_cursor(bad).unwrap_err().code(), "invalid_query");
        }
    }

    #[test]
    fn statuses() {
        assert_eq!(run_status(None, true), RunStatus::Running);
        assert_eq!(run_status(None, false), RunStatus::Unknown);
        assert_eq!(run_status(Some("success"), false), RunStatus::Success);
        assert_eq!(run_status(Some("failed"), true), RunStatus::Failed);
        assert_eq!(run_status(Some("timeout"), true), RunStatus::Timeout);
    }
}
