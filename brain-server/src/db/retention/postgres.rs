//! The Postgres statements of the retention (`TIMESTAMPTZ` times, a session advisory lock).

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::{PRUNE_LOCK_KEY, PruneLock};
use crate::db::DbError;

/// The prune lock when no other session holds it.
pub(super) async fn try_lock(pool: &PgPool) -> Result<Option<PruneLock>, DbError> {
    let mut conn = pool.acquire().await?;
    conn.close_on_drop();
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(PRUNE_LOCK_KEY)
        .fetch_one(&mut *conn)
        .await?;
    Ok(locked.then_some(PruneLock::Postgres(conn)))
}

/// Releases the lock (closing the connection does too, when this fails).
pub(super) async fn unlock(mut conn: sqlx::pool::PoolConnection<sqlx::Postgres>) {
    if let Err(e) = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(PRUNE_LOCK_KEY)
        .execute(&mut *conn)
        .await
    {
        tracing::warn!(error = %e, "releasing the prune lock failed; closing its connection");
    }
}

pub(super) async fn set_horizon(pool: &PgPool, cutoff: DateTime<Utc>) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE retention_state SET \
           events_pruned_before = GREATEST(COALESCE(events_pruned_before, $1), $1), \
           pruned_at = now() WHERE id = 1",
    )
    .bind(cutoff)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn prune_events_batch(
    pool: &PgPool,
    cutoff: DateTime<Utc>,
    batch: i64,
) -> Result<u64, DbError> {
    let done = sqlx::query(
        "DELETE FROM events WHERE ctid = ANY(ARRAY(\
           SELECT ctid FROM events WHERE ts < $1 LIMIT $2))",
    )
    .bind(cutoff)
    .bind(batch)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

pub(super) async fn horizon(pool: &PgPool) -> Result<Option<DateTime<Utc>>, DbError> {
    Ok(sqlx::query_scalar::<_, Option<DateTime<Utc>>>(
        "SELECT events_pruned_before FROM retention_state WHERE id = 1",
    )
    .fetch_optional(pool)
    .await?
    .flatten())
}
