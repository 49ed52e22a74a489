//! Runs the dashboard's statements on Postgres (times as `TIMESTAMPTZ`).

use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgPool};

use super::{Arg, Stmt};
use crate::db::DbError;

/// Runs `stmt` in a read-only transaction with JIT off (it adds hundreds of ms to mid-size
/// queries and saves nothing on rollup rows) and a custom plan per execution (so a cached
/// generic plan made for one window can never serve another).
pub(super) async fn fetch<R>(pool: &PgPool, stmt: &Stmt) -> Result<Vec<R>, DbError>
where
    R: for<'r> FromRow<'r, PgRow> + Send + Unpin,
{
    let mut tx = pool.begin().await?;
    sqlx::raw_sql(
        "SET TRANSACTION READ ONLY; SET LOCAL jit = off; \
         SET LOCAL plan_cache_mode = force_custom_plan",
    )
    .execute(&mut *tx)
    .await?;
    let mut q = sqlx::query_as::<_, R>(sqlx::AssertSqlSafe(stmt.sql.clone()));
    for arg in &stmt.args {
        q = match arg {
            Arg::Text(s) => q.bind(s.as_str()),
            Arg::Time(t) => q.bind(*t),
            Arg::Int(i) => q.bind(*i),
        };
    }
    let rows = q.fetch_all(&mut *tx).await?;
    tx.commit().await?;
    Ok(rows)
}
