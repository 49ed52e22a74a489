//! Runs the dashboard's statements on SQLite (times as integer unix milliseconds).

use sqlx::sqlite::SqliteRow;
use sqlx::{FromRow, SqlitePool};

use super::{Arg, Stmt};
use crate::db::DbError;

/// Runs `stmt` (one statement: a consistent snapshot on its own).
pub(super) async fn fetch<R>(pool: &SqlitePool, stmt: &Stmt) -> Result<Vec<R>, DbError>
where
    R: for<'r> FromRow<'r, SqliteRow> + Send + Unpin,
{
    let mut q = sqlx::query_as::<_, R>(sqlx::AssertSqlSafe(stmt.sql.clone()));
    for arg in &stmt.args {
        q = match arg {
            Arg::Text(s) => q.bind(s.as_str()),
            Arg::Time(t) => q.bind(t.timestamp_millis()),
            Arg::Int(i) => q.bind(*i),
        };
    }
    Ok(q.fetch_all(pool).await?)
}
