//! Operator reads and the audit log: dead letters (filtered, paged, marked when requeued),
//! stored agents, event counts, and the audit entries every admin action writes (the insert
//! is shared with the other domains and always runs in the action's own transaction).

pub(super) mod postgres;
pub(super) mod sqlite;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::FromRow;

use super::{DbError, Store, StoredTime};

impl Store {
    /// Number of rows in `events` (for tests and the health read).
    ///
    /// # Errors
    /// [`DbError::Query`] on a database error.
    pub async fn count_events(&self) -> Result<i64, DbError> {
        dispatch!(self, count_events())
    }

    /// The dead letters of a customer, newest first, at most `limit`.
    ///
    /// # Errors
    /// [`DbError::Query`] on a database error.
    pub async fn dead_letters(
        &self,
        customer_id: &str,
        limit: i64,
    ) -> Result<Vec<DeadLetter>, DbError> {
        dispatch!(self, dead_letters(customer_id, limit))
    }

    /// One page of dead letters, newest first (by id), filtered as `filter` says.
    ///
    /// # Errors
    /// [`DbError::Query`] on a database error.
    pub async fn list_dead_letters(
        &self,
        filter: &DeadLetterFilter,
    ) -> Result<Vec<DeadLetter>, DbError> {
        dispatch!(self, list_dead_letters(filter))
    }

    /// The dead letter `id`, if it exists.
    ///
    /// # Errors
    /// [`DbError::Query`] on a database error.
    pub async fn dead_letter(&self, id: i64) -> Result<Option<DeadLetter>, DbError> {
        dispatch!(self, dead_letter(id))
    }

    /// Records that the dead letter `id` was requeued as the event `event_id` with `status`
    /// (`accepted` or `duplicate`): sets `requeued_at` and `requeued_event_id` unless an earlier
    /// requeue did, and writes the `requeue` audit entry, in one transaction. Returns the row.
    ///
    /// # Errors
    /// [`DbError::NotFound`] when there is no such dead letter, [`DbError::Query`] otherwise.
    pub async fn mark_requeued(
        &self,
        id: i64,
        event_id: &str,
        status: &str,
        actor: &str,
    ) -> Result<DeadLetter, DbError> {
        let now = Utc::now();
        dispatch!(self, mark_requeued(id, event_id, status, now, actor))?
            .ok_or(DbError::NotFound("dead letter"))
    }

    /// Deletes the dead letters received before `cutoff` (their retention is over), in
    /// batches of 10 000 rows so that no one transaction holds the table long;
    /// returns how many.
    ///
    /// # Errors
    /// [`DbError::Query`] on a database error (the batches deleted before it stay deleted).
    pub async fn prune_dead_letters(&self, cutoff: DateTime<Utc>) -> Result<u64, DbError> {
        let mut total = 0;
        loop {
            let n = dispatch!(self, prune_dead_letters_batch(cutoff, PRUNE_BATCH))?;
            total += n;
            if n < PRUNE_BATCH.unsigned_abs() {
                return Ok(total);
            }
        }
    }

    /// The stored agent row, if any.
    ///
    /// # Errors
    /// [`DbError::Query`] on a database error.
    pub async fn agent(&self, agent_id: &str) -> Result<Option<AgentRow>, DbError> {
        dispatch!(self, agent(agent_id))
    }

    /// The audit log, newest first, at most `limit` entries.
    ///
    /// # Errors
    /// [`DbError::Query`] on a database error.
    pub async fn audit_log(&self, limit: i64) -> Result<Vec<AuditEntry>, DbError> {
        self.audit_page(limit, None).await
    }

    /// One page of the audit log, newest first: at most `limit` entries with an id below
    /// `before_id` (all when `None`).
    ///
    /// # Errors
    /// [`DbError::Query`] on a database error.
    pub async fn audit_page(
        &self,
        limit: i64,
        before_id: Option<i64>,
    ) -> Result<Vec<AuditEntry>, DbError> {
        dispatch!(self, audit_log(limit, before_id))
    }
}

/// Dead letters deleted per statement by [`Store::prune_dead_letters`].
const PRUNE_BATCH: i64 = 10_000;

/// Which dead letters a page holds: every filter is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterFilter {
    /// Only this customer's.
    pub customer_id: Option<String>,
    /// Only this rejection code.
    pub reason: Option<String>,
    /// Only those received at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only those received before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only those with an id below this one (the keyset cursor of the previous page).
    pub before_id: Option<i64>,
    /// At most this many.
    pub limit: i64,
}

/// A dead-lettered element of an ingest request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    /// Row id.
    pub id: i64,
    /// The customer whose key sent it.
    pub customer_id: String,
    /// When it was received.
    pub received_at: DateTime<Utc>,
    /// Its `event_id` when it had a readable one.
    pub event_id: Option<String>,
    /// The element's JSON as received, cut to the server's dead-letter size cap when
    /// `truncated` (then it is not valid JSON).
    pub raw: String,
    /// The size of the element's JSON as received, in bytes (more than `raw` when truncated).
    pub raw_bytes: i64,
    /// Whether `raw` is cut short of the element.
    pub truncated: bool,
    /// The rejection code (e.g. `unknown_event_type`).
    pub reason: String,
    /// The rejection message.
    pub message: String,
    /// When it was first requeued (and its event stored or found stored).
    pub requeued_at: Option<DateTime<Utc>>,
    /// The event id its requeue stored.
    pub requeued_event_id: Option<String>,
}

/// An agent as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentRow {
    /// The agent's id.
    pub agent_id: String,
    /// The customer that owns it (the first that sent it).
    pub customer_id: String,
    /// `ts` of its earliest stored event.
    pub first_seen_at: DateTime<Utc>,
    /// `ts` of its latest stored event.
    pub last_seen_at: DateTime<Utc>,
    /// Its version from the latest heartbeat naming it.
    pub agent_version: Option<String>,
}

/// One audit-log entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    /// Row id.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who (`admin-token` for the HTTP API, `cli:<unix user>` for an operator command).
    pub actor: String,
    /// What (`create_customer`, `mint`, `rotate`, `revoke`, `requeue`).
    pub action: String,
    /// Parameters (never a plaintext key).
    pub params: Value,
}

/// A `dead_letters` row, times as the backend `T` returns them.
#[derive(FromRow)]
struct DeadLetterRow<T> {
    id: i64,
    customer_id: String,
    received_at: T,
    event_id: Option<String>,
    raw: String,
    raw_bytes: i64,
    truncated: bool,
    reason: String,
    message: String,
    requeued_at: Option<T>,
    requeued_event_id: Option<String>,
}

impl<T: StoredTime> From<DeadLetterRow<T>> for DeadLetter {
    fn from(r: DeadLetterRow<T>) -> Self {
        DeadLetter {
            id: r.id,
            customer_id: r.customer_id,
            received_at: r.received_at.into_utc(),
            event_id: r.event_id,
            raw: r.raw,
            raw_bytes: r.raw_bytes,
            truncated: r.truncated,
            reason: r.reason,
            message: r.message,
            requeued_at: r.requeued_at.map(T::into_utc),
            requeued_event_id: r.requeued_event_id,
        }
    }
}

impl From<DeadLetter> for shared_proto::admin::DeadLetterItem {
    fn from(d: DeadLetter) -> Self {
        shared_proto::admin::DeadLetterItem {
            id: d.id,
            customer_id: d.customer_id,
            received_at: d.received_at,
            event_id: d.event_id,
            reason: d.reason,
            message: d.message,
            raw_bytes: d.raw_bytes,
            truncated: d.truncated,
            raw: d.raw,
            requeued_at: d.requeued_at,
            requeued_event_id: d.requeued_event_id,
        }
    }
}

impl From<AuditEntry> for shared_proto::admin::AuditItem {
    fn from(a: AuditEntry) -> Self {
        shared_proto::admin::AuditItem {
            id: a.id,
            at: a.at,
            actor: a.actor,
            action: a.action,
            params: a.params,
        }
    }
}
