//! The `lease` table: at most one flusher delivers at a time. A lease names its holder (a
//! random token) and expires unless renewed, so a dead holder never wedges delivery; a hook
//! claims it for the background flusher it is about to start inside its enqueue transaction.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::{MetaKey, Spool, SpoolError, meta, now_ms};

impl Spool {
    /// Takes the delivery lease for `token` when it is free, expired, or already ours.
    pub(crate) fn acquire_lease(&mut self, token: &str, ttl_ms: i64) -> Result<bool, SpoolError> {
        Ok(take(&self.conn, token, ttl_ms, now_ms())?)
    }

    /// Extends our lease; false when it is no longer ours.
    pub(crate) fn renew_lease(&mut self, token: &str, ttl_ms: i64) -> Result<bool, SpoolError> {
        let changed = self.conn.execute(
            "UPDATE lease SET expires_at_ms = ?2, pid = ?3 WHERE id = 1 AND holder = ?1",
            params![token, now_ms() + ttl_ms, std::process::id()],
        )?;
        Ok(changed == 1)
    }

    /// Gives the lease up if it is ours.
    pub(crate) fn release_lease(&mut self, token: &str) -> Result<(), SpoolError> {
        self.conn
            .execute("DELETE FROM lease WHERE id = 1 AND holder = ?1", [token])?;
        Ok(())
    }

    /// Whether someone holds a live lease.
    #[cfg(test)]
    pub(crate) fn lease_live(&self) -> Result<bool, SpoolError> {
        Ok(is_live(&self.conn, now_ms())?)
    }
}

/// Whether someone holds a lease that has not expired at `now` (Unix ms).
pub(super) fn is_live(conn: &Connection, now: i64) -> Result<bool, rusqlite::Error> {
    Ok(conn
        .query_row(
            "SELECT expires_at_ms > ?1 FROM lease WHERE id = 1",
            [now],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(false))
}

/// Writes the lease for `token` until `now + ttl_ms` when it is free, expired at `now`, or
/// already held by `token`; whether it was taken.
fn take(conn: &Connection, token: &str, ttl_ms: i64, now: i64) -> Result<bool, rusqlite::Error> {
    let changed = conn
        .prepare_cached(
            "INSERT INTO lease (id, holder, pid, expires_at_ms) VALUES (1, ?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE
         SET holder = excluded.holder, pid = excluded.pid, expires_at_ms = excluded.expires_at_ms
         WHERE lease.expires_at_ms <= ?4 OR lease.holder = excluded.holder",
        )?
        .execute(params![token, std::process::id(), now + ttl_ms, now])?;
    Ok(changed == 1)
}

/// Claims the lease for a background flusher about to be spawned, when no live lease is
/// held and the retry schedule allows it; returns the new holder's token.
///
/// The token is fresh, so "already ours" never applies: only a free or expired lease is
/// taken.
pub(super) fn claim_for_background(
    tx: &Transaction<'_>,
    ttl_ms: i64,
) -> Result<Option<String>, SpoolError> {
    let now = now_ms();
    let not_before = meta::get_i64(tx, MetaKey::NextAttemptAtMs)?;
    if not_before.is_some_and(|t| t > now) {
        return Ok(None);
    }
    let token = uuid::Uuid::new_v4().to_string();
    Ok(take(tx, &token, ttl_ms, now)?.then_some(token))
}
