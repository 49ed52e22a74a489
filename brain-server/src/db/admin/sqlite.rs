//! The SQLite statements of the admin domain (times as integer unix milliseconds, JSON text).

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{Sqlite, SqlitePool, Transaction};

use super::{AgentRow, AuditEntry, DeadLetter, DeadLetterRow};
use crate::db::{DbError, from_ms};

pub(super) async fn count_events(pool: &SqlitePool) -> Result<i64, DbError> {
    Ok(sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM events")
        .fetch_one(pool)
        .await?)
}

/// Appends an audit entry inside the caller's transaction.
pub(in crate::db) async fn insert_audit(
    tx: &mut Transaction<'_, Sqlite>,
    actor: &str,
    action: &str,
    params: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO audit_log (at, actor, action, params) VALUES (?, ?, ?, ?)")
        .bind(Utc::now().timestamp_millis())
        .bind(actor)
        .bind(action)
        .bind(params.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub(super) async fn dead_letters(
    pool: &SqlitePool,
    customer_id: &str,
    limit: i64,
) -> Result<Vec<DeadLetter>, DbError> {
    let rows: Vec<DeadLetterRow<i64>> = sqlx::query_as(
        "SELECT id, customer_id, received_at, event_id, raw, raw_bytes, truncated, reason, message FROM dead_letters \
         WHERE customer_id = ? ORDER BY id DESC LIMIT ?",
    )
    .bind(customer_id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub(super) async fn agent(pool: &SqlitePool, agent_id: &str) -> Result<Option<AgentRow>, DbError> {
    let row: Option<(String, String, i64, i64, Option<String>)> = sqlx::query_as(
        "SELECT agent_id, customer_id, first_seen_at, last_seen_at, agent_version FROM agents WHERE agent_id = ?",
    )
    .bind(agent_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(
        |(agent_id, customer_id, first, last, agent_version)| AgentRow {
            agent_id,
            customer_id,
            first_seen_at: from_ms(first),
            last_seen_at: from_ms(last),
            agent_version,
        },
    ))
}

pub(super) async fn audit_log(pool: &SqlitePool, limit: i64) -> Result<Vec<AuditEntry>, DbError> {
    let rows: Vec<(i64, i64, String, String, String)> = sqlx::query_as(
        "SELECT id, at, actor, action, params FROM audit_log ORDER BY id DESC LIMIT ?",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, at, actor, action, params)| AuditEntry {
            id,
            at: from_ms(at),
            actor,
            action,
            params: serde_json::from_str(&params).unwrap_or(Value::Null),
        })
        .collect())
}

/// Deletes one batch of dead letters received before `cutoff`; returns how many.
pub(super) async fn prune_dead_letters_batch(
    pool: &SqlitePool,
    cutoff: DateTime<Utc>,
    batch: i64,
) -> Result<u64, DbError> {
    let done = sqlx::query(
        "DELETE FROM dead_letters WHERE id IN \
         (SELECT id FROM dead_letters WHERE received_at < ? LIMIT ?)",
    )
    .bind(cutoff.timestamp_millis())
    .bind(batch)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
