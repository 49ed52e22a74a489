//! The dashboard reads behind `/v1/dashboard/*`: per-customer overview and cumulative
//! figures, per-agent figures, tool calls, ingestion health. They scan `events` today;
//! rollup tables are the next step (SPEC §6).

mod postgres;
mod sqlite;

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::{DbError, Store, StoredTime};

impl Store {
    /// Per customer over `since..`: sessions, errors, cost, agents, events, last seen.
    pub(crate) async fn overview(&self, since: DateTime<Utc>) -> Result<Vec<OverviewRow>, DbError> {
        dispatch!(self, overview(since))
    }

    /// Every customer with cumulative counts.
    pub(crate) async fn customers(&self) -> Result<Vec<CustomerRow>, DbError> {
        dispatch!(self, customers())
    }

    /// Per agent (of one customer, or all) cumulative counts.
    pub(crate) async fn agents(
        &self,
        customer_id: Option<&str>,
    ) -> Result<Vec<AgentSummary>, DbError> {
        dispatch!(self, agents(customer_id))
    }

    /// Every `tool_call` since `since` (of one customer, or all): tool name, ok, duration.
    pub(crate) async fn tool_calls(
        &self,
        since: DateTime<Utc>,
        customer_id: Option<&str>,
    ) -> Result<Vec<ToolCallRow>, DbError> {
        dispatch!(self, tool_calls(since, customer_id))
    }

    /// Ingestion health figures at `now`.
    pub(crate) async fn health(&self, now: DateTime<Utc>) -> Result<HealthRow, DbError> {
        dispatch!(self, health(now))
    }
}

/// Per-customer figures over a window (overview read).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OverviewRow {
    pub(crate) customer_id: String,
    pub(crate) name: String,
    pub(crate) events: i64,
    pub(crate) sessions: i64,
    pub(crate) errors: i64,
    pub(crate) cost_cents: f64,
    pub(crate) agents: i64,
    pub(crate) last_seen: Option<DateTime<Utc>>,
}

/// Per-customer cumulative figures (customers read).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CustomerRow {
    pub(crate) customer_id: String,
    pub(crate) name: String,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) events: i64,
    pub(crate) sessions: i64,
    pub(crate) tool_calls: i64,
    pub(crate) errors: i64,
    pub(crate) cost_cents: f64,
    pub(crate) agents: i64,
    pub(crate) last_seen: Option<DateTime<Utc>>,
}

/// Per-agent cumulative figures (agents read).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AgentSummary {
    pub(crate) agent_id: String,
    pub(crate) customer_id: String,
    pub(crate) agent_version: Option<String>,
    pub(crate) first_seen: DateTime<Utc>,
    pub(crate) last_seen: DateTime<Utc>,
    pub(crate) events: i64,
    pub(crate) sessions: i64,
    pub(crate) tool_calls: i64,
    pub(crate) errors: i64,
    pub(crate) cost_cents: f64,
}

/// One tool call (tools read).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolCallRow {
    pub(crate) tool_name: String,
    pub(crate) ok: bool,
    pub(crate) duration_ms: Option<i64>,
}

/// Ingestion health figures (health read).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HealthRow {
    pub(crate) events_total: i64,
    pub(crate) events_last_hour: i64,
    pub(crate) lag_avg_ms: Option<f64>,
    pub(crate) lag_max_ms: Option<i64>,
    pub(crate) dead_letters_total: i64,
    pub(crate) dead_letters_last_24h: i64,
    /// The event ingested in the last hour with the largest lag: (event_id, ts, ingested_at).
    pub(crate) most_late: Option<(String, DateTime<Utc>, DateTime<Utc>)>,
}

/// A row of the overview query, times as the backend `T` returns them.
#[derive(FromRow)]
struct OverviewDbRow<T> {
    customer_id: String,
    name: String,
    events: i64,
    sessions: i64,
    errors: i64,
    cost_cents: f64,
    agents: i64,
    last_seen: Option<T>,
}

impl<T: StoredTime> From<OverviewDbRow<T>> for OverviewRow {
    fn from(r: OverviewDbRow<T>) -> Self {
        OverviewRow {
            customer_id: r.customer_id,
            name: r.name,
            events: r.events,
            sessions: r.sessions,
            errors: r.errors,
            cost_cents: r.cost_cents,
            agents: r.agents,
            last_seen: r.last_seen.map(T::into_utc),
        }
    }
}

/// A row of the customers query, times as the backend `T` returns them.
#[derive(FromRow)]
struct CustomerDbRow<T> {
    customer_id: String,
    name: String,
    created_at: T,
    events: i64,
    sessions: i64,
    tool_calls: i64,
    errors: i64,
    cost_cents: f64,
    agents: i64,
    last_seen: Option<T>,
}

impl<T: StoredTime> From<CustomerDbRow<T>> for CustomerRow {
    fn from(r: CustomerDbRow<T>) -> Self {
        CustomerRow {
            customer_id: r.customer_id,
            name: r.name,
            created_at: r.created_at.into_utc(),
            events: r.events,
            sessions: r.sessions,
            tool_calls: r.tool_calls,
            errors: r.errors,
            cost_cents: r.cost_cents,
            agents: r.agents,
            last_seen: r.last_seen.map(T::into_utc),
        }
    }
}

/// A row of the agents query, times as the backend `T` returns them.
#[derive(FromRow)]
struct AgentDbRow<T> {
    agent_id: String,
    customer_id: String,
    agent_version: Option<String>,
    first_seen_at: T,
    last_seen_at: T,
    events: i64,
    sessions: i64,
    tool_calls: i64,
    errors: i64,
    cost_cents: f64,
}

impl<T: StoredTime> From<AgentDbRow<T>> for AgentSummary {
    fn from(r: AgentDbRow<T>) -> Self {
        AgentSummary {
            agent_id: r.agent_id,
            customer_id: r.customer_id,
            agent_version: r.agent_version,
            first_seen: r.first_seen_at.into_utc(),
            last_seen: r.last_seen_at.into_utc(),
            events: r.events,
            sessions: r.sessions,
            tool_calls: r.tool_calls,
            errors: r.errors,
            cost_cents: r.cost_cents,
        }
    }
}
