//! The Postgres statements of the dashboard reads.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::{
    AgentDbRow, AgentSummary, CustomerDbRow, CustomerRow, HealthRow, OverviewDbRow, OverviewRow,
    ToolCallRow,
};
use shared_proto::limits::MAX_COST_CENTS;

use crate::db::DbError;

/// The summed cost of the `llm_usage` events in cents, counting only costs within the
/// contract's bound ([`MAX_COST_CENTS`]): rows stored before the bound existed can hold more,
/// and their sum can overflow (an error in Postgres).
fn cost_sum() -> String {
    format!(
        "COALESCE(SUM((e.payload->>'cost_cents')::float8) \
           FILTER (WHERE e.event_type = 'llm_usage' \
             AND (e.payload->>'cost_cents')::float8 BETWEEN 0 AND {MAX_COST_CENTS}), 0)::float8"
    )
}

pub(super) async fn overview(
    pool: &PgPool,
    since: DateTime<Utc>,
) -> Result<Vec<OverviewRow>, DbError> {
    let rows: Vec<OverviewDbRow<DateTime<Utc>>> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT c.customer_id, c.name, \
           COUNT(e.event_id) AS events, \
           COUNT(*) FILTER (WHERE e.event_type = 'session.start') AS sessions, \
           COUNT(*) FILTER (WHERE e.event_type = 'error' \
             OR (e.event_type = 'tool_call' AND e.payload->>'ok' = 'false')) AS errors, \
           {cost} AS cost_cents, \
           COUNT(DISTINCT e.agent_id) AS agents, \
           (SELECT MAX(a.last_seen_at) FROM agents a WHERE a.customer_id = c.customer_id) AS last_seen \
         FROM customers c LEFT JOIN events e ON e.customer_id = c.customer_id AND e.ts >= $1 \
         GROUP BY c.customer_id, c.name ORDER BY c.customer_id",
        cost = cost_sum()
    )))
    .bind(since)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub(super) async fn customers(pool: &PgPool) -> Result<Vec<CustomerRow>, DbError> {
    let rows: Vec<CustomerDbRow<DateTime<Utc>>> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT c.customer_id, c.name, c.created_at, \
           COUNT(e.event_id) AS events, \
           COUNT(*) FILTER (WHERE e.event_type = 'session.start') AS sessions, \
           COUNT(*) FILTER (WHERE e.event_type = 'tool_call') AS tool_calls, \
           COUNT(*) FILTER (WHERE e.event_type = 'error' \
             OR (e.event_type = 'tool_call' AND e.payload->>'ok' = 'false')) AS errors, \
           {cost} AS cost_cents, \
           (SELECT COUNT(*) FROM agents a WHERE a.customer_id = c.customer_id) AS agents, \
           MAX(e.ts) AS last_seen \
         FROM customers c LEFT JOIN events e ON e.customer_id = c.customer_id \
         GROUP BY c.customer_id, c.name, c.created_at ORDER BY c.customer_id",
        cost = cost_sum()
    )))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub(super) async fn agents(
    pool: &PgPool,
    customer_id: Option<&str>,
) -> Result<Vec<AgentSummary>, DbError> {
    let rows: Vec<AgentDbRow<DateTime<Utc>>> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT a.agent_id, a.customer_id, a.agent_version, a.first_seen_at, a.last_seen_at, \
           COUNT(e.event_id) AS events, \
           COUNT(*) FILTER (WHERE e.event_type = 'session.start') AS sessions, \
           COUNT(*) FILTER (WHERE e.event_type = 'tool_call') AS tool_calls, \
           COUNT(*) FILTER (WHERE e.event_type = 'error' \
             OR (e.event_type = 'tool_call' AND e.payload->>'ok' = 'false')) AS errors, \
           {cost} AS cost_cents \
         FROM agents a LEFT JOIN events e ON e.agent_id = a.agent_id AND e.customer_id = a.customer_id \
         WHERE ($1::text IS NULL OR a.customer_id = $1) \
         GROUP BY a.agent_id ORDER BY a.customer_id, a.agent_id",
        cost = cost_sum()
    )))
    .bind(customer_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub(super) async fn tool_calls(
    pool: &PgPool,
    since: DateTime<Utc>,
    customer_id: Option<&str>,
) -> Result<Vec<ToolCallRow>, DbError> {
    let rows: Vec<(String, bool, Option<i64>)> = sqlx::query_as(
        "SELECT payload->>'tool_name', COALESCE((payload->>'ok')::boolean, false), \
           (payload->>'duration_ms')::bigint \
         FROM events WHERE event_type = 'tool_call' AND ts >= $1 \
           AND ($2::text IS NULL OR customer_id = $2)",
    )
    .bind(since)
    .bind(customer_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(tool_name, ok, duration_ms)| ToolCallRow {
            tool_name,
            ok,
            duration_ms,
        })
        .collect())
}

pub(super) async fn health(pool: &PgPool, now: DateTime<Utc>) -> Result<HealthRow, DbError> {
    let hour_ago = now - chrono::TimeDelta::hours(1);
    let day_ago = now - chrono::TimeDelta::hours(24);
    let (events_total, events_last_hour, lag_avg_ms, lag_max_ms): (
        i64,
        i64,
        Option<f64>,
        Option<i64>,
    ) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM events), COUNT(*), \
               AVG(EXTRACT(EPOCH FROM (ingested_at - ts)) * 1000)::float8, \
               MAX(EXTRACT(EPOCH FROM (ingested_at - ts)) * 1000)::bigint \
             FROM events WHERE ingested_at >= $1",
    )
    .bind(hour_ago)
    .fetch_one(pool)
    .await?;
    let (dead_letters_total, dead_letters_last_24h): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(*) FILTER (WHERE received_at >= $1) FROM dead_letters",
    )
    .bind(day_ago)
    .fetch_one(pool)
    .await?;
    let most_late: Option<(Uuid, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT event_id, ts, ingested_at FROM events WHERE ingested_at >= $1 \
         ORDER BY ingested_at - ts DESC LIMIT 1",
    )
    .bind(hour_ago)
    .fetch_optional(pool)
    .await?;
    Ok(HealthRow {
        events_total,
        events_last_hour,
        lag_avg_ms,
        lag_max_ms,
        dead_letters_total,
        dead_letters_last_24h,
        most_late: most_late.map(|(id, ts, at)| (id.to_string(), ts, at)),
    })
}
