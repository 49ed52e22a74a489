//! The Postgres statements of the admin domain (`TIMESTAMPTZ` times, `JSONB` parameters).

/// The columns of a `DeadLetterRow`, in its order (a literal, for `concat!`).
macro_rules! dead_letter_columns {
    () => {
        "id, customer_id, received_at, event_id, raw, raw_bytes, truncated, reason, message, requeued_at, requeued_event_id"
    };
}

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgPool, Postgres, Transaction};

use super::{AgentRow, AuditEntry, DeadLetter, DeadLetterFilter, DeadLetterRow};
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
    let rows: Vec<DeadLetterRow<DateTime<Utc>>> = sqlx::query_as(concat!(
        "SELECT ",
        dead_letter_columns!(),
        " FROM dead_letters WHERE customer_id = $1 ORDER BY id DESC LIMIT $2"
    ))
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

pub(super) async fn audit_log(
    pool: &PgPool,
    limit: i64,
    before_id: Option<i64>,
) -> Result<Vec<AuditEntry>, DbError> {
    let rows: Vec<AuditTuple> = sqlx::query_as(
        "SELECT id, at, actor, action, params FROM audit_log \
         WHERE ($2::bigint IS NULL OR id < $2) ORDER BY id DESC LIMIT $1",
    )
    .bind(limit)
    .bind(before_id)
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

pub(super) async fn list_dead_letters(
    pool: &PgPool,
    f: &DeadLetterFilter,
) -> Result<Vec<DeadLetter>, DbError> {
    let rows: Vec<DeadLetterRow<DateTime<Utc>>> = sqlx::query_as(concat!(
        "SELECT ",
        dead_letter_columns!(),
        " FROM dead_letters \
         WHERE ($1::text IS NULL OR customer_id = $1) \
           AND ($2::text IS NULL OR reason = $2) \
           AND ($3::timestamptz IS NULL OR received_at >= $3) \
           AND ($4::timestamptz IS NULL OR received_at < $4) \
           AND ($5::bigint IS NULL OR id < $5) \
         ORDER BY id DESC LIMIT $6"
    ))
    .bind(f.customer_id.as_deref())
    .bind(f.reason.as_deref())
    .bind(f.since)
    .bind(f.until)
    .bind(f.before_id)
    .bind(f.limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub(super) async fn dead_letter(pool: &PgPool, id: i64) -> Result<Option<DeadLetter>, DbError> {
    let row: Option<DeadLetterRow<DateTime<Utc>>> = sqlx::query_as(concat!(
        "SELECT ",
        dead_letter_columns!(),
        " FROM dead_letters WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(Into::into))
}

pub(super) async fn mark_requeued(
    pool: &PgPool,
    id: i64,
    event_id: &str,
    status: &str,
    now: DateTime<Utc>,
    actor: &str,
) -> Result<Option<DeadLetter>, DbError> {
    let mut tx = pool.begin().await?;
    let row: Option<DeadLetterRow<DateTime<Utc>>> = sqlx::query_as(concat!(
        "UPDATE dead_letters SET requeued_at = COALESCE(requeued_at, $2), \
           requeued_event_id = COALESCE(requeued_event_id, $3) \
         WHERE id = $1 RETURNING ",
        dead_letter_columns!(),
        ""
    ))
    .bind(id)
    .bind(now)
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
