//! The SQLite statements of the dashboard reads (times as integer unix milliseconds).

use chrono::{DateTime, Utc};
use sqlx::SqlitePool;

use super::{
    AgentDbRow, AgentSummary, CustomerDbRow, CustomerRow, HealthRow, OverviewDbRow, OverviewRow,
    ToolCallRow,
};
use shared_proto::limits::MAX_COST_CENTS;

use crate::db::{DbError, from_ms};

/// `errors` = `error` events plus failed tool calls (`ok` is false).
const ERRORS: &str = "e.event_type = 'error' OR (e.event_type = 'tool_call' AND json_extract(e.payload, '$.ok') = 0)";

/// The summed cost of the `llm_usage` events in cents, counting only costs within the
/// contract's bound ([`MAX_COST_CENTS`]): rows stored before the bound existed can hold more,
/// and their sum can overflow to a non-finite number that no read may serialize.
fn cost_sum() -> String {
    format!(
        "CAST(COALESCE(SUM(json_extract(e.payload, '$.cost_cents')) \
           FILTER (WHERE e.event_type = 'llm_usage' \
             AND json_extract(e.payload, '$.cost_cents') BETWEEN 0 AND {MAX_COST_CENTS}), 0) AS REAL)"
    )
}

pub(super) async fn overview(
    pool: &SqlitePool,
    since: DateTime<Utc>,
) -> Result<Vec<OverviewRow>, DbError> {
    let sql = format!(
        "SELECT c.customer_id, c.name, \
           COUNT(e.event_id) AS events, \
           COUNT(*) FILTER (WHERE e.event_type = 'session.start') AS sessions, \
           COUNT(*) FILTER (WHERE {ERRORS}) AS errors, \
           {cost} AS cost_cents, \
           COUNT(DISTINCT e.agent_id) AS agents, \
           (SELECT MAX(a.last_seen_at) FROM agents a WHERE a.customer_id = c.customer_id) AS last_seen \
         FROM customers c LEFT JOIN events e ON e.customer_id = c.customer_id AND e.ts >= ? \
         GROUP BY c.customer_id, c.name ORDER BY c.customer_id",
        cost = cost_sum()
    );
    let rows: Vec<OverviewDbRow<i64>> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(since.timestamp_millis())
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub(super) async fn customers(pool: &SqlitePool) -> Result<Vec<CustomerRow>, DbError> {
    let sql = format!(
        "SELECT c.customer_id, c.name, c.created_at, \
           COUNT(e.event_id) AS events, \
           COUNT(*) FILTER (WHERE e.event_type = 'session.start') AS sessions, \
           COUNT(*) FILTER (WHERE e.event_type = 'tool_call') AS tool_calls, \
           COUNT(*) FILTER (WHERE {ERRORS}) AS errors, \
           {cost} AS cost_cents, \
           (SELECT COUNT(*) FROM agents a WHERE a.customer_id = c.customer_id) AS agents, \
           MAX(e.ts) AS last_seen \
         FROM customers c LEFT JOIN events e ON e.customer_id = c.customer_id \
         GROUP BY c.customer_id, c.name, c.created_at ORDER BY c.customer_id",
        cost = cost_sum()
    );
    let rows: Vec<CustomerDbRow<i64>> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub(super) async fn agents(
    pool: &SqlitePool,
    customer_id: Option<&str>,
) -> Result<Vec<AgentSummary>, DbError> {
    let sql = format!(
        "SELECT a.agent_id, a.customer_id, a.agent_version, a.first_seen_at, a.last_seen_at, \
           COUNT(e.event_id) AS events, \
           COUNT(*) FILTER (WHERE e.event_type = 'session.start') AS sessions, \
           COUNT(*) FILTER (WHERE e.event_type = 'tool_call') AS tool_calls, \
           COUNT(*) FILTER (WHERE {ERRORS}) AS errors, \
           {cost} AS cost_cents \
         FROM agents a LEFT JOIN events e ON e.agent_id = a.agent_id AND e.customer_id = a.customer_id \
         WHERE (?1 IS NULL OR a.customer_id = ?1) \
         GROUP BY a.agent_id ORDER BY a.customer_id, a.agent_id",
        cost = cost_sum()
    );
    let rows: Vec<AgentDbRow<i64>> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(customer_id)
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub(super) async fn tool_calls(
    pool: &SqlitePool,
    since: DateTime<Utc>,
    customer_id: Option<&str>,
) -> Result<Vec<ToolCallRow>, DbError> {
    let rows: Vec<(String, i64, Option<i64>)> = sqlx::query_as(
        "SELECT json_extract(payload, '$.tool_name'), COALESCE(json_extract(payload, '$.ok'), 0), \
           json_extract(payload, '$.duration_ms') \
         FROM events WHERE event_type = 'tool_call' AND ts >= ?1 AND (?2 IS NULL OR customer_id = ?2)",
    )
    .bind(since.timestamp_millis())
    .bind(customer_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(tool_name, ok, duration_ms)| ToolCallRow {
            tool_name,
            ok: ok != 0,
            duration_ms,
        })
        .collect())
}

pub(super) async fn health(pool: &SqlitePool, now: DateTime<Utc>) -> Result<HealthRow, DbError> {
    let hour_ago = (now - chrono::TimeDelta::hours(1)).timestamp_millis();
    let day_ago = (now - chrono::TimeDelta::hours(24)).timestamp_millis();
    let (events_total, events_last_hour, lag_avg_ms, lag_max_ms): (
        i64,
        i64,
        Option<f64>,
        Option<i64>,
    ) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM events), COUNT(*), \
               CAST(AVG(ingested_at - ts) AS REAL), MAX(ingested_at - ts) \
             FROM events WHERE ingested_at >= ?",
    )
    .bind(hour_ago)
    .fetch_one(pool)
    .await?;
    let (dead_letters_total, dead_letters_last_24h): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(*) FILTER (WHERE received_at >= ?) FROM dead_letters",
    )
    .bind(day_ago)
    .fetch_one(pool)
    .await?;
    let most_late: Option<(String, i64, i64)> = sqlx::query_as(
        "SELECT event_id, ts, ingested_at FROM events WHERE ingested_at >= ? \
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
        most_late: most_late.map(|(id, ts, at)| (id, from_ms(ts), from_ms(at))),
    })
}
