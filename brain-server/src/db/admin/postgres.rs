//! The Postgres statements of the admin domain (`TIMESTAMPTZ` times, `JSONB` parameters).

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgPool, Postgres, Transaction};

use super::{AgentRow, AuditEntry, DeadLetter, DeadLetterRow};
use crate::db::DbError;

pub(super) async fn count_events(pool: &PgPool) -> Result<i64, DbError> {
    Ok(sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM events")
        .fetch_one(pool)
        .await?)
}

/// Appends an audit entry inside the caller's transaction.
pub(in crate::db) async fn insert_audit(
    tx: &mut Transaction<'_, Postgres>,
    actor: &str,
    action: &str,
    params: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO audit_log (at, actor, action, params) VALUES ($1, $2, $3, $4)")
        .bind(Utc::now())
        .bind(actor)
        .bind(action)
        .bind(sqlx::types::Json(params))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub(super) async fn dead_letters(
    pool: &PgPool,
    customer_id: &str,
    limit: i64,
) -> Result<Vec<DeadLetter>, DbError> {
    let rows: Vec<DeadLetterRow<DateTime<Utc>>> = sqlx::query_as(
        "SELECT id, customer_id, received_at, event_id, raw, raw_bytes, truncated, reason, message FROM dead_letters \
         WHERE customer_id = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(customer_id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// agent_id, customer_id, first_seen_at, last_seen_at, agent_version.
type AgentTuple = (String, String, DateTime<Utc>, DateTime<Utc>, Option<String>);
/// id, at, actor, action, params.
type AuditTuple = (i64, DateTime<Utc>, String, String, sqlx::types::Json<Value>);

pub(super) async fn agent(pool: &PgPool, agent_id: &str) -> Result<Option<AgentRow>, DbError> {
    let row: Option<AgentTuple> = sqlx::query_as(
        "SELECT agent_id, customer_id, first_seen_at, last_seen_at, agent_version FROM agents WHERE agent_id = $1",
    )
    .bind(agent_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(
        |(agent_id, customer_id, first_seen_at, last_seen_at, agent_version)| AgentRow {
            agent_id,
            customer_id,
            first_seen_at,
            last_seen_at,
            agent_version,
        },
    ))
}

pub(super) async fn audit_log(pool: &PgPool, limit: i64) -> Result<Vec<AuditEntry>, DbError> {
    let rows: Vec<AuditTuple> = sqlx::query_as(
        "SELECT id, at, actor, action, params FROM audit_log ORDER BY id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, at, actor, action, params)| AuditEntry {
            id,
            at,
            actor,
            action,
            params: params.0,
        })
        .collect())
}

/// Deletes one batch of dead letters received before `cutoff`; returns how many.
pub(super) async fn prune_dead_letters_batch(
    pool: &PgPool,
    cutoff: DateTime<Utc>,
    batch: i64,
) -> Result<u64, DbError> {
    let done = sqlx::query(
        "DELETE FROM dead_letters WHERE id IN \
         (SELECT id FROM dead_letters WHERE received_at < $1 LIMIT $2)",
    )
    .bind(cutoff)
    .bind(batch)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
