//! The SQLite statements of the admin domain (times as integer unix milliseconds, JSON text).

/// The columns of a `DeadLetterRow`, in its order (a literal, for `concat!`).
macro_rules! dead_letter_columns {
    () => {
        "id, customer_id, received_at, event_id, raw, raw_bytes, truncated, reason, message, requeued_at, requeued_event_id"
    };
}

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{Sqlite, SqlitePool, Transaction};

use super::{AgentRow, AuditEntry, DeadLetter, DeadLetterFilter, DeadLetterRow};
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
    let rows: Vec<DeadLetterRow<i64>> = sqlx::query_as(concat!(
        "SELECT ",
        dead_letter_columns!(),
        " FROM dead_letters WHERE customer_id = ?1 ORDER BY id DESC LIMIT ?2"
    ))
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

pub(super) async fn audit_log(
    pool: &SqlitePool,
    limit: i64,
    before_id: Option<i64>,
) -> Result<Vec<AuditEntry>, DbError> {
    let rows: Vec<(i64, i64, String, String, String)> = sqlx::query_as(
        "SELECT id, at, actor, action, params FROM audit_log \
         WHERE (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?1",
    )
    .bind(limit)
    .bind(before_id)
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

pub(super) async fn list_dead_letters(
    pool: &SqlitePool,
    f: &DeadLetterFilter,
) -> Result<Vec<DeadLetter>, DbError> {
    let rows: Vec<DeadLetterRow<i64>> = sqlx::query_as(concat!(
        "SELECT ",
        dead_letter_columns!(),
        " FROM dead_letters \
         WHERE (?1 IS NULL OR customer_id = ?1) \
           AND (?2 IS NULL OR reason = ?2) \
           AND (?3 IS NULL OR received_at >= ?3) \
           AND (?4 IS NULL OR received_at < ?4) \
           AND (?5 IS NULL OR id < ?5) \
         ORDER BY id DESC LIMIT ?6"
    ))
    .bind(f.customer_id.as_deref())
    .bind(f.reason.as_deref())
    .bind(f.since.map(|t| t.timestamp_millis()))
    .bind(f.until.map(|t| t.timestamp_millis()))
    .bind(f.before_id)
    .bind(f.limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub(super) async fn dead_letter(pool: &SqlitePool, id: i64) -> Result<Option<DeadLetter>, DbError> {
    let row: Option<DeadLetterRow<i64>> = sqlx::query_as(concat!(
        "SELECT ",
        dead_letter_columns!(),
        " FROM dead_letters WHERE id = ?1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(Into::into))
}

pub(super) async fn mark_requeued(
    pool: &SqlitePool,
    id: i64,
    event_id: &str,
    status: &str,
    now: DateTime<Utc>,
    actor: &str,
) -> Result<Option<DeadLetter>, DbError> {
    let mut tx = pool.begin().await?;
    let row: Option<DeadLetterRow<i64>> = sqlx::query_as(concat!(
        "UPDATE dead_letters SET requeued_at = COALESCE(requeued_at, ?2), \
           requeued_event_id = COALESCE(requeued_event_id, ?3) \
         WHERE id = ?1 RETURNING ",
        dead_letter_columns!(),
        ""
    ))
    .bind(id)
    .bind(now.timestamp_millis())
    .bind(event_id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(r) = &row {
        let params = serde_json::json!({
            "dead_letter_id": id, "customer_id": r.customer_id, "event_id": event_id,
            "reason": r.reason, "status": status,
        });
        insert_audit(&mut tx, actor, "requeue", &params).await?;
    }
    tx.commit().await?;
    Ok(row.map(Into::into))
}
