//! The `meta` table: small key/value notes about delivery and the spool itself, named by
//! [`MetaKey`] (never by string literals elsewhere), and the statements that read and write
//! them, usable inside another module's transaction.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{Spool, SpoolError, now_ms};

/// A key of the `meta` table. Integer values are stored as decimal text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetaKey {
    /// The last delivery error (or the spool's replacement), text; cleared by a success.
    LastError,
    /// When [`MetaKey::LastError`] happened, Unix ms.
    LastErrorAtMs,
    /// When a flush last delivered a batch, Unix ms.
    LastSuccessAtMs,
    /// A configuration problem found by a flush (401/403, wrong URL), text.
    ConfigError,
    /// Background flushers wait until this time after a failure, Unix ms.
    NextAttemptAtMs,
    /// The last problem a hook invocation met, one line with its time and subcommand.
    LastHookError,
    /// When [`MetaKey::LastHookError`] happened, Unix ms.
    LastHookErrorAtMs,
    /// The agent id a hook fell back to when none was configured.
    AgentIdFallback,
    /// The moved-aside file's name, on a spool that replaced a corrupt one.
    RecoveredFrom,
    /// When this spool replaced a corrupt one, or was found empty where a spool had been,
    /// Unix ms.
    RecoveredAtMs,
    /// Queued events the last replacement salvaged from the corrupt file.
    SalvagedRows,
    /// Queued events the last replacement could not read (unset when unknown).
    LostRows,
    /// When the spool file was found empty where a spool had been, Unix ms.
    FoundEmptyAtMs,
    /// Which WAL damage was last counted (see `wal_check::WalLoss::key`).
    WalDamageKey,
    /// Committed transactions a damaged WAL made SQLite drop, in total.
    WalLostCommits,
    /// When a damaged WAL was last found, Unix ms.
    WalDamageAtMs,
    /// When a flush last pruned the `ledgers` table, Unix ms.
    LedgersPrunedAtMs,
}

impl MetaKey {
    /// The key as stored.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            MetaKey::LastError => "last_error",
            MetaKey::LastErrorAtMs => "last_error_at_ms",
            MetaKey::LastSuccessAtMs => "last_success_at_ms",
            MetaKey::ConfigError => "config_error",
            MetaKey::NextAttemptAtMs => "next_attempt_at_ms",
            MetaKey::LastHookError => "last_hook_error",
            MetaKey::LastHookErrorAtMs => "last_hook_error_at_ms",
            MetaKey::AgentIdFallback => "agent_id_fallback",
            MetaKey::RecoveredFrom => "recovered_from",
            MetaKey::RecoveredAtMs => "recovered_at_ms",
            MetaKey::SalvagedRows => "salvaged_rows",
            MetaKey::LostRows => "lost_rows",
            MetaKey::FoundEmptyAtMs => "found_empty_at_ms",
            MetaKey::WalDamageKey => "wal_damage_key",
            MetaKey::WalLostCommits => "wal_lost_commits",
            MetaKey::WalDamageAtMs => "wal_damage_at_ms",
            MetaKey::LedgersPrunedAtMs => "ledgers_pruned_at_ms",
        }
    }
}

/// The keys a successful delivery clears: the failure it ends and its retry schedule.
const CLEARED_BY_SUCCESS: [MetaKey; 4] = [
    MetaKey::LastError,
    MetaKey::LastErrorAtMs,
    MetaKey::ConfigError,
    MetaKey::NextAttemptAtMs,
];

/// The value of `key`, if set.
pub(super) fn get(conn: &Connection, key: MetaKey) -> Result<Option<String>, rusqlite::Error> {
    conn.prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key.as_str()], |r| r.get(0))
        .optional()
}

/// The value of `key` as an integer; `None` when unset or not an integer.
pub(super) fn get_i64(conn: &Connection, key: MetaKey) -> Result<Option<i64>, rusqlite::Error> {
    Ok(get(conn, key)?.and_then(|v| v.parse().ok()))
}

/// Sets `key` to `value`.
pub(super) fn put(conn: &Connection, key: MetaKey, value: &str) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![key.as_str(), value])?;
    Ok(())
}

/// Records a delivery at `now` (Unix ms) and clears the failure notes it ends.
pub(super) fn note_success(conn: &Connection, now: i64) -> Result<(), rusqlite::Error> {
    put(conn, MetaKey::LastSuccessAtMs, &now.to_string())?;
    let mut delete = conn.prepare_cached("DELETE FROM meta WHERE key = ?1")?;
    for key in CLEARED_BY_SUCCESS {
        delete.execute([key.as_str()])?;
    }
    Ok(())
}

impl Spool {
    /// The note stored under `key` as an integer; `None` when unset or not an integer.
    pub(crate) fn meta_i64(&self, key: MetaKey) -> Result<Option<i64>, SpoolError> {
        Ok(get_i64(&self.conn, key)?)
    }

    /// Stores `value` under `key`.
    pub(crate) fn set_meta(&mut self, key: MetaKey, value: &str) -> Result<(), SpoolError> {
        Ok(put(&self.conn, key, value)?)
    }

    /// Removes the note under `key`.
    pub(super) fn delete_meta(&mut self, key: MetaKey) -> Result<(), SpoolError> {
        self.conn
            .prepare_cached("DELETE FROM meta WHERE key = ?1")?
            .execute([key.as_str()])?;
        Ok(())
    }

    /// Records a delivery failure: message, time, and when background flushers may retry.
    pub(crate) fn record_failure(
        &mut self,
        message: &str,
        config_error: bool,
        next_attempt_at_ms: Option<i64>,
    ) -> Result<(), SpoolError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        put(&tx, MetaKey::LastError, message)?;
        put(&tx, MetaKey::LastErrorAtMs, &now_ms().to_string())?;
        if config_error {
            put(&tx, MetaKey::ConfigError, message)?;
        }
        if let Some(at) = next_attempt_at_ms {
            put(&tx, MetaKey::NextAttemptAtMs, &at.to_string())?;
        }
        tx.commit()?;
        Ok(())
    }
}
