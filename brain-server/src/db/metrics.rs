//! The figures `/metrics` reads from the database at scrape time.

use super::{DbError, Store};

impl Store {
    /// Dead letters stored now. A count over the table's smallest index (its primary key):
    /// the table is kept small by its retention, and a scrape runs it once per interval.
    ///
    /// # Errors
    /// [`DbError::Query`] when the database does not answer.
    pub(crate) async fn count_dead_letters(&self) -> Result<i64, DbError> {
        const SQL: &str = "SELECT COUNT(*) FROM dead_letters";
        Ok(match self {
            Store::Postgres(pool) => sqlx::query_scalar::<_, i64>(SQL).fetch_one(pool).await?,
            Store::Sqlite(pool) => sqlx::query_scalar::<_, i64>(SQL).fetch_one(pool).await?,
        })
    }
}
