//! End-to-end tests across crates: the real `brain-emit` and `brain-server` programs (this
//! package's `e2e-brain-emit` and `e2e-brain-server`, see `src/bin/`) as separate processes
//! over loopback, on SQLite and on Postgres. The SQL that reads what the server stored lives
//! here, in `helpers`, not in either crate's tests.
//!
//! Postgres comes from `BRAIN_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); each test gets a database of its own,
//! dropped however the test ends (`test_support::TestDb`). Without Postgres the Postgres tests say `SKIPPED` on stderr
//! and pass, unless `BRAIN_REQUIRE_POSTGRES=1` (CI), where they fail.

#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod browser;
mod cloud_init;
mod doctor;
mod flush;
mod helpers;
mod hook_protocol;
mod isolate;
mod provisioning;
mod release;
mod sessions;
