//! The SQLite statements of the retention (times as unix milliseconds, a file lock).

use chrono::{DateTime, Utc};
use sqlx::SqlitePool;

use super::PruneLock;
use crate::db::{DbError, from_ms};

/// The prune lock (`<database>.prune.lock`) when no other process holds it.
pub(super) async fn try_lock(pool: &SqlitePool) -> Result<Option<PruneLock>, DbError> {
    let db = pool.connect_options().get_filename().to_owned();
    let name = db.to_string_lossy();
    if name.is_empty() || name == ":memory:" || name.starts_with("file:sqlx-in-memory-") {
        return Ok(Some(PruneLock::Sqlite(None)));
    }
    let mut path = db.into_os_string();
    path.push(".prune.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| DbError::Query(sqlx::Error::Io(e)))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(PruneLock::Sqlite(Some(file)))),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(DbError::Query(sqlx::Error::Io(e))),
    }
}

pub(super) async fn set_horizon(pool: &SqlitePool, cutoff: DateTime<Utc>) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE retention_state SET \
           events_pruned_before = max(coalesce(events_pruned_before, ?1), ?1), \
           pruned_at = ?2 WHERE id = 1",
    )
    .bind(cutoff.timestamp_millis())
    .bind(Utc::now().timestamp_millis())
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn prune_events_batch(
    pool: &SqlitePool,
    cutoff: DateTime<Utc>,
    batch: i64,
) -> Result<u64, DbError> {
    let done = sqlx::query(
        "DELETE FROM events WHERE (customer_id, event_id) IN \
           (SELECT customer_id, event_id FROM events WHERE ts < ? LIMIT ?)",
    )
    .bind(cutoff.timestamp_millis())
    .bind(batch)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

pub(super) async fn horizon(pool: &SqlitePool) -> Result<Option<DateTime<Utc>>, DbError> {
    Ok(sqlx::query_scalar::<_, Option<i64>>(
        "SELECT events_pruned_before FROM retention_state WHERE id = 1",
    )
    .fetch_optional(pool)
    .await?
    .flatten()
    .map(from_ms))
}
