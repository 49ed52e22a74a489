//! The dashboard reads behind `/v1/dashboard/*`, all answered from the rollup tables, the run
//! summaries and the latest heartbeats (docs/rollups.md); none reads `events`.
//!
//! A windowed read covers `[since, until)` with day rows for the whole UTC days inside it and
//! hour rows for the hours at its two edges ([`Split`]), so each read is one grain-aware
//! statement whatever the window. Rows are summed over `shard`.
//!
//! Both backends hold the same tables and the statements differ only in placeholders, a few
//! functions ([`Dialect`]) and how times are stored (`TIMESTAMPTZ`, integer unix ms). So each
//! statement is built once here with its bind arguments ([`Arg`]); the `postgres` and `sqlite`
//! halves bind and run it, decoding times as their backend returns them ([`StoredTime`]).
//! A customer filter is a separate statement text, never a catch-all `$1 IS NULL OR …`, so a
//! cached plan always fits its parameters.

mod postgres;
mod sqlite;

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::FromRow;

use super::{DbError, Store, StoredTime};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// `t` rounded down to `unit_ms` (a whole hour or day, UTC).
fn floor_to(t: DateTime<Utc>, unit_ms: i64) -> DateTime<Utc> {
    let ms = t.timestamp_millis();
    DateTime::from_timestamp_millis(ms - ms.rem_euclid(unit_ms)).unwrap_or(t)
}

/// `t` rounded up to `unit_ms`.
fn ceil_to(t: DateTime<Utc>, unit_ms: i64) -> DateTime<Utc> {
    let f = floor_to(t, unit_ms);
    if f == t {
        t
    } else {
        f + TimeDelta::milliseconds(unit_ms)
    }
}

/// `t` rounded down to the UTC hour.
pub(crate) fn floor_hour(t: DateTime<Utc>) -> DateTime<Utc> {
    floor_to(t, HOUR_MS)
}

/// `t` rounded up to the UTC hour.
pub(crate) fn ceil_hour(t: DateTime<Utc>) -> DateTime<Utc> {
    ceil_to(t, HOUR_MS)
}

/// A read's range `[since, until)`: `since` on an hour boundary, `until` on one or "now" (the
/// current hour's rows then count as far as they go).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) since: DateTime<Utc>,
    pub(crate) until: DateTime<Utc>,
}

/// The rollup rows that cover a [`Span`] exactly: hour rows `head`, day rows `days`, hour rows
/// `tail`, each a half-open range of `bucket_start` (an unused one is empty, start = end).
///
/// The day rows are those of the whole UTC days inside the span; the hours before the first
/// and from the last such day are read from hour rows. A span within one day (or two partial
/// days) is all hour rows. The one helper every windowed read uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Split {
    head: (DateTime<Utc>, DateTime<Utc>),
    days: (DateTime<Utc>, DateTime<Utc>),
    tail: (DateTime<Utc>, DateTime<Utc>),
}

impl Split {
    /// Day rows inside, hour rows at the edges.
    pub(crate) fn of(span: Span) -> Self {
        let Span { since, until } = span;
        let first_day = ceil_to(since, DAY_MS);
        let end_day = floor_to(until, DAY_MS);
        if first_day < end_day {
            Split {
                head: (since, first_day),
                days: (first_day, end_day),
                tail: (end_day, until),
            }
        } else {
            Self::hours_only(span)
        }
    }

    /// Hour rows only (an hourly series).
    pub(crate) fn hours_only(span: Span) -> Self {
        Split {
            head: (span.since, span.until),
            days: (span.until, span.until),
            tail: (span.until, span.until),
        }
    }

    /// The SQL condition selecting these rows of the table aliased `t`.
    fn sql(&self, t: &str, args: &mut Args) -> String {
        let mut range = |grain: &str, (lo, hi): (DateTime<Utc>, DateTime<Utc>)| {
            format!(
                "({t}.grain = '{grain}' AND {t}.bucket_start >= {} AND {t}.bucket_start < {})",
                args.push(Arg::Time(lo)),
                args.push(Arg::Time(hi)),
            )
        };
        let head = range("h", self.head);
        let days = range("d", self.days);
        let tail = range("h", self.tail);
        format!("({head} OR {days} OR {tail})")
    }
}

/// The range of a read of `rollup_agents`: a [`Span`], or all time (grain `a`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Range {
    /// All time.
    All,
    /// The span's rows.
    Span(Span),
}

impl Range {
    fn sql(&self, t: &str, args: &mut Args) -> String {
        match self {
            Range::All => format!("{t}.grain = 'a'"),
            Range::Span(span) => Split::of(*span).sql(t, args),
        }
    }
}

/// The SQL spelling of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    /// The summed money of `expr`: 0 over no rows, a double either way.
    fn money_sum(self, expr: &str) -> String {
        match self {
            Dialect::Postgres => format!("CAST(COALESCE(SUM({expr}), 0) AS DOUBLE PRECISION)"),
            // TOTAL: a double, 0.0 over no rows, and it never fails on overflow.
            Dialect::Sqlite => format!("TOTAL({expr})"),
        }
    }

    /// The first instant of the UTC day or ISO week (Monday) of the time column `col`.
    fn truncate(self, col: &str, unit: Trunc) -> String {
        match (self, unit) {
            (_, Trunc::Hour) => col.to_owned(),
            (Dialect::Postgres, Trunc::Day) => {
                format!("(date_trunc('day', {col} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')")
            }
            (Dialect::Postgres, Trunc::Week) => {
                format!("(date_trunc('week', {col} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')")
            }
            (Dialect::Sqlite, Trunc::Day) => format!("({col} - {col} % {DAY_MS})"),
            // Day 0 (1970-01-01) was a Thursday: a day's distance from its Monday is
            // (day + 3) mod 7.
            (Dialect::Sqlite, Trunc::Week) => {
                format!("({col} - {col} % {DAY_MS} - (({col} / {DAY_MS} + 3) % 7) * {DAY_MS})")
            }
        }
    }
}

/// The unit a time series is cut into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trunc {
    Hour,
    Day,
    Week,
}

/// One bind argument of a statement built here.
#[derive(Debug, Clone, PartialEq)]
enum Arg {
    Text(String),
    Time(DateTime<Utc>),
    Int(i64),
}

/// A statement's arguments, handing out the placeholder of each as it is pushed.
#[derive(Debug)]
struct Args {
    dialect: Dialect,
    list: Vec<Arg>,
}

impl Args {
    fn new(dialect: Dialect) -> Self {
        Args {
            dialect,
            list: Vec::new(),
        }
    }

    /// Adds `arg` and returns its placeholder (`$n` or `?n`).
    fn push(&mut self, arg: Arg) -> String {
        self.list.push(arg);
        let n = self.list.len();
        match self.dialect {
            Dialect::Postgres => format!("${n}"),
            Dialect::Sqlite => format!("?{n}"),
        }
    }

    fn text(&mut self, s: &str) -> String {
        self.push(Arg::Text(s.to_owned()))
    }
}

/// A statement and its arguments.
#[derive(Debug)]
struct Stmt {
    sql: String,
    args: Vec<Arg>,
}

impl Store {
    fn dialect(&self) -> Dialect {
        match self {
            Store::Postgres(_) => Dialect::Postgres,
            Store::Sqlite(_) => Dialect::Sqlite,
        }
    }
}

/// Runs `$stmt` on the store's backend and decodes each row as `$row<T>` (`T` the backend's
/// stored time), converted `Into` the caller's row type.
macro_rules! fetch {
    ($store:expr, $stmt:expr, $row:ident) => {
        match $store {
            Store::Postgres(pool) => postgres::fetch::<$row<DateTime<Utc>>>(pool, $stmt)
                .await
                .map(|rows| rows.into_iter().map(Into::into).collect::<Vec<_>>()),
            Store::Sqlite(pool) => sqlite::fetch::<$row<i64>>(pool, $stmt)
                .await
                .map(|rows| rows.into_iter().map(Into::into).collect::<Vec<_>>()),
        }
    };
}

/// The activity sums of `rollup_agents` rows (aliased `r`), as columns.
const AGENT_SUMS: &str = "CAST(SUM(r.events) AS BIGINT) AS events, \
     CAST(SUM(r.runs) AS BIGINT) AS runs, \
     CAST(SUM(r.runs_failed) AS BIGINT) AS runs_failed, \
     CAST(SUM(r.runs_timed_out) AS BIGINT) AS runs_timed_out, \
     CAST(SUM(r.tool_calls) AS BIGINT) AS tool_calls, \
     CAST(SUM(r.tool_failures) AS BIGINT) AS tool_failures, \
     CAST(SUM(r.error_events) AS BIGINT) AS error_events, \
     CAST(SUM(r.llm_events) AS BIGINT) AS llm_events";

/// The same sums read from the subquery `s`, 0 where it has no row.
const AGENT_SUMS_OUTER: &str = "COALESCE(s.events, 0) AS events, \
     COALESCE(s.runs, 0) AS runs, \
     COALESCE(s.runs_failed, 0) AS runs_failed, \
     COALESCE(s.runs_timed_out, 0) AS runs_timed_out, \
     COALESCE(s.tool_calls, 0) AS tool_calls, \
     COALESCE(s.tool_failures, 0) AS tool_failures, \
     COALESCE(s.error_events, 0) AS error_events, \
     COALESCE(s.llm_events, 0) AS llm_events, \
     COALESCE(s.cost_cents, 0.0) AS cost_cents";

/// Activity counts of a customer or an agent over a range (from `rollup_agents`).
#[derive(Debug, Clone, Copy, PartialEq, Default, FromRow)]
pub(crate) struct Activity {
    pub(crate) events: i64,
    pub(crate) runs: i64,
    pub(crate) runs_failed: i64,
    pub(crate) runs_timed_out: i64,
    pub(crate) tool_calls: i64,
    pub(crate) tool_failures: i64,
    pub(crate) error_events: i64,
    pub(crate) llm_events: i64,
    pub(crate) cost_cents: f64,
}

/// A customer's activity over a range (overview and customers reads).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CustomerActivityRow {
    pub(crate) customer_id: String,
    pub(crate) name: String,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) activity: Activity,
    /// Distinct agents with an event in the range.
    pub(crate) agents: i64,
    /// Latest event in the range.
    pub(crate) last_seen_in_range: Option<DateTime<Utc>>,
    /// Latest event ever.
    pub(crate) last_seen: Option<DateTime<Utc>>,
    /// Runs in the engagement span (the last 7 days).
    pub(crate) runs_recent: i64,
}

#[derive(FromRow)]
struct CustomerActivityDbRow<T> {
    customer_id: String,
    name: String,
    created_at: T,
    #[sqlx(flatten)]
    activity: Activity,
    agents: i64,
    last_seen_in_range: Option<T>,
    last_seen: Option<T>,
    runs_recent: i64,
}

impl<T: StoredTime> From<CustomerActivityDbRow<T>> for CustomerActivityRow {
    fn from(r: CustomerActivityDbRow<T>) -> Self {
        CustomerActivityRow {
            customer_id: r.customer_id,
            name: r.name,
            created_at: r.created_at.into_utc(),
            activity: r.activity,
            agents: r.agents,
            last_seen_in_range: r.last_seen_in_range.map(T::into_utc),
            last_seen: r.last_seen.map(T::into_utc),
            runs_recent: r.runs_recent,
        }
    }
}

/// An agent's activity over a range (agents read).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AgentActivityRow {
    pub(crate) agent_id: String,
    pub(crate) customer_id: String,
    pub(crate) agent_version: Option<String>,
    pub(crate) activity: Activity,
    pub(crate) first_seen: Option<DateTime<Utc>>,
    pub(crate) last_seen: Option<DateTime<Utc>>,
}

#[derive(FromRow)]
struct AgentActivityDbRow<T> {
    agent_id: String,
    customer_id: String,
    agent_version: Option<String>,
    #[sqlx(flatten)]
    activity: Activity,
    first_seen: Option<T>,
    last_seen: Option<T>,
}

impl<T: StoredTime> From<AgentActivityDbRow<T>> for AgentActivityRow {
    fn from(r: AgentActivityDbRow<T>) -> Self {
        AgentActivityRow {
            agent_id: r.agent_id,
            customer_id: r.customer_id,
            agent_version: r.agent_version,
            activity: r.activity,
            first_seen: r.first_seen.map(T::into_utc),
            last_seen: r.last_seen.map(T::into_utc),
        }
    }
}

/// One tool's sums over a window (tools and errors reads).
#[derive(Debug, Clone, PartialEq, FromRow)]
pub(crate) struct ToolRow {
    pub(crate) tool_name: String,
    /// `''` when absent.
    pub(crate) tool_source: String,
    /// `''` when absent.
    pub(crate) mcp_server: String,
    pub(crate) calls: i64,
    pub(crate) failures: i64,
    pub(crate) timed_calls: i64,
    pub(crate) duration_sum_ms: f64,
}

/// One latency bucket of a tool's histogram, summed over a window.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub(crate) struct LatencyRow {
    pub(crate) tool_name: String,
    pub(crate) bucket: i32,
    pub(crate) calls: i64,
}

/// One point of the cost series: usage of a model by a customer in a bucket.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UsageRow {
    pub(crate) bucket_start: DateTime<Utc>,
    pub(crate) customer_id: String,
    pub(crate) model: String,
    pub(crate) usage: Usage,
}

/// Token and cost sums of `llm_usage` events.
#[derive(Debug, Clone, Copy, PartialEq, Default, FromRow)]
pub(crate) struct Usage {
    pub(crate) llm_events: i64,
    pub(crate) input_tokens: i64,
    pub(crate) output_tokens: i64,
    pub(crate) cache_read_tokens: i64,
    pub(crate) cache_write_tokens: i64,
    pub(crate) cost_cents: f64,
}

#[derive(FromRow)]
struct UsageDbRow<T> {
    bucket_start: T,
    customer_id: String,
    model: String,
    #[sqlx(flatten)]
    usage: Usage,
}

impl<T: StoredTime> From<UsageDbRow<T>> for UsageRow {
    fn from(r: UsageDbRow<T>) -> Self {
        UsageRow {
            bucket_start: r.bucket_start.into_utc(),
            customer_id: r.customer_id,
            model: r.model,
            usage: r.usage,
        }
    }
}

/// A run's status filter (sessions read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatusFilter {
    /// `status` is this stored value.
    Ended(&'static str),
    /// A `session.start` and no `session.end` yet.
    Running,
    /// Neither a `session.start` nor a `session.end` (hook events only).
    Unknown,
}

/// What the sessions read selects.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RunQuery {
    pub(crate) customer_id: Option<String>,
    pub(crate) agent_id: Option<String>,
    pub(crate) status: Option<StatusFilter>,
    pub(crate) since: Option<DateTime<Utc>>,
    pub(crate) until: DateTime<Utc>,
    /// Runs strictly after this key in the order (newest first): (first_ts, customer, run).
    pub(crate) after: Option<(DateTime<Utc>, String, String)>,
    /// Runs to return.
    pub(crate) limit: i64,
}

/// One run with its models (sessions read).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RunRow {
    pub(crate) customer_id: String,
    pub(crate) run_id: String,
    pub(crate) agent_id: String,
    pub(crate) first_ts: DateTime<Utc>,
    pub(crate) last_ts: DateTime<Utc>,
    pub(crate) started_at: Option<DateTime<Utc>>,
    pub(crate) ended_at: Option<DateTime<Utc>>,
    pub(crate) status: Option<String>,
    pub(crate) exit_code: Option<i64>,
    pub(crate) duration_ms: Option<i64>,
    pub(crate) events: i64,
    pub(crate) tool_calls: i64,
    pub(crate) tool_failures: i64,
    pub(crate) error_events: i64,
    pub(crate) llm_events: i64,
    pub(crate) cost_cents: f64,
    /// (model, usage), costliest first.
    pub(crate) models: Vec<(String, Usage)>,
}

/// A run joined with one of its models (or none).
#[derive(FromRow)]
struct RunDbRow<T> {
    customer_id: String,
    run_id: String,
    agent_id: String,
    first_ts: T,
    last_ts: T,
    started_at: Option<T>,
    ended_at: Option<T>,
    status: Option<String>,
    exit_code: Option<i64>,
    duration_ms: Option<i64>,
    events: i64,
    tool_calls: i64,
    tool_failures: i64,
    error_events: i64,
    llm_events: i64,
    cost_cents: f64,
    model: Option<String>,
    m_llm_events: Option<i64>,
    m_input_tokens: Option<i64>,
    m_output_tokens: Option<i64>,
    m_cache_read_tokens: Option<i64>,
    m_cache_write_tokens: Option<i64>,
    m_cost_cents: Option<f64>,
}

impl<T: StoredTime> From<RunDbRow<T>> for RunRow {
    fn from(r: RunDbRow<T>) -> Self {
        let models = r
            .model
            .map(|m| {
                (
                    m,
                    Usage {
                        llm_events: r.m_llm_events.unwrap_or(0),
                        input_tokens: r.m_input_tokens.unwrap_or(0),
                        output_tokens: r.m_output_tokens.unwrap_or(0),
                        cache_read_tokens: r.m_cache_read_tokens.unwrap_or(0),
                        cache_write_tokens: r.m_cache_write_tokens.unwrap_or(0),
                        cost_cents: r.m_cost_cents.unwrap_or(0.0),
                    },
                )
            })
            .into_iter()
            .collect();
        RunRow {
            customer_id: r.customer_id,
            run_id: r.run_id,
            agent_id: r.agent_id,
            first_ts: r.first_ts.into_utc(),
            last_ts: r.last_ts.into_utc(),
            started_at: r.started_at.map(T::into_utc),
            ended_at: r.ended_at.map(T::into_utc),
            status: r.status,
            exit_code: r.exit_code,
            duration_ms: r.duration_ms,
            events: r.events,
            tool_calls: r.tool_calls,
            tool_failures: r.tool_failures,
            error_events: r.error_events,
            llm_events: r.llm_events,
            cost_cents: r.cost_cents,
            models,
        }
    }
}

/// Error events of one kind and stack hash over a window (errors read).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ErrorGroupRow {
    pub(crate) kind: String,
    /// `''` when absent.
    pub(crate) stack_hash: String,
    pub(crate) events: i64,
    pub(crate) customers: i64,
    pub(crate) first_seen: DateTime<Utc>,
    pub(crate) last_seen: DateTime<Utc>,
    pub(crate) example_message: String,
}

#[derive(FromRow)]
struct ErrorGroupDbRow<T> {
    kind: String,
    stack_hash: String,
    events: i64,
    customers: i64,
    first_seen: T,
    last_seen: T,
    example_message: String,
}

impl<T: StoredTime> From<ErrorGroupDbRow<T>> for ErrorGroupRow {
    fn from(r: ErrorGroupDbRow<T>) -> Self {
        ErrorGroupRow {
            kind: r.kind,
            stack_hash: r.stack_hash,
            events: r.events,
            customers: r.customers,
            first_seen: r.first_seen.into_utc(),
            last_seen: r.last_seen.into_utc(),
            example_message: r.example_message,
        }
    }
}

/// An agent's latest heartbeat (fleet read).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HeartbeatRow {
    pub(crate) agent_id: String,
    pub(crate) customer_id: String,
    pub(crate) ts: DateTime<Utc>,
    pub(crate) paperclip_uptime_s: Option<i64>,
    pub(crate) agent_runtime_count: Option<i64>,
    pub(crate) host_load_1m: f64,
    pub(crate) spool_depth: Option<i64>,
    pub(crate) spool_dropped: Option<i64>,
    /// The payload's `agent_versions` object, as JSON text.
    pub(crate) agent_versions: String,
}

#[derive(FromRow)]
struct HeartbeatDbRow<T> {
    agent_id: String,
    customer_id: String,
    ts: T,
    paperclip_uptime_s: Option<i64>,
    agent_runtime_count: Option<i64>,
    host_load_1m: f64,
    spool_depth: Option<i64>,
    spool_dropped: Option<i64>,
    agent_versions: String,
}

impl<T: StoredTime> From<HeartbeatDbRow<T>> for HeartbeatRow {
    fn from(r: HeartbeatDbRow<T>) -> Self {
        HeartbeatRow {
            agent_id: r.agent_id,
            customer_id: r.customer_id,
            ts: r.ts.into_utc(),
            paperclip_uptime_s: r.paperclip_uptime_s,
            agent_runtime_count: r.agent_runtime_count,
            host_load_1m: r.host_load_1m,
            spool_depth: r.spool_depth,
            spool_dropped: r.spool_dropped,
            agent_versions: r.agent_versions,
        }
    }
}

/// Ingestion health figures (health read).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HealthRow {
    /// The lag histogram of the events stored since the hour asked: (lag bucket, events).
    pub(crate) lag: Vec<(i32, i64)>,
    pub(crate) events_total: i64,
    pub(crate) dead_letters_total: i64,
    pub(crate) dead_letters_recent: i64,
    pub(crate) customers_recent: i64,
    pub(crate) agents_recent: i64,
}

/// The scalar figures of the health read.
#[derive(FromRow)]
struct HealthDbRow {
    events_total: i64,
    dead_letters_total: i64,
    dead_letters_recent: i64,
    customers_recent: i64,
    agents_recent: i64,
}

/// A lag bucket and its events.
#[derive(FromRow)]
struct LagDbRow {
    lag_bucket: i32,
    events: i64,
}

/// Runs `stmt` on the store's backend, decoding rows that hold no time.
async fn fetch_plain<R>(store: &Store, stmt: &Stmt) -> Result<Vec<R>, DbError>
where
    R: for<'r> FromRow<'r, sqlx::postgres::PgRow>
        + for<'r> FromRow<'r, sqlx::sqlite::SqliteRow>
        + Send
        + Unpin,
{
    match store {
        Store::Postgres(pool) => postgres::fetch::<R>(pool, stmt).await,
        Store::Sqlite(pool) => sqlite::fetch::<R>(pool, stmt).await,
    }
}

impl Store {
    /// Every customer's activity over `range`, with its latest event ever and its runs over
    /// `recent` (overview, customers).
    pub(crate) async fn customer_activity(
        &self,
        range: Range,
        recent: Span,
    ) -> Result<Vec<CustomerActivityRow>, DbError> {
        let d = self.dialect();
        let mut args = Args::new(d);
        let range_sql = range.sql("r", &mut args);
        let recent_sql = Split::of(recent).sql("r", &mut args);
        let sql = format!(
            "SELECT c.customer_id, c.name, c.created_at, {AGENT_SUMS_OUTER}, \
               COALESCE(s.agents, 0) AS agents, s.last_seen_in_range, \
               (SELECT MAX(a.last_ts) FROM rollup_agents a \
                 WHERE a.customer_id = c.customer_id AND a.grain = 'a') AS last_seen, \
               COALESCE(w.runs, 0) AS runs_recent \
             FROM customers c \
             LEFT JOIN (SELECT r.customer_id, {AGENT_SUMS}, {cost} AS cost_cents, \
                   COUNT(DISTINCT r.agent_id) AS agents, MAX(r.last_ts) AS last_seen_in_range \
                 FROM rollup_agents r WHERE {range_sql} GROUP BY r.customer_id) s \
               ON s.customer_id = c.customer_id \
             LEFT JOIN (SELECT r.customer_id, CAST(SUM(r.runs) AS BIGINT) AS runs \
                 FROM rollup_agents r WHERE {recent_sql} GROUP BY r.customer_id) w \
               ON w.customer_id = c.customer_id \
             ORDER BY c.customer_id",
            cost = d.money_sum("r.cost_cents"),
        );
        let stmt = Stmt {
            sql,
            args: args.list,
        };
        fetch!(self, &stmt, CustomerActivityDbRow)
    }

    /// Every agent (of `customer_id`, or all) with its activity over `range`.
    pub(crate) async fn agent_activity(
        &self,
        customer_id: Option<&str>,
        range: Range,
    ) -> Result<Vec<AgentActivityRow>, DbError> {
        let d = self.dialect();
        let mut args = Args::new(d);
        let (inner, outer) = match customer_id {
            Some(c) => {
                let p = args.text(c);
                (
                    format!("r.customer_id = {p} AND "),
                    format!("WHERE a.customer_id = {p}"),
                )
            }
            None => (String::new(), String::new()),
        };
        let range_sql = range.sql("r", &mut args);
        let sql = format!(
            "SELECT a.agent_id, a.customer_id, a.agent_version, {AGENT_SUMS_OUTER}, \
               s.first_seen, s.last_seen \
             FROM agents a \
             LEFT JOIN (SELECT r.agent_id, {AGENT_SUMS}, {cost} AS cost_cents, \
                   MIN(r.first_ts) AS first_seen, MAX(r.last_ts) AS last_seen \
                 FROM rollup_agents r WHERE {inner}{range_sql} GROUP BY r.agent_id) s \
               ON s.agent_id = a.agent_id \
             {outer} \
             ORDER BY a.customer_id, a.agent_id",
            cost = d.money_sum("r.cost_cents"),
        );
        let stmt = Stmt {
            sql,
            args: args.list,
        };
        fetch!(self, &stmt, AgentActivityDbRow)
    }

    /// Per tool over `span`: calls, failures, timed calls and their duration sum, of
    /// `customer_id` or the fleet level (`''`).
    pub(crate) async fn tool_sums(
        &self,
        customer_id: Option<&str>,
        span: Span,
        only_failing: bool,
    ) -> Result<Vec<ToolRow>, DbError> {
        let d = self.dialect();
        let mut args = Args::new(d);
        let c = args.text(customer_id.unwrap_or(""));
        let range_sql = Split::of(span).sql("t", &mut args);
        let having = if only_failing {
            "HAVING SUM(t.failures) > 0 ORDER BY failures DESC, calls DESC"
        } else {
            "ORDER BY calls DESC"
        };
        let sql = format!(
            "SELECT t.tool_name, t.tool_source, t.mcp_server, \
               CAST(SUM(t.calls) AS BIGINT) AS calls, \
               CAST(SUM(t.failures) AS BIGINT) AS failures, \
               CAST(SUM(t.timed_calls) AS BIGINT) AS timed_calls, \
               {dur} AS duration_sum_ms \
             FROM rollup_tools t WHERE t.customer_id = {c} AND {range_sql} \
             GROUP BY t.tool_name, t.tool_source, t.mcp_server \
             {having}, t.tool_name, t.tool_source, t.mcp_server",
            dur = d.money_sum("t.duration_sum_ms"),
        );
        let stmt = Stmt {
            sql,
            args: args.list,
        };
        fetch_plain(self, &stmt).await
    }

    /// Per tool and latency bucket over `span`: timed calls, of `customer_id` or the fleet.
    /// The histogram is summed in SQL: one row per non-empty bucket of each tool.
    pub(crate) async fn tool_latency(
        &self,
        customer_id: Option<&str>,
        span: Span,
    ) -> Result<Vec<LatencyRow>, DbError> {
        let d = self.dialect();
        let mut args = Args::new(d);
        let c = args.text(customer_id.unwrap_or(""));
        let range_sql = Split::of(span).sql("t", &mut args);
        let sql = format!(
            "SELECT t.tool_name, t.bucket, CAST(SUM(t.calls) AS BIGINT) AS calls \
             FROM rollup_tool_latency t WHERE t.customer_id = {c} AND {range_sql} \
             GROUP BY t.tool_name, t.bucket ORDER BY t.tool_name, t.bucket"
        );
        let stmt = Stmt {
            sql,
            args: args.list,
        };
        fetch_plain(self, &stmt).await
    }

    /// Usage per (bucket of `unit`, customer, model) over `span`, of `customer_id` or all;
    /// by bucket, customer, model. An hourly series reads hour rows only.
    pub(crate) async fn usage_series(
        &self,
        customer_id: Option<&str>,
        span: Span,
        unit: Trunc,
    ) -> Result<Vec<UsageRow>, DbError> {
        let d = self.dialect();
        let mut args = Args::new(d);
        let filter = match customer_id {
            Some(c) => format!("u.customer_id = {} AND ", args.text(c)),
            None => String::new(),
        };
        let split = match unit {
            Trunc::Hour => Split::hours_only(span),
            Trunc::Day | Trunc::Week => Split::of(span),
        };
        let range_sql = split.sql("u", &mut args);
        let key = d.truncate("u.bucket_start", unit);
        let sql = format!(
            "SELECT {key} AS bucket_start, u.customer_id, u.model, \
               CAST(SUM(u.llm_events) AS BIGINT) AS llm_events, \
               CAST(SUM(u.input_tokens) AS BIGINT) AS input_tokens, \
               CAST(SUM(u.output_tokens) AS BIGINT) AS output_tokens, \
               CAST(SUM(u.cache_read_tokens) AS BIGINT) AS cache_read_tokens, \
               CAST(SUM(u.cache_write_tokens) AS BIGINT) AS cache_write_tokens, \
               {cost} AS cost_cents \
             FROM rollup_usage u WHERE {filter}{range_sql} \
             GROUP BY 1, u.customer_id, u.model ORDER BY 1, u.customer_id, u.model",
            cost = d.money_sum("u.cost_cents"),
        );
        let stmt = Stmt {
            sql,
            args: args.list,
        };
        fetch!(self, &stmt, UsageDbRow)
    }

    /// One page of runs, newest first by (first_ts, customer_id, run_id), each with its
    /// models. At most `q.limit` runs.
    pub(crate) async fn runs(&self, q: &RunQuery) -> Result<Vec<RunRow>, DbError> {
        let d = self.dialect();
        let mut args = Args::new(d);
        let mut conds: Vec<String> = Vec::new();
        if let Some(c) = &q.customer_id {
            conds.push(format!("customer_id = {}", args.text(c)));
        }
        if let Some(a) = &q.agent_id {
            conds.push(format!("agent_id = {}", args.text(a)));
        }
        match q.status {
            Some(StatusFilter::Ended(s)) => conds.push(format!("status = {}", args.text(s))),
            Some(StatusFilter::Running) => {
                conds.push("status IS NULL AND started_at IS NOT NULL".to_owned());
            }
            Some(StatusFilter::Unknown) => {
                conds.push("status IS NULL AND started_at IS NULL".to_owned());
            }
            None => {}
        }
        if let Some(since) = q.since {
            conds.push(format!("first_ts >= {}", args.push(Arg::Time(since))));
        }
        conds.push(format!("first_ts < {}", args.push(Arg::Time(q.until))));
        // With one customer, its index (customer_id, first_ts, run_id) gives the order.
        let order = if q.customer_id.is_some() {
            "first_ts DESC, run_id DESC"
        } else {
            "first_ts DESC, customer_id DESC, run_id DESC"
        };
        if let Some((ts, c, r)) = &q.after {
            let ts = args.push(Arg::Time(*ts));
            let r = args.text(r);
            if q.customer_id.is_some() {
                conds.push(format!("(first_ts, run_id) < ({ts}, {r})"));
            } else {
                let c = args.text(c);
                conds.push(format!(
                    "(first_ts, customer_id, run_id) < ({ts}, {c}, {r})"
                ));
            }
        }
        let limit = args.push(Arg::Int(q.limit));
        let sql = format!(
            "SELECT p.*, m.model, m.llm_events AS m_llm_events, m.input_tokens AS m_input_tokens, \
               m.output_tokens AS m_output_tokens, m.cache_read_tokens AS m_cache_read_tokens, \
               m.cache_write_tokens AS m_cache_write_tokens, m.cost_cents AS m_cost_cents \
             FROM (SELECT customer_id, run_id, agent_id, first_ts, last_ts, started_at, ended_at, \
                   status, exit_code, duration_ms, events, tool_calls, tool_failures, \
                   error_events, llm_events, cost_cents \
                 FROM runs WHERE {conds} ORDER BY {order} LIMIT {limit}) p \
             LEFT JOIN run_models m ON m.customer_id = p.customer_id AND m.run_id = p.run_id \
             ORDER BY p.first_ts DESC, p.customer_id DESC, p.run_id DESC, \
               m.cost_cents DESC, m.model",
            conds = conds.join(" AND "),
        );
        let stmt = Stmt {
            sql,
            args: args.list,
        };
        let rows: Vec<RunRow> = fetch!(self, &stmt, RunDbRow)?;
        // One row per (run, model): fold each run's models into it, keeping the order.
        let mut runs: Vec<RunRow> = Vec::new();
        for mut row in rows {
            match runs.last_mut() {
                Some(last) if last.customer_id == row.customer_id && last.run_id == row.run_id => {
                    last.models.append(&mut row.models);
                }
                _ => runs.push(row),
            }
        }
        Ok(runs)
    }

    /// Error events per (kind, stack hash) over `span`, of `customer_id` or all; most first.
    pub(crate) async fn error_groups(
        &self,
        customer_id: Option<&str>,
        span: Span,
    ) -> Result<Vec<ErrorGroupRow>, DbError> {
        let d = self.dialect();
        let mut args = Args::new(d);
        let filter = match customer_id {
            Some(c) => format!("e.customer_id = {} AND ", args.text(c)),
            None => String::new(),
        };
        let range_sql = Split::of(span).sql("e", &mut args);
        let sql = format!(
            "SELECT e.kind, e.stack_hash, CAST(SUM(e.events) AS BIGINT) AS events, \
               COUNT(DISTINCT e.customer_id) AS customers, \
               MIN(e.first_ts) AS first_seen, MAX(e.last_ts) AS last_seen, \
               MIN(e.example_message) AS example_message \
             FROM rollup_errors e WHERE {filter}{range_sql} \
             GROUP BY e.kind, e.stack_hash ORDER BY events DESC, e.kind, e.stack_hash"
        );
        let stmt = Stmt {
            sql,
            args: args.list,
        };
        fetch!(self, &stmt, ErrorGroupDbRow)
    }

    /// The latest heartbeat of every agent (of `customer_id`, or all).
    pub(crate) async fn heartbeats(
        &self,
        customer_id: Option<&str>,
    ) -> Result<Vec<HeartbeatRow>, DbError> {
        let mut args = Args::new(self.dialect());
        let filter = match customer_id {
            Some(c) => format!("WHERE customer_id = {}", args.text(c)),
            None => String::new(),
        };
        let sql = format!(
            "SELECT agent_id, customer_id, ts, paperclip_uptime_s, agent_runtime_count, \
               host_load_1m, spool_depth, spool_dropped, agent_versions \
             FROM agent_heartbeats {filter} ORDER BY customer_id, agent_id"
        );
        let stmt = Stmt {
            sql,
            args: args.list,
        };
        fetch!(self, &stmt, HeartbeatDbRow)
    }

    /// Ingestion health: the lag histogram of the events stored from `stored_since` (an hour
    /// boundary), events stored ever, dead letters (all, and received from `recent`), and
    /// customers and agents with an event in the hour rows from `recent_hours`.
    pub(crate) async fn health(
        &self,
        stored_since: DateTime<Utc>,
        recent: DateTime<Utc>,
        recent_hours: DateTime<Utc>,
    ) -> Result<HealthRow, DbError> {
        let mut args = Args::new(self.dialect());
        let since = args.push(Arg::Time(stored_since));
        let lag = Stmt {
            sql: format!(
                "SELECT lag_bucket, CAST(SUM(events) AS BIGINT) AS events FROM rollup_ingest \
                 WHERE bucket_start >= {since} GROUP BY lag_bucket ORDER BY lag_bucket"
            ),
            args: args.list,
        };
        let lag: Vec<LagDbRow> = fetch_plain(self, &lag).await?;
        let mut args = Args::new(self.dialect());
        let recent = args.push(Arg::Time(recent));
        let recent_hours = args.push(Arg::Time(recent_hours));
        let figures = Stmt {
            sql: format!(
                "SELECT \
                   (SELECT CAST(COALESCE(SUM(events), 0) AS BIGINT) FROM rollup_agents \
                     WHERE grain = 'a') AS events_total, \
                   (SELECT COUNT(*) FROM dead_letters) AS dead_letters_total, \
                   (SELECT COUNT(*) FROM dead_letters WHERE received_at >= {recent}) \
                     AS dead_letters_recent, \
                   (SELECT COUNT(DISTINCT customer_id) FROM rollup_agents \
                     WHERE grain = 'h' AND bucket_start >= {recent_hours}) AS customers_recent, \
                   (SELECT COUNT(DISTINCT agent_id) FROM rollup_agents \
                     WHERE grain = 'h' AND bucket_start >= {recent_hours}) AS agents_recent"
            ),
            args: args.list,
        };
        let f: Vec<HealthDbRow> = fetch_plain(self, &figures).await?;
        let f = f
            .into_iter()
            .next()
            .ok_or(DbError::NotFound("health figures"))?;
        Ok(HealthRow {
            lag: lag.into_iter().map(|r| (r.lag_bucket, r.events)).collect(),
            events_total: f.events_total,
            dead_letters_total: f.dead_letters_total,
            dead_letters_recent: f.dead_letters_recent,
            customers_recent: f.customers_recent,
            agents_recent: f.agents_recent,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn days_inside_hours_at_the_edges() {
        let span = Span {
            since: at("2026-11-28T13:00:00Z"),
            until: at("2026-12-02T11:40:00Z"),
        };
        assert_eq!(
            Split::of(span),
            Split {
                head: (at("2026-11-28T13:00:00Z"), at("2026-11-29T00:00:00Z")),
                days: (at("2026-11-29T00:00:00Z"), at("2026-12-02T00:00:00Z")),
                tail: (at("2026-12-02T00:00:00Z"), at("2026-12-02T11:40:00Z")),
            }
        );
        // Aligned on days: no hour rows at all (empty edges).
        let span = Span {
            since: at("2026-11-28T00:00:00Z"),
            until: at("2026-11-30T00:00:00Z"),
        };
        let s = Split::of(span);
        assert_eq!(s.days, (span.since, span.until));
        assert_eq!(s.head.0, s.head.1);
        assert_eq!(s.tail.0, s.tail.1);
        // Within a day, or across one midnight without a whole day: hours only.
        for (since, until) in [
            ("2026-12-02T01:00:00Z", "2026-12-02T11:40:00Z"),
            ("2026-12-01T13:00:00Z", "2026-12-02T11:40:00Z"),
        ] {
            let span = Span {
                since: at(since),
                until: at(until),
            };
            assert_eq!(Split::of(span), Split::hours_only(span));
        }
    }

    #[test]
    fn placeholders_follow_the_dialect() {
        let span = Span {
            since: at("2026-11-28T13:00:00Z"),
            until: at("2026-12-02T11:40:00Z"),
        };
        let mut pg = Args::new(Dialect::Postgres);
        pg.text("acme");
        let sql = Split::of(span).sql("r", &mut pg);
        assert!(
            sql.contains("r.bucket_start >= $2") && sql.contains("< $7"),
            "{sql}"
        );
        let mut lite = Args::new(Dialect::Sqlite);
        assert!(Split::of(span).sql("r", &mut lite).contains("?6"));
        assert_eq!(lite.list.len(), 6);
    }
}
