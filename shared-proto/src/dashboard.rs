//! Response bodies of the dashboard reads (`GET /v1/dashboard/*`, SPEC §4 "Dashboard reads").
//!
//! One struct per endpoint response ([`OverviewResponse`], [`CustomersResponse`],
//! [`AgentsResponse`], [`ToolsResponse`], [`CostResponse`], [`SessionsResponse`],
//! [`ErrorsResponse`], [`FleetResponse`], [`HealthResponse`]), each wrapping its list(s) and the
//! effective window `[since, until)` it was answered for. Units are in the field names and
//! docs: durations in milliseconds (`_ms`) or seconds (`_s`), money in US cents (`_cents`,
//! fractional), token counts in tokens. Times are RFC 3339 UTC strings.
//!
//! Every number is finite: counts are integers, cost sums are finite sums of bounded costs,
//! and a figure that can be undefined (a quantile of no timed calls, a mean of nothing) is an
//! `Option` (`null`), never NaN. The shapes are plain (no untagged enums, no flattening) so an
//! OpenAPI document can be generated from them.
//!
//! "Errors" are never one lumped number: failed and timed-out runs (`runs_failed`,
//! `runs_timed_out`), failed tool calls (`tool_failures`) and `error` events (`error_events`)
//! are reported apart everywhere.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Date the emitter's price table was last checked against its source (ISO 8601).
pub const PRICES_AS_OF: &str = "2026-11-20";

/// Where the emitter's per-model rates come from: the `cost_cents` of every `llm_usage` event
/// is computed with this table (`brain-emit`), and the cost read names it.
pub const PRICES_SOURCE: &str = "LiteLLM model_prices_and_context_window.json @ 00035b69f416 \
     (as embedded by ccusage 20.0.24 --offline); 1h cache write = 2 x input";

/// A read's window ending now: the `window` query parameter.
///
/// `since = now − span`, rounded down to the hour, `until = now` (docs/rollups.md, "Windows").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Window {
    /// The last hour (`1h`).
    #[serde(rename = "1h")]
    Hour,
    /// The last 24 hours (`24h`).
    #[serde(rename = "24h")]
    Day,
    /// The last 7 days (`7d`).
    #[serde(rename = "7d")]
    Week,
    /// The last 30 days (`30d`).
    #[serde(rename = "30d")]
    Month,
    /// The last 90 days (`90d`).
    #[serde(rename = "90d")]
    Quarter,
}

impl Window {
    /// The window's length in hours.
    pub fn hours(self) -> i64 {
        match self {
            Window::Hour => 1,
            Window::Day => 24,
            Window::Week => 7 * 24,
            Window::Month => 30 * 24,
            Window::Quarter => 90 * 24,
        }
    }
}

/// The size of one point of the cost time series: the `bucket` query parameter of `cost`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CostBucket {
    /// A UTC hour.
    Hour,
    /// A UTC day.
    Day,
    /// An ISO week: Monday 00:00 UTC to the next Monday.
    Week,
}

/// How a run ended, as `sessions` reports it (and filters by: the `status` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Its `session.end` said `success`.
    Success,
    /// Its `session.end` said `failed`.
    Failed,
    /// Its `session.end` said `timeout`.
    Timeout,
    /// Its `session.start` is stored, no `session.end` yet.
    Running,
    /// Neither a `session.start` nor a `session.end` is stored: hook events only (a Claude
    /// Code session not started by the isolate wrapper), so whether it ended is not known.
    Unknown,
}

/// A customer's engagement, from its runs (`session.start` events) in the last 7 days.
///
/// `none`: 0 runs; `low`: 1–6 (less than one a day); `medium`: 7–69; `high`: 70 or more (ten a
/// day or more).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Engagement {
    /// No run in the last 7 days.
    None,
    /// 1–6 runs in the last 7 days.
    Low,
    /// 7–69 runs in the last 7 days.
    Medium,
    /// 70 or more runs in the last 7 days.
    High,
}

impl Engagement {
    /// The bucket of a customer with `runs` runs in the last 7 days.
    pub fn of_runs_last_7d(runs: u64) -> Self {
        match runs {
            0 => Engagement::None,
            1..=6 => Engagement::Low,
            7..=69 => Engagement::Medium,
            _ => Engagement::High,
        }
    }
}

/// The database behind the server, as `health` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatabaseBackend {
    /// Postgres.
    Postgres,
    /// The embedded SQLite file.
    Sqlite,
}

/// `GET /v1/dashboard/overview?window=` (default `24h`, or `since`/`until`): every customer's
/// activity in the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverviewResponse {
    /// First instant of the window (inclusive).
    pub since: DateTime<Utc>,
    /// End of the window (exclusive).
    pub until: DateTime<Utc>,
    /// Every customer, by `customer_id`, with zeros when idle in the window.
    pub customers: Vec<CustomerActivity>,
}

/// One customer's activity in the overview's window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerActivity {
    /// The customer.
    pub customer_id: String,
    /// Its display name.
    pub name: String,
    /// Events of every type.
    pub events: u64,
    /// Runs started (`session.start` events).
    pub runs: u64,
    /// Runs that ended `failed`.
    pub runs_failed: u64,
    /// Runs that ended `timeout`.
    pub runs_timed_out: u64,
    /// Tool calls.
    pub tool_calls: u64,
    /// Tool calls that failed (`ok` false).
    pub tool_failures: u64,
    /// `error` events.
    pub error_events: u64,
    /// `llm_usage` events.
    pub llm_events: u64,
    /// Cost to serve, US cents.
    pub cost_cents: f64,
    /// Distinct agents with an event in the window.
    pub agents: u64,
    /// Time of the customer's latest event ever (`null`: none).
    pub last_seen: Option<DateTime<Utc>>,
}

/// `GET /v1/dashboard/customers` (all time, or `window`/`since`/`until`): every customer's
/// counts and engagement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomersResponse {
    /// First instant counted; `null`: all time.
    pub since: Option<DateTime<Utc>>,
    /// End of the counted range (exclusive).
    pub until: DateTime<Utc>,
    /// Every customer, by `customer_id`.
    pub customers: Vec<CustomerSummary>,
}

/// One customer's counts (customers read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerSummary {
    /// The customer.
    pub customer_id: String,
    /// Its display name.
    pub name: String,
    /// When the customer was created.
    pub created_at: DateTime<Utc>,
    /// Events of every type.
    pub events: u64,
    /// Runs started (`session.start` events).
    pub runs: u64,
    /// Runs that ended `failed`.
    pub runs_failed: u64,
    /// Runs that ended `timeout`.
    pub runs_timed_out: u64,
    /// Tool calls.
    pub tool_calls: u64,
    /// Tool calls that failed.
    pub tool_failures: u64,
    /// `error` events.
    pub error_events: u64,
    /// `llm_usage` events.
    pub llm_events: u64,
    /// Cost to serve, US cents.
    pub cost_cents: f64,
    /// Agents with an event in the range.
    pub agents: u64,
    /// Time of the latest event in the range (`null`: none).
    pub last_seen: Option<DateTime<Utc>>,
    /// Runs started in the last 7 days (whatever the range): what `engagement` is read from.
    pub runs_last_7d: u64,
    /// Engagement bucket from `runs_last_7d` (see [`Engagement`]).
    pub engagement: Engagement,
}

/// `GET /v1/dashboard/agents?customer_id=` (all time, or `window`/`since`/`until`): per agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentsResponse {
    /// The customer asked for; `null`: every customer.
    pub customer_id: Option<String>,
    /// First instant counted; `null`: all time.
    pub since: Option<DateTime<Utc>>,
    /// End of the counted range (exclusive).
    pub until: DateTime<Utc>,
    /// Every agent (of the customer), by `customer_id` then `agent_id`, with zeros when idle.
    pub agents: Vec<AgentSummary>,
}

/// One agent's counts (agents read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentSummary {
    /// The agent.
    pub agent_id: String,
    /// Its customer.
    pub customer_id: String,
    /// The Paperclip agent version last reported (`null`: never).
    pub agent_version: Option<String>,
    /// Events of every type.
    pub events: u64,
    /// Runs started.
    pub runs: u64,
    /// Runs that ended `failed`.
    pub runs_failed: u64,
    /// Runs that ended `timeout`.
    pub runs_timed_out: u64,
    /// Tool calls.
    pub tool_calls: u64,
    /// Tool calls that failed.
    pub tool_failures: u64,
    /// `error` events.
    pub error_events: u64,
    /// `llm_usage` events.
    pub llm_events: u64,
    /// Cost to serve, US cents.
    pub cost_cents: f64,
    /// Time of its first event in the range (`null`: none).
    pub first_seen: Option<DateTime<Utc>>,
    /// Time of its latest event in the range (`null`: none).
    pub last_seen: Option<DateTime<Utc>>,
}

/// `GET /v1/dashboard/tools?window=&customer_id=` (default `24h`): the tool mix and its
/// latency, per tool and per MCP server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolsResponse {
    /// The customer asked for; `null`: the whole fleet.
    pub customer_id: Option<String>,
    /// First instant of the window (inclusive).
    pub since: DateTime<Utc>,
    /// End of the window (exclusive).
    pub until: DateTime<Utc>,
    /// Per tool, most calls first.
    pub tools: Vec<ToolStats>,
    /// Per MCP server (its tools' calls summed), most calls first.
    pub mcp_servers: Vec<McpServerStats>,
}

/// One tool's calls and durations.
///
/// Durations come from the calls that carried `duration_ms`; the quantiles are read from a
/// log-linear histogram and lie within 1/32 (≈ 3.1 %) of the exact nearest-rank value (exact
/// below 32 ms). The histogram is kept per `tool_name`: two rows with the same name and a
/// different source share their quantiles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolStats {
    /// The tool's name as Claude Code reports it (`mcp__<server>__<tool>` for MCP tools).
    pub tool_name: String,
    /// `builtin`, `mcp` or `plugin`; `null` when the emitter did not say.
    pub tool_source: Option<String>,
    /// The MCP server, for MCP tools.
    pub mcp_server: Option<String>,
    /// Calls.
    pub calls: u64,
    /// Calls that failed.
    pub failures: u64,
    /// `failures / calls` (0 to 1).
    pub failure_rate: f64,
    /// Calls that carried a duration.
    pub timed_calls: u64,
    /// Mean duration of the timed calls, ms (`null`: none timed).
    pub mean_duration_ms: Option<f64>,
    /// Median duration, ms (`null`: none timed).
    pub p50_duration_ms: Option<f64>,
    /// 95th percentile duration, ms (`null`: none timed).
    pub p95_duration_ms: Option<f64>,
    /// 99th percentile duration, ms (`null`: none timed).
    pub p99_duration_ms: Option<f64>,
}

/// One MCP server's calls, summed over its tools, with quantiles from their merged histograms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McpServerStats {
    /// The server's name.
    pub mcp_server: String,
    /// Distinct tools of it called in the window.
    pub tools: u64,
    /// Calls.
    pub calls: u64,
    /// Calls that failed.
    pub failures: u64,
    /// `failures / calls` (0 to 1).
    pub failure_rate: f64,
    /// Calls that carried a duration.
    pub timed_calls: u64,
    /// Mean duration of the timed calls, ms (`null`: none timed).
    pub mean_duration_ms: Option<f64>,
    /// Median duration, ms (`null`: none timed).
    pub p50_duration_ms: Option<f64>,
    /// 95th percentile duration, ms (`null`: none timed).
    pub p95_duration_ms: Option<f64>,
    /// 99th percentile duration, ms (`null`: none timed).
    pub p99_duration_ms: Option<f64>,
}

/// `GET /v1/dashboard/cost?window=&bucket=&customer_id=` (default `30d`, `day`): cost to serve
/// over time per customer and model, tokens beside cents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostResponse {
    /// The customer asked for; `null`: every customer.
    pub customer_id: Option<String>,
    /// First instant of the window (inclusive).
    pub since: DateTime<Utc>,
    /// End of the window (exclusive).
    pub until: DateTime<Utc>,
    /// The size of each point.
    pub bucket: CostBucket,
    /// The price table every `cost_cents` was computed with (by the emitter).
    pub prices: PriceTable,
    /// One point per (bucket, customer, model) with usage, by `bucket_start`, `customer_id`,
    /// `model`. The first and last buckets may be cut by the window.
    pub points: Vec<CostPoint>,
    /// Totals over the window per customer, costliest first.
    pub by_customer: Vec<CustomerCost>,
    /// Totals over the window per model, costliest first.
    pub by_model: Vec<ModelCost>,
}

/// The price table's provenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceTable {
    /// Where the rates come from ([`PRICES_SOURCE`]).
    pub source: String,
    /// When they were last checked against it, ISO 8601 date ([`PRICES_AS_OF`]).
    pub as_of: String,
}

impl PriceTable {
    /// The table the emitter of this version prices with.
    pub fn current() -> Self {
        PriceTable {
            source: PRICES_SOURCE.to_owned(),
            as_of: PRICES_AS_OF.to_owned(),
        }
    }
}

/// One point of the cost series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostPoint {
    /// First instant of the bucket (hour, day, or Monday of the ISO week), UTC.
    pub bucket_start: DateTime<Utc>,
    /// The customer.
    pub customer_id: String,
    /// The model.
    pub model: String,
    /// `llm_usage` events.
    pub llm_events: u64,
    /// Uncached input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Prompt-cache read tokens.
    pub cache_read_tokens: u64,
    /// Prompt-cache write tokens.
    pub cache_write_tokens: u64,
    /// Cost, US cents.
    pub cost_cents: f64,
}

/// A customer's usage over the cost window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerCost {
    /// The customer.
    pub customer_id: String,
    /// `llm_usage` events.
    pub llm_events: u64,
    /// Uncached input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Prompt-cache read tokens.
    pub cache_read_tokens: u64,
    /// Prompt-cache write tokens.
    pub cache_write_tokens: u64,
    /// Cost, US cents.
    pub cost_cents: f64,
}

/// A model's usage over the cost window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCost {
    /// The model.
    pub model: String,
    /// `llm_usage` events.
    pub llm_events: u64,
    /// Uncached input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Prompt-cache read tokens.
    pub cache_read_tokens: u64,
    /// Prompt-cache write tokens.
    pub cache_write_tokens: u64,
    /// Cost, US cents.
    pub cost_cents: f64,
}

/// `GET /v1/dashboard/sessions?customer_id=&agent_id=&status=&limit=&cursor=`: runs, newest
/// first (by their first event's time), one page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionsResponse {
    /// The customer asked for; `null`: every customer.
    pub customer_id: Option<String>,
    /// First instant of the runs' first events (`window`/`since`); `null`: no lower bound.
    pub since: Option<DateTime<Utc>>,
    /// Upper bound (exclusive) of the runs' first events.
    pub until: DateTime<Utc>,
    /// This page's runs, newest first.
    pub sessions: Vec<RunSummary>,
    /// Pass as `cursor` for the next page; `null`: this is the last page.
    pub next_cursor: Option<String>,
}

/// One run: the events sharing a `run_id` (sessions read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The customer.
    pub customer_id: String,
    /// The run.
    pub run_id: String,
    /// The agent that ran it.
    pub agent_id: String,
    /// Time of its first event.
    pub first_ts: DateTime<Utc>,
    /// Time of its latest event.
    pub last_ts: DateTime<Utc>,
    /// Its `session.start` time (`null`: none stored).
    pub started_at: Option<DateTime<Utc>>,
    /// Its `session.end` time (`null`: none stored).
    pub ended_at: Option<DateTime<Utc>>,
    /// How it ended (`running`: no `session.end` yet).
    pub status: RunStatus,
    /// The wrapper's exit code (`null`: not ended).
    pub exit_code: Option<i64>,
    /// The run's duration as `session.end` reported it, ms (`null`: not ended).
    pub duration_ms: Option<u64>,
    /// Events of every type.
    pub events: u64,
    /// Tool calls.
    pub tool_calls: u64,
    /// Tool calls that failed.
    pub tool_failures: u64,
    /// `error` events.
    pub error_events: u64,
    /// `llm_usage` events.
    pub llm_events: u64,
    /// Cost, US cents.
    pub cost_cents: f64,
    /// Usage per model, costliest first.
    pub models: Vec<RunModel>,
}

/// A run's usage of one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunModel {
    /// The model.
    pub model: String,
    /// `llm_usage` events.
    pub llm_events: u64,
    /// Uncached input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Prompt-cache read tokens.
    pub cache_read_tokens: u64,
    /// Prompt-cache write tokens.
    pub cache_write_tokens: u64,
    /// Cost, US cents.
    pub cost_cents: f64,
}

/// `GET /v1/dashboard/errors?window=&customer_id=` (default `24h`): what fails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorsResponse {
    /// The customer asked for; `null`: every customer.
    pub customer_id: Option<String>,
    /// First instant of the window (inclusive).
    pub since: DateTime<Utc>,
    /// End of the window (exclusive).
    pub until: DateTime<Utc>,
    /// `error` events grouped by `kind` and `stack_hash`, most events first.
    pub errors: Vec<ErrorGroup>,
    /// Failed tool calls per tool (tools with at least one failure), most failures first.
    pub tool_failures: Vec<ToolFailures>,
}

/// The `error` events of one `kind` and `stack_hash`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorGroup {
    /// The error's kind.
    pub kind: String,
    /// The stack hash (`null`: the events carried none).
    pub stack_hash: Option<String>,
    /// Events.
    pub events: u64,
    /// Distinct customers that reported it.
    pub customers: u64,
    /// Time of its first event in the window.
    pub first_seen: DateTime<Utc>,
    /// Time of its latest event in the window.
    pub last_seen: DateTime<Utc>,
    /// One example `message_120c` (the least, so the same every time).
    pub example_message: String,
}

/// One tool's failures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolFailures {
    /// The tool.
    pub tool_name: String,
    /// `builtin`, `mcp` or `plugin`; `null` when the emitter did not say.
    pub tool_source: Option<String>,
    /// The MCP server, for MCP tools.
    pub mcp_server: Option<String>,
    /// Calls.
    pub calls: u64,
    /// Calls that failed.
    pub failures: u64,
    /// `failures / calls` (0 to 1).
    pub failure_rate: f64,
}

/// `GET /v1/dashboard/fleet?customer_id=`: every agent's latest heartbeat, stale ones first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetResponse {
    /// The customer asked for; `null`: every customer.
    pub customer_id: Option<String>,
    /// The time ages are measured to (now).
    pub until: DateTime<Utc>,
    /// Seconds without a heartbeat after which an agent is stale (900).
    pub stale_after_s: u64,
    /// Agents that sent a heartbeat: stale first, then by `customer_id`, `agent_id`.
    pub agents: Vec<FleetAgent>,
}

/// One agent's (box's) latest heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetAgent {
    /// The agent.
    pub agent_id: String,
    /// Its customer.
    pub customer_id: String,
    /// When its latest heartbeat was taken.
    pub last_heartbeat: DateTime<Utc>,
    /// Seconds since then (0 when the box's clock is ahead).
    pub age_s: u64,
    /// No heartbeat for 15 minutes or more.
    pub stale: bool,
    /// The host's 1-minute load average.
    pub host_load_1m: f64,
    /// Agent runtimes running on the box (`null`: unknown).
    pub agent_runtime_count: Option<u64>,
    /// Paperclip's uptime, seconds (`null`: unknown).
    pub paperclip_uptime_s: Option<u64>,
    /// Events waiting in the emitter's spool (`null`: not reported).
    pub spool_depth: Option<u64>,
    /// Events the spool has dropped since it was created (`null`: not reported).
    pub spool_dropped: Option<u64>,
    /// Agent versions on the box, `{agent id: version}`.
    pub versions: BTreeMap<String, String>,
}

/// `GET /v1/dashboard/health`: is ingestion keeping up, in plain figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthResponse {
    /// The time the figures were read.
    pub generated_at: DateTime<Utc>,
    /// The database the server stores into.
    pub database: DatabaseBackend,
    /// Start of "the last hour" below: an hour ago, rounded down to the hour.
    pub last_hour_since: DateTime<Utc>,
    /// Events stored since `last_hour_since`.
    pub events_stored_last_hour: u64,
    /// Median delay from an event happening (`ts`) to its being stored, over the events stored
    /// in the last hour, ms (`null`: none stored). A backfill of old events moves it only by
    /// its share of the events.
    pub delay_p50_ms: Option<f64>,
    /// 95th percentile of the same delay, ms (`null`: none stored).
    pub delay_p95_ms: Option<f64>,
    /// Events stored in the last hour that happened more than an hour before (a backfill, or a
    /// box that was offline).
    pub late_events_last_hour: u64,
    /// Events stored, all time.
    pub events_total: u64,
    /// Dead letters (refused events kept for inspection), all time.
    pub dead_letters_total: u64,
    /// Dead letters received in the last 24 hours.
    pub dead_letters_last_24h: u64,
    /// Customers with an event in the last 24 hours.
    pub customers_seen_last_24h: u64,
    /// Agents with an event in the last 24 hours.
    pub agents_seen_last_24h: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engagement_rule() {
        assert_eq!(Engagement::of_runs_last_7d(0), Engagement::None);
        assert_eq!(Engagement::of_runs_last_7d(1), Engagement::Low);
        assert_eq!(Engagement::of_runs_last_7d(6), Engagement::Low);
        assert_eq!(Engagement::of_runs_last_7d(7), Engagement::Medium);
        assert_eq!(Engagement::of_runs_last_7d(69), Engagement::Medium);
        assert_eq!(Engagement::of_runs_last_7d(70), Engagement::High);
    }

    #[test]
    fn enums_use_the_query_spelling() {
        let w: Window = serde_json::from_str("\"90d\"").unwrap();
        assert_eq!(w, Window::Quarter);
        assert_eq!(w.hours(), 2160);
        assert_eq!(
            serde_json::to_string(&CostBucket::Week).unwrap(),
            "\"week\""
        );
        assert_eq!(
            serde_json::to_string(&RunStatus::Timeout).unwrap(),
            "\"timeout\""
        );
        assert_eq!(
            serde_json::to_string(&Engagement::None).unwrap(),
            "\"none\""
        );
    }
}
