//! What the workspace's tests and benchmarks share (a dev-dependency only; nothing here ships):
//! a throwaway Postgres database per test, [`TestDb`], dropped on every exit path.
//!
//! Settings, from the environment: `BRAIN_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`, a database to connect to in order to create
//! the test's own) and `BRAIN_REQUIRE_POSTGRES=1` (fail instead of skipping when Postgres is
//! unusable; CI sets it).

#![expect(
    clippy::print_stderr,
    reason = "a skipped test or an undropped database is said on stderr"
)]

use std::future::Future;

use sqlx::Connection;

/// The Postgres server the tests use, when `BRAIN_TEST_POSTGRES_URL` is unset.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A Postgres database made for one test (or benchmark) and dropped when this guard is, on
/// every exit path: a test that returns, fails an assertion or panics leaves no database
/// behind.
#[derive(Debug)]
pub struct TestDb {
    /// URL of the database itself.
    pub url: String,
    /// URL of the database we connected to in order to create it (and to drop it).
    base: String,
    name: String,
}

impl TestDb {
    /// A fresh, empty database named `<prefix>_<32 hex>`, next to `BRAIN_TEST_POSTGRES_URL`.
    /// `None`, said loudly on stderr (`SKIPPED: …`), when Postgres is unusable; a panic
    /// instead when `BRAIN_REQUIRE_POSTGRES=1`. Blocks the calling thread for the
    /// `CREATE DATABASE` (it runs on a thread of its own, so an async test may call it).
    ///
    /// # Panics
    /// When `BRAIN_REQUIRE_POSTGRES=1` and the database cannot be created.
    #[expect(
        clippy::disallowed_methods,
        reason = "the tests' own settings come from the environment"
    )]
    pub fn create(prefix: &str) -> Option<TestDb> {
        let base = std::env::var("BRAIN_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
        let required = std::env::var("BRAIN_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let created = on_own_thread({
            let (base, name) = (base.clone(), name.clone());
            async move {
                let mut conn = sqlx::PgConnection::connect(&base).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await?;
                conn.close().await
            }
        });
        let prefix_url = base.rsplit_once('/').map(|(p, _)| p.to_owned());
        match (created, prefix_url) {
            (Ok(()), Some(prefix_url)) => Some(TestDb {
                url: format!("{prefix_url}/{name}"),
                base,
                name,
            }),
            (result, _) => {
                let why = match result {
                    Ok(()) => "the URL names no database".to_owned(),
                    Err(e) => e,
                };
                if required {
                    panic!(
                        "Postgres required (BRAIN_REQUIRE_POSTGRES=1) but unusable at {base}: {why}"
                    );
                }
                eprintln!(
                    "SKIPPED: Postgres unusable at {base} ({why}); set BRAIN_REQUIRE_POSTGRES=1 to fail instead"
                );
                None
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (base, name) = (self.base.clone(), self.name.clone());
        // `WITH (FORCE)` ends the connections that a pool or a killed server still holds.
        let dropped = on_own_thread(async move {
            let mut conn = sqlx::PgConnection::connect(&base).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await?;
            conn.close().await
        });
        // Never panic here: a second panic while a failed test unwinds aborts the run.
        if let Err(e) = dropped {
            eprintln!("WARNING: test database {} not dropped: {e}", self.name);
        }
    }
}

/// Runs `work` to completion on a new thread with a runtime of its own: `Drop` is synchronous,
/// and an async caller's runtime may not block on another runtime on its own thread.
fn on_own_thread<T, F>(work: F) -> Result<T, String>
where
    T: Send + 'static,
    F: Future<Output = Result<T, sqlx::Error>> + Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?
            .block_on(work)
            .map_err(|e| e.to_string())
    })
    .join()
    .unwrap_or_else(|_| Err("the database thread panicked".to_owned()))
}

#[cfg(test)]
mod tests {
    use sqlx::Connection;

    use super::{TestDb, on_own_thread};

    /// Whether a database named `name` exists on the server at `base`.
    fn exists(base: &str, name: &str) -> bool {
        let (base, name) = (base.to_owned(), name.to_owned());
        on_own_thread(async move {
            let mut conn = sqlx::PgConnection::connect(&base).await?;
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_database WHERE datname = $1")
                .bind(&name)
                .fetch_one(&mut conn)
                .await?;
            conn.close().await?;
            Ok(n == 1)
        })
        .expect("query pg_database")
    }

    #[test]
    fn the_database_is_dropped_even_when_the_test_panics() {
        let Some(db) = TestDb::create("brain_support") else {
            return; // SKIPPED, said by create (fails instead under BRAIN_REQUIRE_POSTGRES=1)
        };
        let (base, name) = (db.base.clone(), db.name.clone());
        assert!(exists(&base, &name), "{name} was not created");
        let unwound = std::panic::catch_unwind(move || {
            let _db = db;
            panic!("a failing test");
        });
        assert!(unwound.is_err());
        assert!(!exists(&base, &name), "{name} is still there");
    }
}
